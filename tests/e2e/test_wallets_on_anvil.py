"""Wallets on anvil: a wallet's status is exact (balances to the base unit, its last transfers, its open breaks,
its gas balance), and a wallet registered through the API while `settle serve` runs is indexed from its start
block by the running watcher, stops being indexed when deactivated, and is caught up when reactivated."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.balance_check import check_chain
from app.persistence.watcher_store import SqlWatcherStore
from app.reconciler import reconcile_once
from tests.support.harness import Devnet, address_for, bearer, index_once, indexed, make_settings, wallet

DEPOSIT = address_for("status-dep")
HOT = address_for("status-hot")
CUSTOMER = address_for("status-customer")
LATE = address_for("late-wallet")


def _client(app: object, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",  # type: ignore[arg-type]
                             headers=headers)


async def test_a_wallets_status_is_exact(chain_a: Devnet, engine: AsyncEngine, database_url: str,
                                         tmp_path: Path) -> None:
    usdc, dai = chain_a.tokens["usdc"], chain_a.tokens["dai"]
    usdc.mint(CUSTOMER, 10**12)
    usdc.mint(DEPOSIT, 3_000_000)  # before the start block: the opening balance
    start = chain_a.anvil.block_number() + 1
    for i in range(23):
        usdc.transfer(CUSTOMER, DEPOSIT, 1_000_000 + i)
    usdc.transfer(DEPOSIT, HOT, 2_500_000)
    dai.mint(DEPOSIT, 5 * 10**18)
    chain_a.anvil.mine(8)
    usdc.transfer(CUSTOMER, DEPOSIT, 9)  # still `seen`: pending
    chain_a.anvil.set_balance(DEPOSIT, 123_456_789_000_000_000)
    settings = make_settings(tmp_path, database_url, [chain_a.chain_config("a", start_block=start)],
                             chain_a.token_configs("a"), [wallet(DEPOSIT, "dep"), wallet(HOT, "hot", "hot", "house")])
    await index_once(settings, engine)
    await check_chain(settings, engine, settings.chains[0])
    await reconcile_once(settings, engine, now=datetime.now(UTC) + timedelta(days=2))  # no records: breaks
    app = create_app(settings, engine=engine)
    async with _client(app, await bearer(engine, "treasury", "ops")) as client:
        wallets = {w["address"]: w for w in (await client.get("/v1/wallets")).json()["items"]}
        status = (await client.get(f"/v1/wallets/{wallets[DEPOSIT]['id']}/status")).json()
        balances = (await client.get("/v1/balances", params={"wallet": DEPOSIT})).json()["items"]
        transfers = (await client.get("/v1/transfers", params={"wallet": DEPOSIT, "limit": 1000})).json()["items"]
        breaks = (await client.get("/v1/breaks", params={"limit": 1000})).json()["items"]
        admin = await client.get(f"/v1/wallets/{wallets[HOT]['id']}/status", headers=await bearer(engine, "admin"))
        ops = await client.get(f"/v1/wallets/{wallets[HOT]['id']}/status", headers=await bearer(engine, "ops"))

    assert status["wallet"] == wallets[DEPOSIT]
    by_token = {b["token"]["symbol"]: b for b in status["balances"]}
    assert status["balances"] == balances and set(by_token) == {"USDC", "USDT", "DAI"}
    assert by_token["USDC"]["opening"]["amount_base_units"] == "3000000"
    assert int(by_token["USDC"]["confirmed"]["amount_base_units"]) == usdc.balance_of(DEPOSIT) - 9
    assert by_token["USDC"]["pending_in"]["amount_base_units"] == "9"
    assert by_token["DAI"]["confirmed"]["amount"] == "5"
    assert by_token["USDC"]["last_check"]["difference"]["amount_base_units"] == "0"
    newest_first = sorted(transfers, key=lambda t: (t["block_number"], t["log_index"]), reverse=True)
    assert len(transfers) == 26 and status["transfers"] == newest_first[:20]

    def drop_age(b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if k != "age_seconds"}

    ids = {t["id"] for t in transfers}
    touching = [drop_age(b) for b in breaks if set(b["transfer_ids"]) & ids]
    assert touching and [drop_age(b) for b in status["open_breaks"]] == touching
    assert status["gas"] == {"amount": "0.123456789", "amount_base_units": str(chain_a.anvil.get_balance(DEPOSIT)),
                             "block": "latest", "error": None}
    assert admin.status_code == 200 and admin.json()["gas"]["amount_base_units"] == str(
        chain_a.anvil.get_balance(HOT))
    assert ops.status_code == 403


async def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_wallet_registered_while_serving_is_indexed_from_its_start_block(
        chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path) -> None:
    usdc, dai = chain_a.tokens["usdc"], chain_a.tokens["dai"]
    usdc.mint(CUSTOMER, 10**12)
    dai.mint(CUSTOMER, 10**24)
    usdc.transfer(CUSTOMER, DEPOSIT, 1_000_000)
    usdc.transfer(CUSTOMER, LATE, 111)  # before LATE's start block: not ours to index
    start = chain_a.anvil.block_number() + 1
    for i in range(4):
        usdc.transfer(CUSTOMER, LATE, 2_000 + i)
        dai.transfer(CUSTOMER, LATE, 10**18 + i)
    usdc.transfer(LATE, DEPOSIT, 500)
    chain_a.anvil.mine(10)
    settings = make_settings(tmp_path, database_url, [chain_a.chain_config("a")], chain_a.token_configs("a"),
                             [wallet(DEPOSIT, "dep")])
    cid = chain_a.chain_id

    async def caught_up() -> bool:
        chains = (await client.get("/v1/chains")).json()
        return bool(chains[0]["indexed"] == chain_a.anvil.block_number() and chains[0]["state"] == "live")

    async def late_indexed(expected: set[tuple]) -> bool:
        return {t for t in await indexed(engine, cid) if LATE in (t[4], t[5])} == expected

    async def followed(address: str, joined: bool) -> bool:
        targets = await SqlWatcherStore(engine).load_targets(cid)
        return any(t.address == address and t.joined is joined for t in targets)

    app = create_app(settings, engine=engine, run_watchers=True)
    async with app.router.lifespan_context(app), _client(app, await bearer(engine, "admin", "treasury")) as client:
        await _until(caught_up, "the watcher to catch up")
        assert await indexed(engine, cid) == chain_a.canonical_transfers([DEPOSIT])
        created = await client.post("/v1/wallets", json={"chain": "a", "address": LATE, "label": "late",
                                                         "kind": "deposit", "segregation": "customer",
                                                         "start_block": start})
        assert created.status_code == 201, created.text
        usdc.transfer(CUSTOMER, LATE, 3_000)  # live, after registration
        await _until(lambda: late_indexed(chain_a.canonical_transfers([LATE], start)), "the new wallet's transfers")

        await _until(lambda: followed(LATE, joined=True), "the new wallet to join the live cursor")
        late_id = created.json()["id"]
        assert (await client.patch(f"/v1/wallets/{late_id}", json={"active": False})).status_code == 200
        await _until(lambda: followed(LATE, joined=False), "the watcher to stop following the wallet")
        usdc.transfer(CUSTOMER, LATE, 4_000)  # while inactive: not indexed
        chain_a.anvil.mine(3)
        await _until(caught_up, "the watcher to pass the inactive wallet's transfer")
        assert await late_indexed(chain_a.canonical_transfers([LATE], start) - {
            t for t in chain_a.canonical_transfers([LATE], start) if t[6] == 4_000})

        assert (await client.patch(f"/v1/wallets/{late_id}", json={"active": True})).status_code == 200
        await _until(lambda: late_indexed(chain_a.canonical_transfers([LATE], start)), "the gap to be backfilled")
        chain_a.anvil.mine(8)
        await _until(caught_up, "the transfers to confirm")
        assert await indexed(engine, cid) == chain_a.canonical_transfers([DEPOSIT]) | \
            chain_a.canonical_transfers([LATE], start)
        await check_chain(settings, engine, settings.chains[0])  # the new pair's opening balance at start - 1
        balances = (await client.get("/v1/balances", params={"wallet": LATE})).json()["items"]
    for token in (usdc, dai):
        line = next(b for b in balances if b["token"]["address"] == token.address)
        assert int(line["confirmed"]["amount_base_units"]) == token.balance_of(LATE), token.address
        assert line["opening"]["block_number"] == start - 1
