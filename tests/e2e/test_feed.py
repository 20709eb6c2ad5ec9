"""The core-recon feed: an ops flow on anvil that ends in the feed, replay from 0 rebuilding the state, writers
committing concurrently while a reader polls, and the feed's idempotence (a second pass, re-indexing and
re-ingesting add nothing)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.main import create_app
from app.persistence import feed
from app.persistence.tables import FeedEvent
from app.reconciler import reconcile_once
from app.records import ingest
from tests.support.feed_replay import announced, database_state, read_all, replay
from tests.support.harness import Devnet, address_for, bearer, index_once, make_settings, rows, wallet

DEP1, DEP2 = address_for("feed-dep-1"), address_for("feed-dep-2")
ALICE, BOB = address_for("feed-alice"), address_for("feed-bob")


def _settings(tmp_path: Path, url: str, chain: Devnet):
    return make_settings(tmp_path, url, [chain.chain_config("a", confirmations=1, finality=30)],
                         chain.token_configs("a"), [wallet(DEP1, "d1"), wallet(DEP2, "d2")])


def _rec(ext: str, wallet_: str, base: int, chain: Devnet, created: datetime) -> dict:
    return {"source": "core", "external_id": ext, "kind": "deposit", "chain": "a",
            "token": chain.tokens["usdc"].address, "amount_base_units": base, "wallet": wallet_,
            "segregation": "customer", "status": "completed", "created_at": created.isoformat()}


async def _head(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return await feed.head(conn)


async def test_ops_flow_on_anvil_ends_in_the_feed_and_replay_rebuilds_the_state(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    usdc = chain_a.tokens["usdc"]
    usdc.mint(ALICE, 10**12)
    usdc.mint(BOB, 10**12)
    credited = usdc.transfer(ALICE, DEP1, 1_000_000)   # matched by the reconciler (deposit address)
    late = usdc.transfer(BOB, DEP2, 2_500_000)         # its record arrives 2 days late: ops match it by hand
    chain_a.anvil.mine(3)
    settings = _settings(tmp_path, database_url, chain_a)
    await index_once(settings, engine)
    now = datetime.now(UTC)
    app = create_app(settings, engine=engine)
    ops, core = await bearer(engine, "ops", name="olivia"), await bearer(engine, "feed", name="core-recon")
    ingester = await bearer(engine, "ingest", name="core-records")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        posted = await client.post("/v1/records", headers=ingester, json=[
            _rec("dep-1", DEP1, 1_000_000, chain_a, now), _rec("dep-late", DEP2, 2_500_000, chain_a,
                                                               now + timedelta(days=2))])
        assert posted.status_code == 201, posted.text
        await reconcile_once(settings, engine, now=now + timedelta(days=3))

        queue = (await client.get("/v1/transfers/unmatched", headers=ops)).json()["items"]
        assert [q["transfer"]["tx_hash"] for q in queue] == [late]
        assert [c["external_id"] for c in queue[0]["candidates"]] == ["dep-late"]
        made = await client.post("/v1/matches", headers=ops, json={
            "transfer_ids": [queue[0]["transfer"]["id"]], "record_keys": [{"source": "core",
                                                                            "external_id": "dep-late"}],
            "break_id": queue[0]["break_id"]})
        assert made.status_code == 201, made.text
        await reconcile_once(settings, engine, now=now + timedelta(days=3))

        events, head = await read_all(client, core, limit=3)  # small pages: next_after is followed
        assert (await client.get("/v1/feed", params={"after": head}, headers=core)).json() == {
            "events": [], "next_after": head}
        manual = await read_all(client, core, types="match.created,break.resolved")
        wrong = await client.get("/v1/feed", params={"types": "match.made"}, headers=core)
        forbidden = await client.get("/v1/feed", headers=ops)

    by_type: dict[str, list[dict]] = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e)
    indexed = {r["tx_hash"]: r for r in await rows(engine, chain_a.chain_id)}
    ours = {credited, late}
    assert {e["object"]["tx_hash"] for e in by_type.get("transfer.finalized", []) + by_type["transfer.confirmed"]
            if e["object"]["recipient"] in (DEP1, DEP2)} == ours
    deposit = next(e for e in events if e["type"].startswith("transfer.") and e["object"]["tx_hash"] == late)
    assert deposit["object"]["amount"] == "2.5" and deposit["object"]["amount_base_units"] == "2500000"
    assert deposit["object"]["block_hash"] == indexed[late]["block_hash"]
    assert deposit["occurred_at"] is not None and deposit["id"].endswith(f":{deposit['seq']}")
    assert [(e["object"]["external_id"], e["object"]["version"], e["object"]["ingested_by"])
            for e in by_type["record.ingested"]] == [("dep-1", 1, "core-records"), ("dep-late", 1, "core-records")]
    assert sorted((e["object"]["rule"], e["object"]["created_by"]) for e in by_type["match.created"]) == [
        ("deposit_address", "reconciler"), ("manual", "olivia")]
    resolved = [e["object"] for e in by_type["break.resolved"]]
    assert [(b["type"], b["resolution"]["action"], b["resolution"]["by"]) for b in resolved
            if b["resolution"].get("action") == "manual_match"] == [("unmatched_transfer", "manual_match", "olivia")]
    # the manual match comes after the break it resolves was opened, and before that break's resolution
    seq_of = {(e["type"], e["object"].get("id")): e["seq"] for e in events}
    break_id = queue[0]["break_id"]
    assert seq_of[("break.opened", break_id)] < seq_of[("break.resolved", break_id)]
    assert {e["type"] for e in manual[0]} == {"match.created", "break.resolved"}
    assert [e["seq"] for e in manual[0]] == [e["seq"] for e in events if e["type"] in ("match.created",
                                                                                      "break.resolved")]
    assert manual[1] == head
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["field"] == "types"
    assert forbidden.status_code == 403
    assert announced(replay(events)) == await database_state(engine)

    # idempotent: the same pass, the same blocks, the same records add nothing to the feed
    await reconcile_once(settings, engine, now=now + timedelta(days=3))
    await index_once(settings, engine)
    await ingest(settings, engine, [_rec("dep-1", DEP1, 1_000_000, chain_a, now)], actor="core-records")
    assert await _head(engine) == head


async def test_a_reorg_orphans_announced_transfers_in_the_feed(chain_a: Devnet, engine: AsyncEngine,
                                                               database_url: str, tmp_path: Path) -> None:
    usdc = chain_a.tokens["usdc"]
    signer = chain_a.anvil.accounts[3]  # a key anvil holds: the raw transaction is replayed after the reorg
    usdc.mint(signer, 10**12)
    remined = usdc.transfer(signer, DEP1, 777_000)
    chain_a.anvil.mine(2)  # confirmations=1: confirmed, not final
    settings = _settings(tmp_path, database_url, chain_a)
    await index_once(settings, engine)
    before = {r["tx_hash"]: r for r in await rows(engine, chain_a.chain_id)}[remined]
    raw = chain_a.anvil.raw_transaction(remined)
    chain_a.anvil.reorg(3, [(raw, 1)])  # the tx moves one block later
    await index_once(settings, engine)
    after = {r["tx_hash"]: r for r in await rows(engine, chain_a.chain_id)}[remined]
    app = create_app(settings, engine=engine)
    core = await bearer(engine, "feed")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        events, _ = await read_all(client, core)
    mine = [(e["type"], e["object"]["block_hash"]) for e in events
            if e["type"].startswith("transfer.") and e["object"]["tx_hash"] == remined]
    assert before["block_hash"] != after["block_hash"]
    assert mine == [("transfer.confirmed", before["block_hash"]), ("transfer.orphaned", before["block_hash"]),
                    ("transfer.confirmed", after["block_hash"])]
    assert announced(replay(events)) == await database_state(engine)


async def test_concurrent_writers_and_a_polling_reader_see_every_event_once_in_order(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    """Writers commit concurrently, some holding their transaction open after numbering their events (the case
    where a naive sequence lets a later number commit first). A reader polls all along: it must see every event
    exactly once, in order, and end with the whole feed."""
    from app.settings import Settings

    token = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
    settings = Settings(database_url=database_url, data_dir=tmp_path,
                        chains=[{"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
                        tokens=[{"chain": "eth", "address": token, "symbol": "USDC", "decimals": 6}],
                        wallets=[{"address": DEP1, "label": "d", "kind": "deposit", "segregation": "customer"}])
    rng = random.Random(7)
    writers, batches = 6, 8
    done = asyncio.Event()

    async def writer(w: int) -> None:
        for b in range(batches):
            records = [{"source": "core", "external_id": f"w{w}-b{b}-{i}", "kind": "deposit", "chain": "eth",
                        "token": token, "amount_base_units": 1 + i, "wallet": DEP1, "segregation": "customer",
                        "status": "pending", "created_at": "2026-11-27T09:00:00Z"} for i in range(rng.randint(1, 4))]
            if b % 3 == 1:  # hold the transaction open after the events were numbered
                async with feed.transaction(engine) as conn:
                    for i in range(len(records)):
                        feed.stage(conn, "record.ingested", 10_000 * w + 100 * b + i, None)
                    await feed.flush(conn)
                    await asyncio.sleep(rng.uniform(0.01, 0.05))
            else:
                await ingest(settings, engine, records, actor=f"writer-{w}")
            await asyncio.sleep(rng.uniform(0, 0.01))

    seen: list[int] = []

    async def reader() -> None:
        after = 0
        while True:
            finished = done.is_set()
            async with engine.connect() as conn:
                page, after = await feed.page(conn, after=after, limit=rng.randint(1, 7), types=None)
            seen.extend(r.seq for r in page)
            if finished and not page:
                return
            await asyncio.sleep(0.002)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(writers)))
    done.set()
    await reading
    async with engine.connect() as conn:
        everything = [s for (s,) in await conn.execute(select(FeedEvent.__table__.c.seq).order_by("seq"))]
    assert seen == everything == list(range(1, len(everything) + 1))  # once each, in order, no gaps
    assert len(everything) > writers * batches


async def test_a_rolled_back_writer_leaves_nothing_and_unflushed_events_are_refused(engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError):
        async with feed.transaction(engine) as conn:
            feed.stage(conn, "record.ingested", 1, None)
            await feed.flush(conn)
            raise RuntimeError("the writer fails after numbering its events")
    with pytest.raises(feed.FeedError):
        async with engine.begin() as conn:
            feed.stage(conn, "record.ingested", 2, None)
    async with feed.transaction(engine) as conn:
        feed.stage(conn, "record.ingested", 3, None)
    async with engine.connect() as conn:
        events = [(r.seq, r.entity_id) for r in await conn.execute(select(FeedEvent.__table__))]
        assert await feed.head(conn) == 1
        assert await conn.scalar(select(func.count()).select_from(FeedEvent.__table__)) == 1
    assert events == [(1, 3)]  # the failed writers' numbers were never handed out


async def test_a_bulk_batch_is_announced_once_per_transfer(chain_a: Devnet, engine: AsyncEngine,
                                                           database_url: str, tmp_path: Path) -> None:
    """A batch large enough for the bulk insert path (PostgreSQL: COPY into a staging table), finalized at once:
    one `transfer.finalized` per transfer, none for the transfers of other wallets, and nothing when indexed
    again."""
    usdc = chain_a.tokens["usdc"]
    usdc.mint(ALICE, 10**12)
    payees = [DEP1 if i % 2 == 0 else address_for(f"feed-stranger-{i}") for i in range(80)]
    batch = chain_a.batch.batch_transfer(usdc, ALICE, payees, [1_000 + i for i in range(80)])
    chain_a.anvil.mine(40)  # past finality (30)
    settings = _settings(tmp_path, database_url, chain_a)
    await index_once(settings, engine)
    app = create_app(settings, engine=engine)
    core = await bearer(engine, "feed")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        events, head = await read_all(client, core)
    ours = [e for e in events if e["type"].startswith("transfer.") and e["object"]["tx_hash"] == batch]
    assert {e["type"] for e in ours} == {"transfer.finalized"}
    assert sorted(int(e["object"]["amount_base_units"]) for e in ours) == [1_000 + i for i in range(0, 80, 2)]
    assert len({e["object"]["id"] for e in ours}) == 40
    await index_once(settings, engine)
    assert await _head(engine) == head
