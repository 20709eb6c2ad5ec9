"""No silent death: the watchers of `serve` survive replies no classifier knows (through the fault proxy), health
tells the truth while they fail and after they heal, and indexing resumes. The supervisor itself: any exception
is counted and retried with a capped backoff; a failing or stale job makes health degraded, naming it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.supervision import Backoff, Supervisor, health_problems
from tests.support.harness import Devnet, address_for, indexed, make_settings, wallet
from tests.support.rpc_proxy import Fault, FaultProxy

DEPOSIT, CUSTOMER = address_for("sup-deposit"), address_for("sup-customer")
FAST = {"backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.2}


async def until(condition: Callable[[], Awaitable[object]], what: str, stop_after: float = 90.0) -> object:
    """Poll `condition` until it is truthy (a deadline only so that a broken run ends)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + stop_after
    while not (result := await condition()):
        if loop.time() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.05)
    return result


@pytest.mark.parametrize(("kind", "method", "stops_indexing"), [
    ("missing_field", "eth_getBlockByNumber", True),  # a block without parentHash
    ("non_json", "*", True),  # every endpoint fails: a ChainError
    ("null_id", "*", False),  # tolerated by the client today (replies in order); if ever refused, it must heal too
])
async def test_a_watcher_survives_malformed_replies_and_health_tells_the_truth(
        chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path, kind: str, method: str,
        stops_indexing: bool) -> None:
    token = chain_a.tokens["usdc" if kind != "non_json" else "dai"]
    unit = 10 ** token.decimals()
    token.mint(CUSTOMER, 10**9 * unit)
    first = token.transfer(CUSTOMER, DEPOSIT, 1 * unit)
    with FaultProxy(chain_a.anvil.url) as proxy:
        settings = make_settings(tmp_path, database_url, [chain_a.chain_config(
            "a", rpc_urls=[proxy.url], confirmations=0, finality=3, max_retries=1)], chain_a.token_configs("a"),
            [wallet(DEPOSIT, "d")])
        settings = settings.model_copy(update={"supervision": settings.supervision.model_copy(update=FAST)})
        app = create_app(settings, engine=engine, run_watchers=True)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test") as client:

            async def health() -> dict:
                return (await client.get("/v1/health")).json()

            async def txs() -> set[str]:
                return {t[0] for t in await indexed(engine, chain_a.chain_id)}

            await until(lambda: _has(txs, {first}), "the first transfer indexed")
            await until(lambda: _status(health, "ok"), "health ok before the fault")

            proxy.add(Fault(kind, method=method, times=None))
            during = token.transfer(CUSTOMER, DEPOSIT, 2 * unit)
            await until(lambda: _fired(proxy, kind, 5), "the fault fired")
            if stops_indexing:
                report = await until(lambda: _status(health, "degraded"), "health degraded while replies are bad")
                assert any(p.startswith(("chain a:", "watcher a:")) for p in report["problems"]), report
                assert during not in await txs()

            proxy.clear()  # the node heals
            after = token.transfer(CUSTOMER, DEPOSIT, 3 * unit)
            await until(lambda: _has(txs, {first, during, after}), "indexing resumed")
            healed = await until(lambda: _status(health, "ok"), "health ok after the fault")
            assert healed["problems"] == []
    amounts = sorted(t[6] for t in await indexed(engine, chain_a.chain_id))
    assert amounts == [1 * unit, 2 * unit, 3 * unit]


async def _has(txs: Callable[[], Awaitable[set[str]]], wanted: set[str]) -> bool:
    return wanted <= await txs()


async def _status(health: Callable[[], Awaitable[dict]], status: str) -> dict | None:
    report = await health()
    return report if report["status"] == status else None


async def _fired(proxy: FaultProxy, kind: str, times: int) -> bool:
    return proxy.fired[kind] >= times


async def test_a_loop_survives_any_exception_with_a_capped_backoff_and_counts_it() -> None:
    supervisor = Supervisor(Backoff(initial=0.01, maximum=0.04))
    stop = asyncio.Event()
    raised: list[BaseException] = [IntegrityError("INSERT", {}, Exception("duplicate key")), KeyError("hash"),
                                   TypeError("'<' not supported between 'NoneType' and 'int'"), OSError("reset")]
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1
        if raised:
            raise raised.pop(0)
        stop.set()

    await asyncio.wait_for(supervisor.run_forever("worker", work, stop), timeout=30)
    state = supervisor.loops["worker"]
    assert (runs, state.errors_total, state.failing) == (5, 4, False)
    assert state.last_error == "OSError: reset"
    assert all(0.005 <= Backoff(0.01, 0.04).delay(n) < 0.04 for n in range(1, 40))


async def test_health_names_a_failing_job_and_a_job_without_success_for_a_few_intervals() -> None:
    supervisor = Supervisor(stale_intervals=3, stale_min_seconds=0)
    failing = supervisor.job("balance-check", _boom, interval=3600)
    assert await failing() is False
    assert health_problems(supervisor, []) == [
        "balance-check: last run failed (1 in a row): RuntimeError: node down"]
    supervisor.track("reconciler", interval=0.01)
    await asyncio.sleep(0.05)  # more than 3 intervals without a success
    assert [p.split(":")[0] for p in health_problems(supervisor, [])] == ["balance-check", "reconciler"]
    supervisor.succeeded("reconciler")
    supervisor.succeeded("balance-check")
    assert health_problems(supervisor, []) == []


async def _boom() -> None:
    raise RuntimeError("node down")


async def test_the_after_batch_reconciler_survives_a_failed_pass_and_reconciles_what_woke_it(
        chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first pass after a batch raises an error no one expected (as `database is locked` did in every demo
    run): the loop records it, waits its backoff and runs the pass again, which matches the deposit."""
    import app.api.main as main
    from app.persistence import recon_repo as repo
    from app.records import ingest

    real, failures = main.reconcile_once, [IntegrityError("INSERT INTO matches", {}, Exception("duplicate key"))]

    async def failing_once(*args: object, **kwargs: object) -> object:
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(main, "reconcile_once", failing_once)
    usdc = chain_a.tokens["usdc"]
    usdc.mint(CUSTOMER, 10**12)
    settings = make_settings(tmp_path, database_url, [chain_a.chain_config("a", confirmations=0, finality=3)],
                             chain_a.token_configs("a"), [wallet(DEPOSIT, "d")])
    settings = settings.model_copy(update={"supervision": settings.supervision.model_copy(update=FAST),
                                           "recon": settings.recon.model_copy(update={"interval": 3600.0})})
    tx = usdc.transfer(CUSTOMER, DEPOSIT, 4_200_000)
    await ingest(settings, engine, [{"source": "core", "external_id": "dep-1", "kind": "deposit", "chain": "a",
                                     "token": usdc.address, "amount_base_units": 4_200_000, "wallet": DEPOSIT,
                                     "segregation": "customer", "status": "completed", "tx_hash": tx,
                                     "created_at": datetime.now(UTC).isoformat()}], actor="core")
    app = create_app(settings, engine=engine, run_watchers=True)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test") as client:

        async def matched() -> bool:
            async with engine.connect() as conn:
                return any(k[1] == "dep-1" for m in await repo.active_matches(conn) for k in m["record_keys"])

        await until(matched, "the deposit matched after the failed pass")
        loops = {loop["name"]: loop for loop in (await client.get("/v1/health")).json()["loops"]}
    assert not failures
    assert (loops["reconciler"]["errors_total"], loops["reconciler"]["consecutive_errors"]) == (1, 0)
    assert loops["reconciler"]["last_error"].startswith("IntegrityError")
