"""Reconcilers in two processes at once never decide the same items twice (`settle recon --once --full` beside
another one, as beside `settle serve`): exactly one active match per pair, on SQLite through the reconciler's
lock file and write discipline, on PostgreSQL through its advisory lock. And match/break ids come from the
database: unique when two PostgreSQL connections write matches at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import feed
from app.persistence import recon_repo as repo
from app.persistence.db import make_engine
from app.persistence.tables import Record, Transfer
from tests.support.harness import address_for, write_toml

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKENS = {6: "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 18: "0x6B175474E89094C44Da98b954EedeAC495271d0F"}
DEP, CUSTOMER = address_for("procs-dep"), address_for("procs-customer")
WHEN = datetime(2026, 11, 20, 9, tzinfo=UTC)
PAIRS = 3000


def _transfer(i: int, token: str, amount: int) -> dict:
    return {"id": i, "chain_id": 1, "token": token, "sender": CUSTOMER, "recipient": DEP, "amount": amount,
            "tx_hash": f"0x{i:064x}", "log_index": 0, "block_number": i, "block_hash": f"0x{i:064x}",
            "block_time": WHEN + timedelta(seconds=i), "state": "finalized", "seen_at": WHEN, "confirmed_at": WHEN,
            "finalized_at": WHEN}


def _record(i: int, token: str, amount: int, with_tx: bool) -> dict:
    return {"source": "core", "external_id": f"dep-{i}", "version": 1, "kind": "deposit", "chain_id": 1,
            "token": token, "amount": amount, "wallet": DEP, "counterparty": None,
            "tx_hash": f"0x{i:064x}" if with_tx else None, "log_index": 0 if with_tx else None, "reference": None,
            "segregation": "customer", "status": "completed", "created_at": WHEN + timedelta(seconds=i),
            "expected_by": None, "ingested_at": WHEN}


async def _seed(engine: AsyncEngine, decimals_of: tuple[int, int] = (6, 18)) -> None:
    """PAIRS deposits, half on a 6-decimal token, half on an 18-decimal one; half the records carry the tx hash."""
    transfers, records = [], []
    for i in range(1, PAIRS + 1):
        decimals = decimals_of[i % 2]
        amount = (1000 + i) * 10**decimals + i
        transfers.append(_transfer(i, TOKENS[decimals], amount))
        records.append(_record(i, TOKENS[decimals], amount, with_tx=i % 4 < 2))
    async with engine.begin() as conn:
        await conn.execute(Transfer.__table__.insert(), transfers)
        await conn.execute(Record.__table__.insert(), records)


def _config(tmp_path: Path, url: str) -> Path:
    config = write_toml(tmp_path / "settle.toml", database_url=url, data_dir=tmp_path / "data",
                        chains=[{"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
                        tokens=[{"chain": "eth", "address": TOKENS[6], "symbol": "USDC", "decimals": 6},
                                {"chain": "eth", "address": TOKENS[18], "symbol": "DAI", "decimals": 18}],
                        wallets=[{"address": DEP, "label": "d", "kind": "deposit", "segregation": "customer"}])
    # each process its own data_dir: the lock must not depend on it
    return config


def _recon(config: Path, data_dir: Path, bulk: bool) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["SETTLE_DATA_DIR"] = str(data_dir)
    env["SETTLE_RECON__BULK_MATCHING"] = "true" if bulk else "false"
    return subprocess.Popen([sys.executable, "-m", "app", "-c", str(config), "recon", "--once", "--full"],
                            cwd=config.parent, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "core"])
async def test_two_processes_reconciling_at_once_match_each_pair_exactly_once(
        engine: AsyncEngine, database_url: str, tmp_path: Path, bulk: bool) -> None:
    await _seed(engine)
    config = _config(tmp_path, database_url)
    procs = [_recon(config, tmp_path / f"data-{n}", bulk) for n in range(2)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    async with engine.connect() as conn:
        active = await repo.active_matches(conn)
    per_record = Counter(k[1] for m in active for k in m["record_keys"])
    per_transfer = Counter(t for m in active for t in m["transfer_ids"])
    assert set(per_record) == {f"dep-{i}" for i in range(1, PAIRS + 1)}
    assert set(per_record.values()) == {1} and set(per_transfer.values()) == {1}
    assert {(m["transfer_ids"][0], m["record_keys"][0][1]) for m in active} == {
        (i, f"dep-{i}") for i in range(1, PAIRS + 1)}


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_match_ids_stay_unique_with_two_postgres_connections_writing_at_once(
        engine: AsyncEngine, database_url: str) -> None:
    """The bulk pass reserves its ids from the sequence while a second connection adds matches one by one."""
    from app.persistence import recon_bulk

    await _seed(engine, (6, 6))  # amounts past int64 on PostgreSQL are the tolerance item's (1.1), not this one's
    other = make_engine(database_url)
    now = WHEN + timedelta(days=1)
    started = asyncio.Event()

    async def bulk() -> None:
        async with feed.transaction(engine) as conn:
            started.set()
            await recon_bulk.match_unique_pairs(
                conn, system="reconciler", now=now, window=timedelta(hours=6), tolerance={}, finalized_only=frozenset(),
                foreign=frozenset(), excluded=frozenset(), timings=None)
            await asyncio.sleep(0.2)  # hold the reserved range while the other connection writes

    async def manual(n: int) -> list[int]:
        await started.wait()
        ids = []
        for j in range(n):
            async with feed.transaction(other) as conn:
                ids += await repo.add_matches(conn, [{
                    "rule": "manual", "rule_version": "1", "transfer_ids": [], "record_keys": [("ops", f"m-{j}")],
                    "candidates": [], "facts": {}, "observed": {}}], actor="alice", at=now)
        return ids

    try:
        _, manual_ids = await asyncio.gather(bulk(), manual(20))
    finally:
        await other.dispose()
    async with engine.connect() as conn:
        total = await conn.scalar(select(func.count()).select_from(repo.M))
        distinct = await conn.scalar(select(func.count(func.distinct(repo.M.c.id))))
        links = {r[0] for r in await conn.execute(select(repo.ML.c.match_id))}
    assert total == distinct == PAIRS + 20
    assert set(manual_ids) <= links and len(set(manual_ids)) == 20
