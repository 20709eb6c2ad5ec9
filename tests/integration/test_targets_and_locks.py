"""A wallet or token added later is backfilled on its own; one watcher per chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import WatcherLocked
from app.persistence.locks import chain_lock
from tests.support.harness import (
    Devnet,
    address_for,
    assert_balances_agree,
    index_once,
    indexed,
    make_settings,
    wallet,
)
from tests.support.rpc_proxy import FaultProxy
from wallets import address_to_topic

OLD = address_for("old-wallet")
NEW = address_for("new-wallet")
CUSTOMER = address_for("customer-t")


async def test_a_wallet_and_a_token_added_later_are_backfilled_without_reindexing_the_rest(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    usdc, dai = chain_a.tokens["usdc"], chain_a.tokens["dai"]
    usdc.mint(CUSTOMER, 10**12)
    dai.mint(CUSTOMER, 10**24)
    for i in range(5):
        usdc.transfer(CUSTOMER, OLD, 100 + i)
        usdc.transfer(CUSTOMER, NEW, 200 + i)
        dai.transfer(CUSTOMER, OLD, 10**18 + i)
    chain_a.anvil.mine(10)
    tokens = chain_a.token_configs("a")
    usdc_only = [t for t in tokens if t["symbol"] == "USDC"]
    with FaultProxy(chain_a.anvil.url) as proxy:
        first = make_settings(tmp_path, database_url, [chain_a.chain_config("a", rpc_urls=[proxy.url])], usdc_only,
                              [wallet(OLD, "old")])
        await index_once(first, engine)
        assert await indexed(engine, chain_a.chain_id) == {
            t for t in chain_a.canonical_transfers([OLD]) if t[3] == usdc.address}
        cursor_before = chain_a.anvil.block_number()
        for i in range(3):
            usdc.transfer(CUSTOMER, NEW, 300 + i)
        chain_a.anvil.mine(4)
        proxy.log.clear()

        second = make_settings(tmp_path, database_url, [chain_a.chain_config("a", rpc_urls=[proxy.url])], tokens,
                               [wallet(OLD, "old"), wallet(NEW, "new")])
        await index_once(second, engine)
        catch_up = [item["params"][0] for item in proxy.log if item.get("method") == "eth_getLogs"
                    and "fromBlock" in item["params"][0] and int(item["params"][0]["fromBlock"], 16) <= cursor_before]
        await assert_balances_agree(second, engine)
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([OLD, NEW])
    assert catch_up, "the new targets were not backfilled"
    new_topic = address_to_topic(NEW)
    for query in catch_up:  # only the new wallet (any token) or only the new token (any wallet) is re-read
        only_new_wallet = new_topic in json.dumps(query["topics"]) and address_to_topic(OLD) not in json.dumps(
            query["topics"])
        only_new_token = query["address"] in ([dai.address], dai.address) or set(query["address"]) == {
            chain_a.tokens["usdt"].address} or set(query["address"]) <= {dai.address, chain_a.tokens["usdt"].address}
        assert only_new_wallet or only_new_token, query


async def test_a_second_watcher_for_the_same_chain_cannot_run(engine: AsyncEngine, tmp_path: Path) -> None:
    async with chain_lock(engine, 777, tmp_path):
        with pytest.raises(WatcherLocked):
            async with chain_lock(engine, 777, tmp_path):
                pass
        async with chain_lock(engine, 778, tmp_path):  # another chain is free
            pass
    async with chain_lock(engine, 777, tmp_path):  # released
        pass
