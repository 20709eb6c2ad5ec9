"""A flaky provider (fault-injecting proxy in front of anvil) and a dead second URL: the indexed set is exact."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.indexer import build_watcher
from app.persistence.watcher_store import SqlWatcherStore
from app.wallet_book import wallet_book
from tests.support.harness import (
    Devnet,
    address_for,
    assert_balances_agree,
    index_once,
    indexed,
    make_settings,
    rows,
    wallet,
)
from tests.support.rpc_proxy import Fault, FaultProxy, dead_url

DEPOSIT = address_for("deposit-f")
HOT = address_for("hot-f")
CUSTOMER = address_for("customer-f")


def _traffic(chain: Devnet, blocks: int = 40) -> None:
    usdc, usdt = chain.tokens["usdc"], chain.tokens["usdt"]
    usdc.mint(CUSTOMER, 10**12)
    usdt.mint(CUSTOMER, 10**12)
    for i in range(blocks):
        (usdc if i % 2 else usdt).transfer(CUSTOMER, DEPOSIT if i % 3 else HOT, 1_000 + i)
        if i % 5 == 0:
            usdc.transfer(CUSTOMER, address_for(f"other-{i}"), 7)  # noise in the same token
    chain.batch.batch_transfer(usdc, CUSTOMER, [DEPOSIT, HOT] * 10, list(range(1, 21)))


def _settings(tmp_path: Path, url: str, chain: Devnet, rpc_urls: list[str], **overrides: object):
    cfg = chain.chain_config("a", rpc_urls=rpc_urls, request_timeout=1.0, max_retries=12, **overrides)
    return make_settings(tmp_path, url, [cfg], chain.token_configs("a"),
                         [wallet(DEPOSIT, "dep"), wallet(HOT, "hot", "hot", "house")])


EVERY_FAULT = [
    # each range error fires on the next request wider than one block: 64 -> 32 -> 16 -> 8 -> 4 -> 2 -> 1
    Fault("infura_range", min_range=1, times=2),
    Fault("alchemy_range", min_range=1),
    Fault("reth_range", min_range=1),
    Fault("ankr_range", min_range=1),
    Fault("arbitrum_range", min_range=1),
    Fault("http_429", times=2),
    Fault("timeout", delay=2.5),
    Fault("empty_logs"),
    Fault("duplicate_log"),
    Fault("wrong_block_hash"),
    Fault("http_429", method="eth_getBlockByNumber"),
    Fault("rate_limit_jsonrpc", method="eth_blockNumber"),
]


@pytest.mark.parametrize("mode", ["wallets", "scan"])
async def test_every_provider_fault_and_a_dead_url_still_give_the_exact_set(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path, mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _traffic(chain_a)
    chain_a.anvil.mine(5)
    with FaultProxy(chain_a.anvil.url) as proxy:
        proxy.add(*[Fault(f.kind, method=f.method, times=f.times, min_range=f.min_range, delay=f.delay)
                    for f in EVERY_FAULT])
        settings = _settings(tmp_path, database_url, chain_a, [proxy.url, dead_url()], mode=mode,
                             max_getlogs_range=64, finality=20)
        with caplog.at_level(logging.DEBUG):
            await index_once(settings, engine)
        fired = dict(proxy.fired)
        proxy.clear()
        await assert_balances_agree(settings, engine)
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])
    must_fire = {"infura_range", "alchemy_range", "reth_range", "ankr_range", "arbitrum_range", "http_429",
                 "timeout", "empty_logs", "duplicate_log", "wrong_block_hash"}
    assert must_fire <= set(fired), fired
    assert "SECRETKEY0123456789abcdef" not in caplog.text  # the API key in the proxy's path never shows


async def test_failover_to_a_second_node_stays_behind_its_head(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    _traffic(chain_a, blocks=10)
    chain_a.anvil.mine(5)
    settings = _settings(tmp_path, database_url, chain_a, [dead_url(), chain_a.anvil.url], finality=20)
    store = SqlWatcherStore(engine)
    await store.ensure_chain(chain_a.chain_id, "a")
    wallets = (await wallet_book(settings, engine)).active_on(chain_a.chain_id)
    handle = build_watcher(settings, settings.chains[0], wallets, store)
    try:
        cursor = await handle.watcher.run_until_caught_up()
    finally:
        await handle.rpc.close()
    head = chain_a.anvil.block_number()
    assert handle.rpc.active == 1 and handle.rpc.endpoints[0].failures > 0
    assert cursor.number == head - settings.chains[0].failover_lag
    block = chain_a.anvil.get_block(cursor.number)
    assert cursor.hash == block["hash"]
    assert await indexed(engine, chain_a.chain_id) == {
        t for t in chain_a.canonical_transfers([DEPOSIT, HOT]) if int(chain_a.anvil.receipt(t[0])["blockNumber"], 16)
        <= cursor.number
    }


async def test_a_lagging_node_is_not_mistaken_for_a_reorg(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    _traffic(chain_a, blocks=10)
    with FaultProxy(chain_a.anvil.url) as proxy:
        settings = _settings(tmp_path, database_url, chain_a, [proxy.url], finality=20)
        await index_once(settings, engine)
        proxy.add(Fault("lagging_head", method="*", times=None, lag=5))  # the node falls 5 blocks behind
        chain_a.anvil.mine(2)
        await index_once(settings, engine)
        proxy.clear()
        await index_once(settings, engine)
    from app.persistence import transfers_repo

    async with engine.connect() as conn:
        assert await transfers_repo.reorgs(conn, chain_a.chain_id) == []
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])


@pytest.mark.parametrize("kind", ["wrong_block_hash", "duplicate_log", "empty_logs"])
async def test_bad_replies_during_the_finalized_backfill_are_re_asked(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path, kind: str
) -> None:
    _traffic(chain_a, blocks=12)
    chain_a.anvil.mine(30)  # everything below finality: the backfill path (no per-block headers) serves it
    with FaultProxy(chain_a.anvil.url) as proxy:
        # empty_logs: the range reply and then one by-hash re-ask both lie (an empty answer by hash for a block
        # whose bloom matches is asked twice); with a single provider that lies every time nothing can tell
        proxy.add(Fault(kind, times=2 if kind == "empty_logs" else 3))
        settings = _settings(tmp_path, database_url, chain_a, [proxy.url], finality=20)
        await index_once(settings, engine)
        assert proxy.fired[kind] >= 1
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])


MALFORMED = [
    ("null_id", "eth_getBlockByNumber"),  # a batch of headers with an item whose id is null
    ("null_id", "eth_blockNumber"),
    ("missing_field", "eth_getBlockByNumber"),  # a header without parentHash
    ("missing_field", "eth_getLogs"),  # logs without logIndex
    ("wrong_type", "eth_blockNumber"),
    ("wrong_type", "eth_getBlockByNumber"),
    ("wrong_type", "eth_getLogs"),
    ("no_result", "eth_getLogs"),
    ("non_json", "eth_getBlockByNumber"),
]


@pytest.mark.parametrize(("kind", "method"), MALFORMED)
@pytest.mark.parametrize("follow", [False, True], ids=["backfill", "follow"])
async def test_malformed_replies_are_retried_as_chain_errors_and_the_set_stays_exact(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path, kind: str, method: str,
    follow: bool,
) -> None:
    _traffic(chain_a, blocks=12)
    if not follow:
        chain_a.anvil.mine(30)  # everything below finality: the backfill path
    with FaultProxy(chain_a.anvil.url) as proxy:
        proxy.add(Fault(kind, method=method, times=3))
        settings = _settings(tmp_path, database_url, chain_a, [proxy.url], finality=20)
        await index_once(settings, engine)
        assert proxy.fired[kind] >= 1
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])


NEW = address_for("new-wallet-f")


@pytest.mark.parametrize("added", ["wallet", "token"])
async def test_backfilling_a_wallet_or_token_added_later_refuses_a_stale_fork_log_above_finality(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path, added: str
) -> None:
    """The node serving the new target's backfill followed a fork that lost at one block below the cursor: its
    log there (a transfer that never happened on the chain we indexed) is not accepted, as confirmed or later as
    finalized; once the node agrees with the stored window the backfill gives the exact set."""
    from chains.decoding import TRANSFER_TOPIC
    from chains.errors import ChainError
    from wallets import address_to_topic

    _traffic(chain_a, blocks=12)
    token = chain_a.tokens["usdc" if added == "wallet" else "dai"]
    token.mint(CUSTOMER, 10**24)
    token.transfer(CUSTOMER, NEW if added == "wallet" else DEPOSIT, 4_000 * 10 ** token.decimals())
    chain_a.anvil.mine(3)
    to = NEW if added == "wallet" else DEPOSIT
    fake = {"address": token.address.lower(), "transactionHash": "0x" + "ee" * 32, "logIndex": "0x0",
            "topics": [TRANSFER_TOPIC, address_to_topic(CUSTOMER), address_to_topic(to)],
            "data": "0x" + f"{777 * 10 ** token.decimals():064x}"}
    with FaultProxy(chain_a.anvil.url) as proxy:
        cfg = chain_a.chain_config("a", rpc_urls=[proxy.url], request_timeout=1.0, max_retries=4, finality=30)
        tokens = chain_a.token_configs("a")
        wallets = [wallet(DEPOSIT, "dep"), wallet(HOT, "hot", "hot", "house")]
        first = make_settings(tmp_path, database_url, [cfg], tokens if added == "wallet" else tokens[:2], wallets)
        later = make_settings(tmp_path, database_url, [cfg], tokens,
                              wallets + ([wallet(NEW, "new")] if added == "wallet" else []))
        await index_once(first, engine)
        cursor = await SqlWatcherStore(engine).load_cursor(chain_a.chain_id)
        assert cursor is not None
        proxy.add(Fault("stale_fork", times=None, block=cursor.number - 2, logs=(fake,)))
        with pytest.raises(ChainError):
            await index_once(later, engine)
        assert proxy.fired["stale_fork"] >= 1
        assert [r for r in await rows(engine, chain_a.chain_id) if r["tx_hash"] == fake["transactionHash"]] == []
        proxy.clear()
        chain_a.anvil.mine(40)  # everything finalizes
        await index_once(later, engine)
    all_rows = await rows(engine, chain_a.chain_id)
    assert [r for r in all_rows if r["tx_hash"] == fake["transactionHash"]] == []
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT, NEW])
    assert {r["state"] for r in all_rows} == {"finalized"}


@pytest.mark.parametrize("kind", ["missing_trie_node", "history_unavailable"])
async def test_a_node_without_history_fails_over_and_with_none_the_check_says_an_archive_node_is_needed(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path, kind: str
) -> None:
    from app.balance_check import check_chain
    from app.errors import SettleError

    _traffic(chain_a, blocks=6)
    chain_a.anvil.mine(3)
    with FaultProxy(chain_a.anvil.url) as pruned, FaultProxy(chain_a.anvil.url) as also_pruned:
        pruned.add(Fault(kind, method="eth_call", times=None))
        also_pruned.add(Fault(kind, method="eth_call", times=None))
        settings = _settings(tmp_path, database_url, chain_a, [pruned.url, chain_a.anvil.url])
        await index_once(settings, engine)
        await assert_balances_agree(settings, engine)  # the second URL (an archive) answers
        assert pruned.fired[kind] >= 1
        settings = _settings(tmp_path, database_url, chain_a, [pruned.url, also_pruned.url])
        with pytest.raises(SettleError, match="an archive node is needed") as raised:
            await check_chain(settings, engine, settings.chains[0])
    assert "SECRETKEY" not in str(raised.value)
    assert also_pruned.fired[kind] >= 1


@pytest.mark.parametrize("position", [0, 1])
async def test_a_url_serving_another_chain_is_refused_at_start_naming_it_redacted(
    chain_a: Devnet, chain_b: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path, position: int
) -> None:
    from chains.errors import WrongChain

    _traffic(chain_a, blocks=3)
    with FaultProxy(chain_b.anvil.url, path="/v2/k3y") as other:
        urls = [chain_a.anvil.url]
        urls.insert(position, other.url)
        settings = _settings(tmp_path, database_url, chain_a, urls)
        with pytest.raises(WrongChain) as raised:
            await index_once(settings, engine)
    message = str(raised.value)
    assert other.url.replace("/v2/k3y", "/v2/***") in message and "k3y" not in message
    assert f"chain id {chain_b.chain_id}" in message and str(chain_a.chain_id) in message
    assert await indexed(engine, chain_a.chain_id) == set()


@pytest.mark.parametrize(("kind", "wrong"), [("usdc", 18), ("dai", 6)])
async def test_a_token_configured_with_other_decimals_than_its_contract_is_a_start_up_error_naming_it(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path, kind: str, wrong: int
) -> None:
    from app.indexer import StartupMismatch

    _traffic(chain_a, blocks=3)
    token = chain_a.tokens[kind]
    tokens = [dict(t, decimals=wrong) if t["address"] == token.address else t for t in chain_a.token_configs("a")]
    settings = make_settings(tmp_path, database_url, [chain_a.chain_config("a")], tokens,
                             [wallet(DEPOSIT, "dep"), wallet(HOT, "hot", "hot", "house")])
    with pytest.raises(StartupMismatch) as raised:
        await index_once(settings, engine)
    assert f"token {kind.upper()} {token.address}" in str(raised.value)
    assert f"decimals = {wrong} but its contract's decimals() is {token.decimals()}" in str(raised.value)
    assert await indexed(engine, chain_a.chain_id) == set()
    from app.persistence import transfers_repo

    async with engine.connect() as conn:
        status = (await transfers_repo.chain_statuses(conn))[0]
    assert f"token {kind.upper()} {token.address}" in status["last_error"]  # `settle chains` shows it too
