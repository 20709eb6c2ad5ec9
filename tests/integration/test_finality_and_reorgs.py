"""States move seen -> confirmed -> finalized as blocks are mined; reorgs orphan, re-index and are recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import transfers_repo
from chains.devnet import encode_call
from chains.errors import ReorgTooDeep
from tests.support.harness import (
    Devnet,
    address_for,
    assert_balances_agree,
    index_once,
    indexed,
    make_settings,
    rows,
    wallet,
    write_toml,
)

DEPOSIT = address_for("deposit-r")
HOT = address_for("hot-r")
CUSTOMER = address_for("customer-r")



@pytest.fixture
def chain_a(fresh_chain_a: Devnet) -> Devnet:
    """Every test here reorgs: each gets its own anvil (see `fresh_chain_a`)."""
    return fresh_chain_a

def _settings(tmp_path: Path, url: str, chain: Devnet, **overrides: object):
    return make_settings(tmp_path, url, [chain.chain_config("a", **overrides)], chain.token_configs("a"),
                         [wallet(DEPOSIT, "dep"), wallet(HOT, "hot", "hot", "house")])


def _by_tx(all_rows: list[dict]) -> dict[str, dict]:
    return {r["tx_hash"]: r for r in all_rows}


@pytest.mark.parametrize("mode", ["depth", "tag"])
async def test_state_moves_seen_confirmed_finalized(chain_a: Devnet, engine: AsyncEngine, database_url: str,
                                                    tmp_path: Path, mode: str) -> None:
    # depth mode: confirmed at 2 blocks on top, finalized at 6. Tag mode: anvil's safe = head-4, finalized = head-8
    overrides = {"confirmations": 2, "finality": 6} if mode == "depth" else {"confirmations": "safe",
                                                                             "finality": "tag"}
    to_confirm, to_finalize = (2, 4) if mode == "depth" else (4, 4)
    settings = _settings(tmp_path, database_url, chain_a, **overrides)
    usdc = chain_a.tokens["usdc"]
    chain_a.anvil.mine(10)
    usdc.mint(CUSTOMER, 10**9)
    tx = usdc.transfer(CUSTOMER, DEPOSIT, 123_456_789)

    await index_once(settings, engine)
    row = _by_tx(await rows(engine, chain_a.chain_id))[tx]
    assert row["state"] == "seen" and row["confirmed_at"] is None

    chain_a.anvil.mine(to_confirm - 1)
    await index_once(settings, engine)
    assert _by_tx(await rows(engine, chain_a.chain_id))[tx]["state"] == "seen"
    chain_a.anvil.mine(1)
    await index_once(settings, engine)
    row = _by_tx(await rows(engine, chain_a.chain_id))[tx]
    assert row["state"] == "confirmed" and row["finalized_at"] is None

    chain_a.anvil.mine(to_finalize - 1)
    await index_once(settings, engine)
    assert _by_tx(await rows(engine, chain_a.chain_id))[tx]["state"] == "confirmed"
    chain_a.anvil.mine(1)
    await index_once(settings, engine)
    row = _by_tx(await rows(engine, chain_a.chain_id))[tx]
    assert row["state"] == "finalized"
    assert row["seen_at"] <= row["confirmed_at"] <= row["finalized_at"]
    assert row["amount"] == 123_456_789


@pytest.mark.parametrize("depth", [1, 3, 10])
async def test_reorg_replaces_transfers_and_is_recorded(chain_a: Devnet, engine: AsyncEngine, database_url: str,
                                                        tmp_path: Path, depth: int) -> None:
    settings = _settings(tmp_path, database_url, chain_a, confirmations=2, finality=30)
    usdc = chain_a.tokens["usdc"]
    usdc.mint(CUSTOMER, 10**12)
    chain_a.anvil.mine(3)
    replaced = [usdc.transfer(CUSTOMER, DEPOSIT, 1_000 + i) for i in range(depth)]  # one per block
    await index_once(settings, engine)
    old_head = chain_a.anvil.get_block("latest")["hash"]
    assert set(_by_tx(await rows(engine, chain_a.chain_id))) >= set(replaced)

    replacement = {"from": CUSTOMER, "to": usdc.address, "gas": 100_000,
                   "data": encode_call("transfer(address,uint256)", [HOT, 77_000 + depth])}
    chain_a.anvil.reorg(depth, [(replacement, depth - 1)])
    await index_once(settings, engine)

    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])
    by_tx = _by_tx(await rows(engine, chain_a.chain_id))
    assert all(by_tx[h]["state"] == "orphaned" and by_tx[h]["orphaned_at"] is not None for h in replaced)
    assert [r["amount"] for r in by_tx.values() if r["recipient"] == HOT] == [77_000 + depth]
    async with engine.connect() as conn:
        reorgs = await transfers_repo.reorgs(conn, chain_a.chain_id)
    assert len(reorgs) == 1
    assert reorgs[0]["depth"] == depth and reorgs[0]["old_head_hash"] == old_head
    assert reorgs[0]["orphaned"] == depth
    assert reorgs[0]["new_head_hash"] == chain_a.anvil.get_block("latest")["hash"]
    assert reorgs[0]["ancestor_number"] == chain_a.anvil.block_number() - depth
    await assert_balances_agree(settings, engine)


async def test_transaction_re_mined_in_another_block_keeps_its_identity(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, database_url, chain_a, confirmations=2, finality=30)
    usdc = chain_a.tokens["usdc"]
    signer = chain_a.anvil.accounts[1]  # a key anvil holds, so the raw transaction carries a real signature
    usdc.mint(signer, 10**12)
    chain_a.anvil.mine(3)  # the mint stays below the reorg
    tx = usdc.transfer(signer, DEPOSIT, 5_000_000)
    chain_a.anvil.mine(2)
    await index_once(settings, engine)
    before = _by_tx(await rows(engine, chain_a.chain_id))[tx]

    raw = chain_a.anvil.raw_transaction(tx)
    chain_a.anvil.reorg(3, [(raw, 1)])  # same signed transaction, mined one block later
    await index_once(settings, engine)

    after = _by_tx(await rows(engine, chain_a.chain_id))[tx]
    assert after["id"] == before["id"]
    assert after["state"] != "orphaned" and after["orphaned_at"] is None
    assert after["block_hash"] != before["block_hash"] and after["block_number"] == before["block_number"] + 1
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])
    from sqlalchemy import select

    from app.persistence.tables import TransferOrphaning

    async with engine.connect() as conn:
        evidence = (await conn.execute(select(TransferOrphaning.__table__))).mappings().all()
    assert [(e["transfer_id"], e["block_hash"]) for e in evidence] == [(before["id"], before["block_hash"])]
    await assert_balances_agree(settings, engine)


async def test_reorg_while_the_watcher_is_stopped_is_found_on_restart(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, database_url, chain_a, confirmations=2, finality=30)
    usdc = chain_a.tokens["usdc"]
    usdc.mint(CUSTOMER, 10**12)
    gone = usdc.transfer(CUSTOMER, DEPOSIT, 42)
    await index_once(settings, engine)  # the watcher stops here
    chain_a.anvil.reorg(2, [({"from": CUSTOMER, "to": usdc.address, "gas": 100_000,
                              "data": encode_call("transfer(address,uint256)", [DEPOSIT, 43])}, 0)])
    await index_once(settings, engine)  # a new process: same database, fresh watcher
    assert _by_tx(await rows(engine, chain_a.chain_id))[gone]["state"] == "orphaned"
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])
    await assert_balances_agree(settings, engine)


async def test_reorg_below_finality_raises_an_alert_and_stops_the_chain(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, database_url, chain_a, confirmations=1, finality=3)
    usdc = chain_a.tokens["usdc"]
    usdc.mint(CUSTOMER, 10**12)
    final = usdc.transfer(CUSTOMER, DEPOSIT, 99)
    chain_a.anvil.mine(6)
    await index_once(settings, engine)
    assert _by_tx(await rows(engine, chain_a.chain_id))[final]["state"] == "finalized"

    chain_a.anvil.reorg(8, [])  # deeper than the 3-block finality depth
    with pytest.raises(ReorgTooDeep):
        await index_once(settings, engine)
    async with engine.connect() as conn:
        status = (await transfers_repo.chain_statuses(conn))[0]
    assert status["state"] == "alert" and "below finality" in status["alert_detail"]
    row = _by_tx(await rows(engine, chain_a.chain_id))[final]
    assert row["state"] == "finalized"  # never silently rewritten
    chain_a.anvil.mine(3)
    with pytest.raises(ReorgTooDeep, match="in alert"):  # stays stopped, and says so
        await index_once(settings, engine)
    async with engine.connect() as conn:
        assert (await transfers_repo.chain_statuses(conn))[0]["cursor_number"] == status["cursor_number"]

    from app.persistence.watcher_store import SqlWatcherStore

    assert await SqlWatcherStore(engine).allow_deep_reorg(chain_a.chain_id)  # the operator's decision
    await index_once(settings, engine)
    assert _by_tx(await rows(engine, chain_a.chain_id))[final]["state"] == "orphaned"
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])
    async with engine.connect() as conn:
        assert (await transfers_repo.chain_statuses(conn))[0]["state"] == "live"
        assert [r["deep"] for r in await transfers_repo.reorgs(conn, chain_a.chain_id)] == [True]
    await assert_balances_agree(settings, engine)


async def test_a_batch_of_transactions_re_mined_after_a_reorg_is_revived_in_one_bulk_insert(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    """40 transfers in one block (the bulk COPY path on PostgreSQL), reorged away and re-mined one block later."""
    settings = _settings(tmp_path, database_url, chain_a, confirmations=2, finality=30)
    usdc = chain_a.tokens["usdc"]
    signer = chain_a.anvil.accounts[2]
    usdc.mint(signer, 10**12)
    chain_a.anvil.mine(3)
    with chain_a.anvil.in_one_block():
        txs = [usdc.transfer(signer, DEPOSIT, 100 + i, wait=False) for i in range(40)]
    chain_a.anvil.mine(1)
    await index_once(settings, engine)
    before = {tx: r for tx, r in _by_tx(await rows(engine, chain_a.chain_id)).items() if tx in txs}
    assert len(before) == 40

    chain_a.anvil.reorg(2, [(chain_a.anvil.raw_transaction(tx), 1) for tx in txs])
    await index_once(settings, engine)
    after = _by_tx(await rows(engine, chain_a.chain_id))
    assert {tx: after[tx]["id"] for tx in txs} == {tx: r["id"] for tx, r in before.items()}
    assert {after[tx]["state"] for tx in txs} == {"seen"}
    assert {after[tx]["block_number"] for tx in txs} == {before[txs[0]]["block_number"] + 1}
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])
    await assert_balances_agree(settings, engine)


async def _feed_transfers(engine: AsyncEngine) -> list[tuple]:
    """Every transfer event of the feed as a reader sees it: (seq, type, id, state, block hash, log index,
    token, sender, recipient, amount)."""
    from app.persistence import feed

    C = feed.COLUMNS
    async with engine.connect() as conn:
        page, _ = await feed.page(conn, after=0, limit=10_000, types=None)
    return [(r[C.seq], r[C.type], r[C.entity_id], r[C.state], r[C.block_hash], r[C.t_log_index], r[C.t_token],
             r[C.t_sender], r[C.t_recipient], int(r[C.t_amount])) for r in page if r[C.type].startswith("transfer.")]


def _observations(all_rows: list[dict], tx: str) -> set[tuple]:
    return {(r["log_index"], r["recipient"], int(r["amount"]), r["state"], r["block_hash"])
            for r in all_rows if r["tx_hash"] == tx}


@pytest.mark.parametrize("token", ["usdc", "dai"])
@pytest.mark.parametrize("move", ["behind_another", "ahead_of_the_other_dropped"])
async def test_a_transaction_re_mined_at_other_log_indexes_is_new_transfers_and_the_feed_is_unchanged(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path, token: str, move: str
) -> None:
    """T pays DEPOSIT then HOT in one transaction: (T, i) DEPOSIT a and (T, i+1) HOT b. Re-mined behind another
    transaction (indexes move up) or without the one it followed (they move down), (T, i+1) exists again with
    other content: it is a new transfer, the old observation stays orphaned and the feed's past events keep the
    amounts that happened."""
    settings = _settings(tmp_path, database_url, chain_a, confirmations=1, finality=30)
    tok = chain_a.tokens[token]
    unit = 10 ** tok.decimals()
    signer, other = chain_a.anvil.accounts[4], chain_a.anvil.accounts[5]
    tok.mint(signer, 10**6 * unit)
    tok.mint(other, 10**6 * unit)
    chain_a.tokens["usdt"].mint(other, 10**12)
    chain_a.batch.batch_transfer(tok, signer, [DEPOSIT], [1])  # approves the batch sender: below the reorg
    chain_a.anvil.mine(3)
    a, b = 100 * unit, 200 * unit

    def noise() -> dict:  # one Transfer log of another token, to nobody we watch
        return {"from": other, "to": chain_a.tokens["usdt"].address, "gas": 100_000,
                "data": encode_call("transfer(address,uint256)", [CUSTOMER, 5])}

    if move == "behind_another":
        tx = chain_a.batch.batch_transfer(tok, signer, [DEPOSIT, HOT], [a, b])
    else:
        with chain_a.anvil.in_one_block():
            chain_a.anvil.send_tx(other, chain_a.tokens["usdt"].address,
                                  encode_call("transfer(address,uint256)", [CUSTOMER, 5]), wait=False, gas=100_000)
            tx = chain_a.batch.batch_transfer(tok, signer, [DEPOSIT, HOT], [a, b], wait=False)
    chain_a.anvil.mine(2)  # confirmed, not final
    await index_once(settings, engine)
    old = _observations(await rows(engine, chain_a.chain_id), tx)
    (i, _, _, _, old_hash), = [o for o in old if o[1] == DEPOSIT]
    assert old == {(i, DEPOSIT, a, "confirmed", old_hash), (i + 1, HOT, b, "confirmed", old_hash)}
    feed_before = await _feed_transfers(engine)

    raw = chain_a.anvil.raw_transaction(tx)
    if move == "behind_another":
        chain_a.anvil.reorg(4, [(noise(), 0), (raw, 0)])
        j = i + 1
    else:
        chain_a.anvil.reorg(4, [(raw, 0)])
        j = i - 1
    assert int(chain_a.anvil.receipt(tx)["logs"][0]["logIndex"], 16) in (j, j - 1)  # an Approval may precede
    logs = chain_a.anvil.receipt(tx)["logs"]
    j = min(int(entry["logIndex"], 16) for entry in logs if entry["address"].lower() == tok.address.lower()
            and len(entry["topics"]) == 3 and int(entry["data"], 16) == a)
    assert j != i
    chain_a.anvil.mine(2)
    await index_once(settings, engine)

    all_rows = await rows(engine, chain_a.chain_id)
    new_hash = chain_a.anvil.receipt(tx)["blockHash"]
    assert _observations(all_rows, tx) == {
        (i, DEPOSIT, a, "orphaned", old_hash), (i + 1, HOT, b, "orphaned", old_hash),
        (j, DEPOSIT, a, "confirmed", new_hash), (j + 1, HOT, b, "confirmed", new_hash),
    }
    feed_after = await _feed_transfers(engine)
    assert feed_after[:len(feed_before)] == feed_before  # the past is not rewritten
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])
    await assert_balances_agree(settings, engine)


async def _orphaned_txs(engine: AsyncEngine) -> set[str]:
    """Transaction hashes of every transfer that was ever orphaned (the evidence is never deleted)."""
    from sqlalchemy import select

    from app.persistence.tables import Transfer, TransferOrphaning

    TO, T = TransferOrphaning.__table__, Transfer.__table__
    async with engine.connect() as conn:
        return set((await conn.execute(select(T.c.tx_hash).join(TO, TO.c.transfer_id == T.c.id))).scalars())


def _deep_fixture(chain: Devnet) -> tuple[list[str], list[str], list[str]]:
    """Early transfers (finalized long before), kept ones just below the fork, and gone ones at the fork and
    above; in and out of our wallets, 6 and 18 decimals."""
    usdc, dai = chain.tokens["usdc"], chain.tokens["dai"]
    usdc.mint(CUSTOMER, 10**12)
    dai.mint(CUSTOMER, 10**24)
    early = [usdc.transfer(CUSTOMER, DEPOSIT, 11), dai.transfer(CUSTOMER, HOT, 3 * 10**18)]
    chain.anvil.mine(10)
    kept = [usdc.transfer(DEPOSIT, CUSTOMER, 5), dai.transfer(HOT, CUSTOMER, 10**18)]
    chain.anvil.mine(2)
    gone = [usdc.transfer(CUSTOMER, DEPOSIT, 99), dai.transfer(CUSTOMER, HOT, 2 * 10**18)]
    chain.anvil.mine(6)
    return early, kept, gone


def _block_of(chain: Devnet, tx: str) -> int:
    return int(chain.anvil.receipt(tx)["blockNumber"], 16)


async def test_an_allowed_deep_reorg_rolls_back_to_the_fork_point_found_from_stored_hashes(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    from app.persistence.watcher_store import SqlWatcherStore

    settings = _settings(tmp_path, database_url, chain_a, confirmations=1, finality=3)
    early, kept, gone = _deep_fixture(chain_a)
    await index_once(settings, engine)  # early and kept are final, their blocks pruned from the window
    fork = _block_of(chain_a, gone[0])
    chain_a.anvil.reorg(chain_a.anvil.block_number() - fork + 1, [])
    with pytest.raises(ReorgTooDeep):
        await index_once(settings, engine)
    assert await SqlWatcherStore(engine).allow_deep_reorg(chain_a.chain_id)
    await index_once(settings, engine)

    assert await _orphaned_txs(engine) == set(gone)  # not everything back to genesis
    by_tx = _by_tx(await rows(engine, chain_a.chain_id))
    assert {tx: by_tx[tx]["state"] for tx in early + kept} == dict.fromkeys(early + kept, "finalized")
    async with engine.connect() as conn:
        (reorg,) = await transfers_repo.reorgs(conn, chain_a.chain_id)
    assert reorg["deep"] and _block_of(chain_a, kept[-1]) <= reorg["ancestor_number"] < fork
    assert reorg["orphaned"] == len(gone)
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])
    await assert_balances_agree(settings, engine)


async def test_a_deep_reorg_walk_is_capped_and_the_chain_stays_in_alert(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    from dataclasses import replace

    from app.indexer import build_watcher
    from app.persistence.watcher_store import SqlWatcherStore
    from app.wallet_book import wallet_book

    settings = _settings(tmp_path, database_url, chain_a, confirmations=1, finality=3)
    early, kept, gone = _deep_fixture(chain_a)
    await index_once(settings, engine)
    fork = _block_of(chain_a, gone[0])
    depth = chain_a.anvil.block_number() - fork + 1
    chain_a.anvil.reorg(depth, [])
    with pytest.raises(ReorgTooDeep):
        await index_once(settings, engine)
    store = SqlWatcherStore(engine)
    cursor = await store.load_cursor(chain_a.chain_id)
    assert await store.allow_deep_reorg(chain_a.chain_id)
    handle = build_watcher(settings, settings.chains[0],
                           (await wallet_book(settings, engine)).active_on(chain_a.chain_id), store)
    handle.watcher.spec = replace(handle.watcher.spec, max_reorg_walk=depth - 1)  # the fork is one block deeper
    try:
        with pytest.raises(ReorgTooDeep, match=f"within {depth - 1} blocks"):
            await handle.watcher.run_until_caught_up()
    finally:
        await handle.rpc.close()
    assert await _orphaned_txs(engine) == set()
    assert await store.load_cursor(chain_a.chain_id) == cursor
    async with engine.connect() as conn:
        status = (await transfers_repo.chain_statuses(conn))[0]
        assert await transfers_repo.reorgs(conn, chain_a.chain_id) == []
    assert status["state"] == "alert" and f"within {depth - 1} blocks" in status["alert_detail"]


async def test_acknowledging_an_alert_that_no_longer_reproduces_clears_it_without_a_walk(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    from app.errors import SettleError
    from app.indexer import acknowledge_alert
    from app.persistence import audit
    from tests.support.rpc_proxy import Fault, FaultProxy

    early, kept, gone = _deep_fixture(chain_a)
    with FaultProxy(chain_a.anvil.url) as proxy:
        settings = _settings(tmp_path, database_url, chain_a, confirmations=1, finality=3, rpc_urls=[proxy.url])
        await index_once(settings, engine)
        before = await rows(engine, chain_a.chain_id)
        with pytest.raises(SettleError, match="not in alert"):
            await acknowledge_alert(settings, engine, settings.chains[0], actor="olivia")
        # the node goes onto another fork from the block of `gone` up: deeper than finality
        proxy.add(Fault("stale_fork", times=None, block=_block_of(chain_a, gone[0]), depth=1_000))
        with pytest.raises(ReorgTooDeep):
            await index_once(settings, engine)
        with pytest.raises(SettleError, match="still not canonical"):  # the fork is still there: refused
            await acknowledge_alert(settings, engine, settings.chains[0], actor="olivia")
        proxy.clear()  # the node is back on the chain we indexed: the alert no longer reproduces
        config = write_toml(tmp_path / "settle.toml", database_url=database_url, data_dir=tmp_path / "data",
                            chains=[chain_a.chain_config("a", rpc_urls=[proxy.url])],
                            tokens=chain_a.token_configs("a"), wallets=[wallet(DEPOSIT, "dep")])
        done = subprocess.run([sys.executable, "-m", "app", "--config", str(config), "chains", "acknowledge", "a",
                               "--actor", "olivia"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "alert acknowledged" in done.stdout
        async with engine.connect() as conn:
            status = (await transfers_repo.chain_statuses(conn))[0]
            assert await transfers_repo.reorgs(conn, chain_a.chain_id) == []
            entries = [e for e in await audit.entries(conn, limit=1000) if e["action"] == "chain.alert_acknowledged"]
        assert status["state"] == "live" and status["alert_detail"] is None and not status["allow_deep_reorg"]
        assert [(e["actor"], e["entity"]) for e in entries] == [("olivia", "chain:a")]
        chain_a.anvil.mine(2)
        await index_once(settings, engine)
    assert await _orphaned_txs(engine) == set()
    assert {r["id"]: r["tx_hash"] for r in await rows(engine, chain_a.chain_id)} == {
        r["id"]: r["tx_hash"] for r in before}
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT, HOT])
