"""No silent death under a real `settle serve` on PostgreSQL: the database goes away under it (every connection of
the serve process killed, and new ones refused for a while: local to this test's database, other databases on
the server are not touched), then comes back. Health says `unavailable` while it is gone, `degraded` naming the
watcher until it has recovered, then ok; the transfers mined meanwhile are indexed and a record ingested after
is matched: the watcher and the reconciler survived."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import recon_repo as repo
from chains.devnet import free_port
from tests.support.harness import Devnet, address_for, bearer, indexed, wallet, write_toml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPOSIT, CUSTOMER = address_for("serve-db-deposit"), address_for("serve-db-customer")


@contextmanager
def _serve(config: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app", "-c", str(config), "serve", "--port", str(port)],
                                cwd=config.parent, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def _outage(url: str) -> Iterator[None]:
    """Refuse new connections to this test's database and kill the open ones; connections allowed again after."""
    name = make_url(url).database
    admin = create_engine(make_url(url).set(drivername="postgresql+psycopg", database="postgres"),
                          isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db "
                              "AND pid <> pg_backend_pid()"), {"db": name})
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
        admin.dispose()


async def _until(condition: Callable[[], Awaitable[object]], what: str, proc: subprocess.Popen[bytes],
                 log: Path, stop_after: float = 90.0) -> object:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + stop_after
    while True:
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode} waiting for {what}:\n{log.read_text()[-5000:]}")
        try:
            if result := await condition():
                return result
        except (httpx.HTTPError, OSError):
            pass
        if loop.time() > deadline:
            pytest.fail(f"never: {what}\n{log.read_text()[-5000:]}")
        await asyncio.sleep(0.1)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_serve_survives_the_database_going_away_and_health_tells_the_truth(
        chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path) -> None:
    usdc = chain_a.tokens["usdc"]
    usdc.mint(CUSTOMER, 10**12)
    first = usdc.transfer(CUSTOMER, DEPOSIT, 1_000_000)
    config = write_toml(tmp_path / "settle.toml", database_url=database_url, data_dir=tmp_path / "data",
                        chains=[chain_a.chain_config("a", confirmations=0, finality=3)],
                        tokens=chain_a.token_configs("a"), wallets=[wallet(DEPOSIT, "d")])
    config.write_text(config.read_text() + "\n[supervision]\nbackoff_initial_seconds = 2.0\n"
                      "backoff_max_seconds = 4.0\n\n[recon]\ninterval = 1.0\n")
    headers = await bearer(engine)
    port, log = free_port(), tmp_path / "serve.log"
    with _serve(config, port, log) as proc, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                                                         headers=headers) as client:

        async def health(status: str, check: Callable[[dict], bool] = lambda _: True) -> dict | None:
            report = client.get("/v1/health").json()
            return report if report["status"] == status and check(report) else None

        async def txs(*wanted: str) -> bool:
            return set(wanted) <= {t[0] for t in await indexed(engine, chain_a.chain_id)}

        def watcher(report: dict) -> dict:
            return next(loop for loop in report["loops"] if loop["name"] == "watcher a")

        await _until(lambda: txs(first), "the first transfer indexed", proc, log)
        await _until(lambda: health("ok"), "health ok", proc, log)

        with _outage(database_url):
            during = usdc.transfer(CUSTOMER, DEPOSIT, 2_000_000)
            gone = await _until(lambda: health("unavailable", lambda r: watcher(r)["errors_total"] >= 2),
                                "health unavailable, the watcher failing", proc, log)
            assert gone["chains"] == [] and gone["problems"][0].startswith("database: "), gone
        # the watcher waits out its backoff (2 s or more after two failures): health must not say ok meanwhile
        back = client.get("/v1/health").json()
        assert back["status"] == "degraded", back
        assert any(p.startswith("watcher a: failing") for p in back["problems"]), back
        after = usdc.transfer(CUSTOMER, DEPOSIT, 3_000_000)
        await engine.dispose()  # the test's own pooled connections were killed too
        await _until(lambda: txs(first, during, after), "indexing resumed", proc, log)
        healed = await _until(lambda: health("ok"), "health ok after the database came back", proc, log)
        assert healed["problems"] == [] and watcher(healed)["consecutive_errors"] == 0
        record = {"source": "core", "external_id": "dep-during", "kind": "deposit", "chain": "a",
                  "token": usdc.address, "amount_base_units": 2_000_000, "wallet": DEPOSIT,
                  "segregation": "customer", "status": "completed", "created_at": datetime.now(UTC).isoformat(),
                  "tx_hash": during}
        assert client.post("/v1/records", json=[record]).status_code == 201

        async def matched() -> bool:
            async with engine.connect() as conn:
                return any(k[1] == "dep-during" for m in await repo.active_matches(conn) for k in m["record_keys"])

        await _until(matched, "the record ingested after the outage matched", proc, log)
