"""The reconciler end to end on anvil: records + indexed transfers -> matches, breaks, classifications; a reorg
after a match and the re-mined transaction re-matched; a second pass changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import audit
from app.persistence import recon_repo as repo
from app.persistence.tables import BreakEvent
from app.reconciler import reconcile_once
from app.records import ingest
from tests.support.harness import Devnet, address_for, index_once, make_settings, rows, wallet
from wallets import to_checksum

DEP1, DEP2, DEP3 = address_for("rec-dep-1"), address_for("rec-dep-2"), address_for("rec-dep-3")
HOT = address_for("rec-hot")
ALICE, BOB, CAROL = address_for("rec-alice"), address_for("rec-bob"), address_for("rec-carol")
LATER = timedelta(hours=30)  # past every grace period


def _settings(tmp_path: Path, url: str, chain: Devnet):
    return make_settings(tmp_path, url, [chain.chain_config("a", confirmations=1, finality=30)],
                         chain.token_configs("a"),
                         [wallet(DEP1, "d1"), wallet(DEP2, "d2"), wallet(DEP3, "d3"), wallet(HOT, "hot", "hot",
                                                                                             "house")])


def rec(ext: str, kind: str, wallet_: str, base: int, chain: Devnet, **extra: object) -> dict:
    return {"source": "core", "external_id": ext, "kind": kind, "chain": "a",
            "token": chain.tokens["usdc"].address, "amount_base_units": base, "wallet": wallet_,
            "segregation": "customer", "status": "completed",
            "created_at": datetime.now(UTC).isoformat(), **extra}


async def _state(engine: AsyncEngine) -> tuple[set, set, set]:
    async with engine.connect() as conn:
        matches = {(m["rule"], k[1]) for m in await repo.active_matches(conn) for k in m["record_keys"]}
        breaks = {(b["type"], b["status"], b["record_keys"]) for b in await repo.all_breaks(conn)}
        classified = set((await conn.execute(select(repo.TC.c.transfer_id, repo.TC.c.reason))).all())
    return matches, breaks, classified


async def test_the_daily_mix_ends_in_the_right_matches_and_breaks(chain_a: Devnet, engine: AsyncEngine,
                                                                  database_url: str, tmp_path: Path) -> None:
    usdc = chain_a.tokens["usdc"]
    signer = chain_a.anvil.accounts[3]
    for who in (ALICE, BOB, CAROL, signer):
        usdc.mint(who, 10**12)
    usdc.mint(HOT, 10**12)
    usdc.transfer(ALICE, DEP1, 1_000_000)                       # a credited deposit
    w_tx = usdc.transfer(HOT, BOB, 2_000_000)                  # a withdrawal with its tx hash
    usdc.transfer(CAROL, DEP3, 3_333_333)                      # an unknown deposit
    usdc.transfer(ALICE, DEP2, 400_000)                        # a split deposit: 400k + 600k = 1M
    usdc.transfer(ALICE, DEP2, 600_000)
    batch = chain_a.batch.batch_transfer(usdc, HOT, [BOB, CAROL], [700_000, 300_000])  # two withdrawals, one tx
    usdc.transfer(BOB, DEP3, 5_000_000)                        # two identical deposits, one record: ambiguous
    usdc.transfer(CAROL, DEP3, 5_000_000)
    usdc.transfer(DEP1, HOT, 900_000)                          # a sweep between our wallets
    poisoner = to_checksum((BOB[:6] + "0" * 32 + BOB[-4:]).lower())  # looks like BOB: same first and last 4
    usdc.transfer(poisoner, HOT, 0)                            # a zero-value address-poisoning transfer
    remined = usdc.transfer(signer, DEP1, 777_000)             # matched, then reorged, then re-mined
    chain_a.anvil.mine(2)
    settings = _settings(tmp_path, database_url, chain_a)
    await index_once(settings, engine)
    await ingest(settings, engine, [
        rec("dep-1", "deposit", DEP1, 1_000_000, chain_a),
        rec("wd-1", "withdrawal", HOT, 2_000_000, chain_a, counterparty=BOB, tx_hash=w_tx),
        rec("wd-never", "withdrawal", HOT, 123, chain_a, counterparty=BOB),
        rec("dep-split", "deposit", DEP2, 1_000_000, chain_a),
        rec("wd-b1", "withdrawal", HOT, 700_000, chain_a, counterparty=BOB, tx_hash=batch),
        rec("wd-b2", "withdrawal", HOT, 300_000, chain_a, counterparty=CAROL, tx_hash=batch),
        rec("dep-twin", "deposit", DEP3, 5_000_000, chain_a),
        rec("dep-remined", "deposit", DEP1, 777_000, chain_a, tx_hash=remined),
    ], actor="core-feed")
    later = datetime.now(UTC) + LATER
    await reconcile_once(settings, engine, now=later)
    matches, breaks, classified = await _state(engine)
    assert matches == {("deposit_address", "dep-1"), ("tx_hash", "wd-1"), ("split", "dep-split"),
                       ("tx_hash", "wd-b1"), ("tx_hash", "wd-b2"), ("tx_hash", "dep-remined")}
    open_types = sorted(t for t, s, _ in breaks if s == "open")
    assert open_types == ["ambiguous", "missing_transfer", "unmatched_transfer"]
    graded = {b["type"]: b for b in await _all(engine) if b["status"] == "open"}
    assert graded["ambiguous"]["amount"] == 10_000_000 and graded["ambiguous"]["severity"] == "high"  # 30 h old
    assert graded["unmatched_transfer"]["amount"] == 3_333_333
    assert graded["unmatched_transfer"]["severity"] == "high"  # small, but unexplained for 30 hours: SLA 8 h
    assert graded["unmatched_transfer"]["due_at"] == graded["unmatched_transfer"]["opened_at"] + timedelta(hours=8)
    by_id = {r["tx_hash"]: r["id"] for r in await rows(engine, chain_a.chain_id)}
    reasons = {reason for _, reason in classified}
    assert {"internal", "zero_value", "poisoning_suspect"} <= reasons

    snapshot = await _state(engine)
    await reconcile_once(settings, engine, now=later)  # a second pass changes nothing
    assert await _state(engine) == snapshot
    from app.rebuild import rebuild_differences

    assert (await rebuild_differences(settings, engine, now=later)).count == 0  # from scratch: the same

    raw = chain_a.anvil.raw_transaction(remined)       # reorg after the match, then the same tx re-mined
    chain_a.anvil.reorg(3, [(raw, 1)])  # the tx was 3rd from the head; now one block later
    await index_once(settings, engine)
    await reconcile_once(settings, engine, now=later)
    matches2, breaks2, _ = await _state(engine)
    assert ("tx_hash", "dep-remined") in matches2 and matches2 == matches
    reorg_breaks = [b for b in await _all(engine) if b["type"] == "reorged_after_match"]
    assert len(reorg_breaks) == 1 and reorg_breaks[0]["status"] == "resolved"
    async with engine.connect() as conn:
        history = [e["action"] for e in await repo.break_events(conn, reorg_breaks[0]["id"])]
        assert history == ["opened", "auto_resolved"]
        assert (await audit.verify(conn))[1] is None
        events = await conn.scalar(select(func.count()).select_from(BreakEvent.__table__))
    assert events and by_id[remined]


async def _all(engine: AsyncEngine) -> list[dict]:
    async with engine.connect() as conn:
        return await repo.all_breaks(conn)


async def test_write_off_needs_a_second_person_and_an_unmatch_is_not_redone(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    import pytest

    from app import resolutions

    usdc = chain_a.tokens["usdc"]
    usdc.mint(ALICE, 10**12)
    usdc.transfer(ALICE, DEP1, 1_000_000)
    usdc.transfer(ALICE, DEP2, 2_500_000)  # nobody told us about this one
    chain_a.anvil.mine(2)
    settings = _settings(tmp_path, database_url, chain_a)
    await index_once(settings, engine)
    await ingest(settings, engine, [rec("dep-1", "deposit", DEP1, 1_000_000, chain_a)], actor="core-feed")
    later = datetime.now(UTC) + LATER
    await reconcile_once(settings, engine, now=later)
    breaks = await _all(engine)
    unknown = next(b for b in breaks if b["type"] == "unmatched_transfer")

    await resolutions.classify(engine, unknown["id"], reason=resolutions.ReasonCode.WRITE_OFF,
                               note="customer sent to a retired address; refunded off-chain", actor="ops-ann")
    with pytest.raises(resolutions.FourEyes):
        await resolutions.approve(engine, unknown["id"], actor="ops-ann")
    assert (await _break(engine, unknown["id"]))["status"] == "awaiting_approval"
    await resolutions.approve(engine, unknown["id"], actor="controller-bo")
    assert (await _break(engine, unknown["id"]))["status"] == "resolved"
    await reconcile_once(settings, engine, now=later)  # the machine does not reopen a person's resolution
    assert (await _break(engine, unknown["id"]))["status"] == "resolved"
    await resolutions.reopen(engine, unknown["id"], reason="refund bounced", actor="ops-ann")
    async with engine.connect() as conn:
        history = [(e["action"], e["actor"]) for e in await repo.break_events(conn, unknown["id"])]
        match = (await repo.active_matches(conn))[0]
    assert history == [("opened", "reconciler"), ("classified", "ops-ann"), ("approved", "controller-bo"),
                       ("reopened", "ops-ann")]

    await resolutions.unmatch(engine, match["id"], reason="wrong customer", actor="ops-ann")
    await reconcile_once(settings, engine, now=later)
    async with engine.connect() as conn:
        assert await repo.active_matches(conn) == []  # not silently re-matched
        assert (await audit.verify(conn))[1] is None


async def _break(engine: AsyncEngine, break_id: int) -> dict:
    async with engine.connect() as conn:
        row = await repo.get_break(conn, break_id)
    assert row is not None
    return row
