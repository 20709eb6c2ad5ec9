"""One write discipline on SQLite: the watcher, the reconciler, record ingest (POST /v1/records) and the API's
other writes (POST /v1/wallets) all write at once, and none of them fails with `database is locked`; the end
state is exact (every transfer indexed once, every record matched to its own transfer, every wallet registered)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.indexer import index_chain
from app.persistence import recon_repo as repo
from app.persistence.db import make_engine
from app.persistence.migrate import upgrade
from app.reconciler import reconcile_once
from tests.support.harness import Devnet, address_for, bearer, indexed, make_settings, wallet

ALICE = address_for("writers-alice")
CONFIGURED = [address_for(f"writers-dep-{i}") for i in range(4)]
REGISTERED = [address_for(f"writers-new-{i}") for i in range(4)]  # registered through the API during the run
ROUNDS = 3


def _amount(round_: int, wallet_index: int, decimals: int) -> int:
    return (round_ * 100 + wallet_index + 1) * 10**decimals + round_  # distinct per transfer


def _record(ext: str, token: str, wallet_: str, amount: int, tx_hash: str | None) -> dict:
    return {"source": "core", "external_id": ext, "kind": "deposit", "chain": "a", "token": token,
            "amount_base_units": amount, "wallet": wallet_, "segregation": "customer", "status": "completed",
            "created_at": datetime.now(UTC).isoformat(), "tx_hash": tx_hash}


async def _until(condition, stop_after: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + stop_after
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", ["usdc", "dai"])  # 6 and 18 decimals
async def test_watcher_reconciler_ingest_and_api_write_at_once_without_a_locked_database(
        chain_a: Devnet, tmp_path: Path, kind: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/settle.db"
    upgrade(url)
    engine: AsyncEngine = make_engine(url)
    token = chain_a.tokens[kind]
    decimals = token.decimals()
    settings = make_settings(tmp_path, url, [chain_a.chain_config("a", confirmations=0, finality=3)],
                             chain_a.token_configs("a"), [wallet(w, f"d{i}") for i, w in enumerate(CONFIGURED)])
    everyone = CONFIGURED + REGISTERED
    token.mint(ALICE, 10**30)
    sent: dict[str, tuple[str, int, str]] = {}  # external id -> (wallet, amount, tx hash)

    def send_round(round_: int) -> None:
        for i, w in enumerate(everyone):
            amount = _amount(round_, i, decimals)
            sent[f"dep-{round_}-{i}"] = (w, amount, token.transfer(ALICE, w, amount))

    send_round(0)
    app = create_app(settings, engine=engine)
    ingest_key, admin_key = await bearer(engine, "ingest"), await bearer(engine, "admin")
    stop = asyncio.Event()
    passes = 0

    async def watcher() -> None:
        await index_chain(settings, engine, settings.chains[0], once=False, stop=stop)

    async def reconciler() -> None:
        nonlocal passes
        while not stop.is_set():
            await reconcile_once(settings, engine)
            passes += 1
            await asyncio.sleep(0)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:

        registered = asyncio.Event()  # a record may name only a registered wallet: those wait for their wallet

        async def api_writes() -> None:
            for i, w in enumerate(REGISTERED):
                response = await client.post("/v1/wallets", headers=admin_key, json={
                    "chain": "a", "address": w, "label": f"new-{i}", "kind": "deposit", "segregation": "customer"})
                assert response.status_code == 201, response.text
                await asyncio.sleep(0.02)
            registered.set()

        async def ingest_and_traffic() -> None:
            for round_ in range(ROUNDS):
                if round_:
                    await asyncio.to_thread(send_round, round_)
                items = [_record(ext, token.address, w, amount, tx if i % 2 else None)
                         for i, (ext, (w, amount, tx)) in enumerate(sorted(sent.items())) if ext.startswith(
                             f"dep-{round_}-")]
                configured = [item for item in items if item["wallet"] in CONFIGURED]
                later = [item for item in items if item["wallet"] not in CONFIGURED]
                for chunk in (configured[:4], configured[4:], later):
                    if not chunk:
                        continue
                    if chunk is later:
                        await registered.wait()
                    response = await client.post("/v1/records", headers=ingest_key, json=chunk)
                    assert response.status_code == 201, response.text
                    await asyncio.sleep(0.02)

        async def everything_indexed() -> bool:
            return len(await indexed(engine, chain_a.chain_id)) == len(sent) == ROUNDS * len(everyone)

        async def writers_done_then_wait() -> None:
            await asyncio.gather(api_writes(), ingest_and_traffic())
            await asyncio.to_thread(chain_a.anvil.mine, 4)
            await _until(everything_indexed)
            target = passes + 2  # two passes that saw everything
            await _until(lambda: _passes_after(target))
            stop.set()

        async def _passes_after(target: int) -> bool:
            return passes >= target

        await asyncio.gather(watcher(), reconciler(), writers_done_then_wait())

    await reconcile_once(settings, engine, full=True)
    async with engine.connect() as conn:
        matched = {(k[1], t) for m in await repo.active_matches(conn) for k in m["record_keys"]
                   for t in m["transfer_ids"]}
        by_tx = {r["tx_hash"]: r["id"] for r in (await conn.execute(repo.T.select())).mappings()}
    assert matched == {(ext, by_tx[tx]) for ext, (_, _, tx) in sent.items()}
    assert {t[5] for t in await indexed(engine, chain_a.chain_id)} == set(everyone)
    await engine.dispose()
