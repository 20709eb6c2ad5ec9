"""The HTTP API on a real indexed database: health, chains, transfers with filters and keyset pagination."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from chains.devnet import MAX_UINT256
from tests.support.harness import Devnet, address_for, bearer, index_once, indexed, make_settings, wallet

DEPOSIT = address_for("deposit-api")
HOT = address_for("hot-api")
CUSTOMER = address_for("customer-api")


def _settings(tmp_path: Path, url: str, chain: Devnet, rpc: str | None = None):
    cfg = chain.chain_config("a", **({"rpc_urls": [rpc]} if rpc else {}))
    return make_settings(tmp_path, url, [cfg], chain.token_configs("a"),
                         [wallet(DEPOSIT, "dep"), wallet(HOT, "hot", "hot", "house")])


def _client(app: object, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",  # type: ignore[arg-type]
                             headers=headers)


async def _indexed_app(chain: Devnet, engine: AsyncEngine, url: str, tmp_path: Path):
    usdc, dai = chain.tokens["usdc"], chain.tokens["dai"]
    usdc.mint(CUSTOMER, 10**12)
    for i in range(25):
        usdc.transfer(CUSTOMER, DEPOSIT, 1_500_000 + i)
    usdc.transfer(DEPOSIT, HOT, 1_000_000)
    dai.mint(HOT, MAX_UINT256)
    chain.anvil.mine(8)
    usdc.transfer(CUSTOMER, DEPOSIT, 1)  # still `seen`
    settings = _settings(tmp_path, url, chain)
    await index_once(settings, engine)
    return settings, create_app(settings, engine=engine)


async def test_transfers_paginate_by_keyset_with_exact_amounts(chain_a: Devnet, engine: AsyncEngine,
                                                              database_url: str, tmp_path: Path) -> None:
    settings, app = await _indexed_app(chain_a, engine, database_url, tmp_path)
    seen: list[dict] = []
    async with _client(app, await bearer(engine)) as client:
        cursor = None
        while True:
            params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/transfers", params=params)).json()
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        by_state = (await client.get("/v1/transfers", params={"state": "seen"})).json()["items"]
        to_hot = (await client.get("/v1/transfers", params={"wallet": HOT.lower()})).json()["items"]
        dai = (await client.get("/v1/transfers", params={"token": chain_a.tokens["dai"].address,
                                                         "chain": "a"})).json()["items"]
    assert len(seen) == len({t["id"] for t in seen}) == 28
    assert {(t["tx_hash"], t["log_index"]) for t in seen} == {
        (t[0], t[1]) for t in await indexed(engine, chain_a.chain_id)}
    assert [t["amount_base_units"] for t in by_state] == ["1"] and by_state[0]["amount"] == "0.000001"
    assert len(to_hot) == 2
    assert dai[0]["amount_base_units"] == str(MAX_UINT256)
    assert dai[0]["amount"] == "115792089237316195423570985008687907853269984665640564039457.584007913129639935"
    first = next(t for t in seen if t["amount_base_units"] == "1500000")
    assert first["amount"] == "1.5" and first["token"] == {"address": chain_a.tokens["usdc"].address,
                                                            "symbol": "USDC", "decimals": 6}


@pytest.mark.parametrize(("params", "field", "status"), [
    ({"wallet": "0x123"}, "wallet", 422),  # malformed: the pattern in the schema
    ({"wallet": "0x28c6c06298d514db089934071355e5743bf21D60"}, "wallet", 400),  # wrong checksum
    ({"chain": "polygon"}, "chain", 400),
    ({"state": "pending"}, "state", 422),
    ({"limit": "0"}, "limit", 422),
    ({"limit": "many"}, "limit", 422),
    ({"cursor": "!!!"}, "cursor", 400),
])
async def test_bad_query_parameters_get_a_problem_naming_the_field(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path, params: dict, field: str,
    status: int,
) -> None:
    app = create_app(_settings(tmp_path, database_url, chain_a), engine=engine)
    async with _client(app, await bearer(engine)) as client:
        reply = await client.get("/v1/transfers", params=params)
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["errors"][0]["field"] == field


async def test_health_and_chains_report_lag_state_and_redacted_endpoints(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    chain_a.anvil.mine(3)
    secret_url = chain_a.anvil.url + "/v3/0123456789abcdef0123456789abcdef"
    settings = _settings(tmp_path, database_url, chain_a)
    app = create_app(settings, engine=engine)
    async with _client(app, await bearer(engine)) as client:
        before = (await client.get("/v1/health")).json()
        await index_once(settings, engine)
        health = (await client.get("/v1/health")).json()
        chains = (await client.get("/v1/chains")).json()
        redacted = create_app(_settings(tmp_path, database_url, chain_a, rpc=secret_url), engine=engine)
    async with _client(redacted, await bearer(engine)) as client:
        shown = (await client.get("/v1/chains")).text
    assert before["status"] == "degraded" and before["chains"][0]["state"] == "not started"
    assert health == {"status": "ok", "chains": [{"name": "a", "chain_id": chain_a.chain_id, "state": "live",
                                                  "lag": 0, "last_error": None}],
                      "problems": [], "loops": []}
    head = chain_a.anvil.block_number()
    assert chains[0]["head"] == chains[0]["indexed"] == head and chains[0]["lag"] == 0
    assert chains[0]["finalized"] == head - 6 and chains[0]["safe"] == head - 2
    assert "0123456789abcdef" not in shown


async def test_serve_runs_the_watchers_in_the_same_process(chain_a: Devnet, engine: AsyncEngine,
                                                           database_url: str, tmp_path: Path) -> None:
    usdc = chain_a.tokens["usdc"]
    usdc.mint(CUSTOMER, 10**9)
    usdc.transfer(CUSTOMER, DEPOSIT, 7_000_000)
    app = create_app(_settings(tmp_path, database_url, chain_a), engine=engine, run_watchers=True)
    async with app.router.lifespan_context(app), _client(app, await bearer(engine)) as client:
        for _ in range(200):
            items = (await client.get("/v1/transfers")).json()["items"]
            if items:
                break
            await asyncio.sleep(0.05)
        usdc.transfer(CUSTOMER, DEPOSIT, 8_000_000)  # live: picked up while serving
        for _ in range(200):
            items = (await client.get("/v1/transfers")).json()["items"]
            if len(items) == 2:
                break
            await asyncio.sleep(0.05)
    assert [t["amount_base_units"] for t in items] == ["7000000", "8000000"]


async def test_health_is_503_when_a_chain_is_in_alert(chain_a: Devnet, engine: AsyncEngine, database_url: str,
                                                     tmp_path: Path) -> None:
    from app.persistence.watcher_store import SqlWatcherStore

    settings = _settings(tmp_path, database_url, chain_a)
    await index_once(settings, engine)
    await SqlWatcherStore(engine).set_alert(chain_a.chain_id, "reorg below finality")
    async with _client(create_app(settings, engine=engine), await bearer(engine)) as client:
        reply = await client.get("/v1/health")
    assert reply.status_code == 503 and reply.json()["status"] == "alert"
