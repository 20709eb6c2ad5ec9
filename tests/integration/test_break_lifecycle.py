"""Breaks over their life: reopening a resolved break undoes its resolution (classification revoked, manual
match removed) and no later pass resolves it again; an item is in at most one open break (a deposit matched and
then reorged away on anvil is one `reorged_after_match` break, not that and a `missing_transfer` too), which the
schema enforces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app import resolutions
from app.persistence import audit, feed, transfers_repo
from app.persistence import recon_repo as repo
from app.persistence.tables import Record, Transfer
from app.reconciler import reconcile_once
from app.records import ingest
from app.settings import Settings
from tests.support.harness import Devnet, address_for, index_once, make_settings, wallet
from tests.support.recon_rows import WHEN, ReconRows

DEP = address_for("life-dep")
CUSTOMER = address_for("life-customer")
LATER = WHEN + timedelta(days=4)
R = resolutions.ReasonCode


ROWS = ReconRows(DEP, CUSTOMER)
_settings, _transfer, _record = ROWS.settings, ROWS.transfer, ROWS.record


async def _break(engine: AsyncEngine, break_id: int) -> dict:
    async with engine.connect() as conn:
        row = await repo.get_break(conn, break_id)
    assert row is not None
    return row


async def _resolve(engine: AsyncEngine, settings: Settings, break_id: int, how: str) -> None:
    if how == "spam":
        await resolutions.classify(engine, break_id, reason=R.SPAM, note="poisoning dust", actor="ann")
    elif how == "write_off":
        await resolutions.classify(engine, break_id, reason=R.WRITE_OFF, note="lost", actor="ann")
        await resolutions.approve(engine, break_id, actor="bo")
    else:  # the record arrived two days late, outside the window: matched by hand
        await resolutions.manual_match(settings, engine, transfer_ids=[1], record_keys=[("core", "late")],
                                       actor="ann", break_id=break_id)


@pytest.mark.parametrize("how", ["spam", "write_off", "manual_match"])
async def test_a_reopened_break_stays_open_through_every_later_pass(how: str, engine: AsyncEngine,
                                                                     database_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url)
    async with engine.begin() as conn:
        await conn.execute(Transfer.__table__.insert(), [_transfer(1, 5_000_000)])
        await conn.execute(Record.__table__.insert(), [_record("late", 5_000_000, WHEN + timedelta(days=2))])
    await reconcile_once(settings, engine, now=LATER)
    async with engine.connect() as conn:
        (b,) = [b for b in await repo.open_breaks(conn) if b["type"] == "unmatched_transfer"]
    await _resolve(engine, settings, b["id"], how)
    assert (await _break(engine, b["id"]))["status"] == "resolved"
    await reconcile_once(settings, engine, now=LATER)

    await resolutions.reopen(engine, b["id"], reason="the customer disputes it", actor="ann")
    for full in (False, True, False):
        await reconcile_once(settings, engine, now=LATER, full=full)
        assert (await _break(engine, b["id"]))["status"] == "open", f"after a {'full' if full else 'incr.'} pass"
    async with engine.connect() as conn:
        assert (await transfers_repo.recon_statuses(conn, [1]))[1] == "unmatched"  # nothing explains it now
        assert await repo.active_matches(conn) == []  # a manual match the reopen removed is not made again
        history = [(e["action"], e["actor"]) for e in await repo.break_events(conn, b["id"])]
        assert history[-1] == ("reopened", "ann") and ("auto_resolved", "reconciler") not in history
        assert (await audit.verify(conn))[1] is None

    # resolved again by a person, it is theirs again: a later pass leaves it resolved
    await resolutions.classify(engine, b["id"], reason=R.SPAM, note="reviewed: dust after all", actor="ann")
    await reconcile_once(settings, engine, now=LATER, full=True)
    assert (await _break(engine, b["id"]))["status"] == "resolved"
    async with engine.connect() as conn:
        assert (await transfers_repo.recon_statuses(conn, [1]))[1] == "explained"


async def test_an_item_is_in_at_most_one_open_break_in_the_schema(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    for items in ({"transfer_ids": [1], "record_keys": []}, {"transfer_ids": [], "record_keys": [("core", "x")]}):
        async with feed.transaction(engine) as conn:
            await repo.open_breaks_many(conn, [{"type": "ambiguous", "fingerprint": "one", "facts": {}, **items}],
                                        actor="test", at=now)
        with pytest.raises(IntegrityError):
            async with feed.transaction(engine) as conn:
                await repo.open_breaks_many(conn, [{"type": "ambiguous", "fingerprint": "two", "facts": {},
                                                    **items}], actor="test", at=now)
    async with feed.transaction(engine) as conn:  # once the first is resolved, the item may be in a new one
        for b in await repo.open_breaks(conn):
            await repo.set_break_status(conn, b["id"], "resolved", at=now, resolution={"by": "test"})
        await repo.open_breaks_many(conn, [{"type": "ambiguous", "fingerprint": "three", "facts": {},
                                            "transfer_ids": [1], "record_keys": []}], actor="test", at=now)


async def test_reopening_a_break_whose_item_is_in_another_open_break_is_a_conflict(
        engine: AsyncEngine, database_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, database_url)
    async with engine.begin() as conn:
        await conn.execute(Record.__table__.insert(), [_record("dep", 5_000_000, WHEN)])
    await reconcile_once(settings, engine, now=LATER)  # nothing arrived: missing_transfer
    async with engine.begin() as conn:  # then it did, and the next pass explains the break
        await conn.execute(Transfer.__table__.insert(), [_transfer(1, 5_000_000)])
        await repo.mark_items(conn, transfer_ids=[1])
    await reconcile_once(settings, engine, now=LATER)
    async with engine.connect() as conn:
        (first,) = await repo.all_breaks(conn)
        (match,) = await repo.active_matches(conn)
    assert first["status"] == "resolved"
    await resolutions.unmatch(engine, match["id"], reason="another customer's deposit", actor="ann")
    await reconcile_once(settings, engine, now=LATER)  # the record is missing again: a new break
    async with engine.connect() as conn:
        (second,) = [b for b in await repo.open_breaks(conn) if b["type"] == "missing_transfer"]
    assert second["id"] != first["id"] and second["record_keys"] == first["record_keys"]
    with pytest.raises(resolutions.Conflict):
        await resolutions.reopen(engine, first["id"], reason="look again", actor="ann")
    assert (await _break(engine, first["id"]))["status"] == "resolved"


# ---- on anvil: a matched deposit reorged away -------------------------------------------------------------------
DEP_A, ALICE = address_for("life-a-dep"), address_for("life-a-alice")


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
@pytest.mark.parametrize("with_tx_hash", [False, True], ids=["by-address", "by-tx-hash"])
async def test_a_matched_deposit_reorged_away_is_one_break(full: bool, with_tx_hash: bool, chain_a: Devnet,
                                                           engine: AsyncEngine, database_url: str,
                                                           tmp_path: Path) -> None:
    usdc = chain_a.tokens["usdc"]
    usdc.mint(ALICE, 10**12)
    chain_a.anvil.mine(3)
    tx = usdc.transfer(ALICE, DEP_A, 1_250_000)
    chain_a.anvil.mine(1)
    settings = make_settings(tmp_path, database_url, [chain_a.chain_config("a", confirmations=1, finality=30)],
                             chain_a.token_configs("a"), [wallet(DEP_A, "d")])
    await index_once(settings, engine)
    await ingest(settings, engine, [{
        "source": "core", "external_id": "dep-reorged", "kind": "deposit", "chain": "a", "token": usdc.address,
        "amount_base_units": 1_250_000, "wallet": DEP_A, "segregation": "customer", "status": "completed",
        "created_at": datetime.now(UTC).isoformat(), **({"tx_hash": tx} if with_tx_hash else {})}],
        actor="core-feed")
    later = datetime.now(UTC) + timedelta(hours=30)  # past every grace period
    await reconcile_once(settings, engine, now=later, full=full)
    async with engine.connect() as conn:
        assert len(await repo.active_matches(conn)) == 1

    chain_a.anvil.reorg(3, [])  # the deposit's block is replaced by an empty one: it never happened
    await index_once(settings, engine)
    for _ in range(2):  # and a second pass changes nothing
        await reconcile_once(settings, engine, now=later, full=full)
        async with engine.connect() as conn:
            assert await repo.active_matches(conn) == []
            unresolved = [(b["type"], b["record_keys"]) for b in await repo.all_breaks(conn)
                          if b["status"] != "resolved"]
        assert unresolved == [("reorged_after_match", '[["core","dep-reorged"]]')]
    await reconcile_once(settings, engine, now=later, full=not full)  # the other kind of pass agrees
    async with engine.connect() as conn:
        assert [b["type"] for b in await repo.open_breaks(conn)] == ["reorged_after_match"]
