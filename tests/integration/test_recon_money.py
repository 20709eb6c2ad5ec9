"""Money in the reconciler, on SQLite and PostgreSQL: tolerances and dust of an 18-decimal token at 10**16 and
near 2**256-1 (every bound amount is NUMERIC(78,0)), and the noise rules applying only to inbound transfers from
outside (an outbound payment to a look-alike of a known counterparty is a high-severity break)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import recon_repo, records_repo
from app.persistence.tables import Record, Transfer
from app.reconciler import reconcile_once
from app.settings import Settings
from app.settlement.amounts import MAX_UINT256, format_units
from tests.support.harness import address_for

DAI = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
BIG = "0x1111111111111111111111111111111111111111"  # an 18-decimal token with uint256-sized amounts
USDT = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
DEPOSIT = address_for("money-dep")
HOT = address_for("money-hot")
PAYER = address_for("money-payer")
START = datetime(2026, 11, 20, tzinfo=UTC)
NOW = START + timedelta(hours=3)
BIG_TOLERANCE = MAX_UINT256 // 2
BIG_DUST = MAX_UINT256 - 10


def _settings(url: str, tmp_path: Path, *, bulk: bool = True) -> Settings:
    return Settings(database_url=url, data_dir=tmp_path, chains=[
        {"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
        tokens=[{"chain": "eth", "address": DAI, "symbol": "DAI", "decimals": 18},
                {"chain": "eth", "address": BIG, "symbol": "BIG", "decimals": 18},
                {"chain": "eth", "address": USDT, "symbol": "USDT", "decimals": 6}],
        wallets=[{"address": DEPOSIT, "label": "dep", "kind": "deposit", "segregation": "customer"},  # type: ignore[list-item]
                 {"address": HOT, "label": "hot", "kind": "hot", "segregation": "house"}],
        recon={"tolerance": {"DAI": "0.01", "BIG": format_units(BIG_TOLERANCE, 18)},  # type: ignore[arg-type]
               "dust": {"DAI": "0.005", "BIG": format_units(BIG_DUST, 18), "USDT": "0.5"},
               "bulk_matching": bulk})


def transfer(i: int, token: str, amount: int, *, sender: str = PAYER, recipient: str = DEPOSIT,
             minutes: int = 0) -> dict:
    when = START + timedelta(minutes=minutes)
    return {"id": i, "chain_id": 1, "token": token, "sender": sender, "recipient": recipient, "amount": amount,
            "tx_hash": f"0x{i:064x}", "log_index": 0, "block_number": i, "block_hash": f"0x{i:064x}",
            "block_time": when, "state": "finalized", "seen_at": when, "confirmed_at": when, "finalized_at": when}


def record(external_id: str, token: str, amount: int, *, kind: str = "deposit", wallet: str = DEPOSIT,
           counterparty: str | None = None, tx_hash: str | None = None, minutes: int = 0) -> dict:
    when = START + timedelta(minutes=minutes)
    return {"source": "core", "external_id": external_id, "version": 1, "kind": kind, "chain_id": 1,
            "token": token, "amount": amount, "wallet": wallet, "counterparty": counterparty, "tx_hash": tx_hash,
            "log_index": None, "reference": None, "segregation": "customer", "status": "completed",
            "created_at": when, "expected_by": when + timedelta(hours=1), "ingested_at": when}


async def load(engine: AsyncEngine, transfers: list[dict], records: list[dict], *, mark: bool = False) -> None:
    async with engine.begin() as conn:
        if transfers:
            await conn.execute(Transfer.__table__.insert(), transfers)
        if records:
            await conn.execute(Record.__table__.insert(), records)
        await records_repo.add_counterparties(conn, [r["counterparty"] for r in records if r["counterparty"]])
        if mark:
            await recon_repo.mark_items(conn, transfer_ids=[t["id"] for t in transfers],
                                        record_keys=[(r["source"], r["external_id"]) for r in records])


async def state(engine: AsyncEngine) -> tuple[set, set, set, int]:
    async with engine.connect() as conn:
        matches = {(m["rule"], tuple(m["transfer_ids"]), tuple(tuple(k) for k in m["record_keys"]))
                   for m in await recon_repo.active_matches(conn)}
        breaks = {(b["type"], b["severity"], tuple(json.loads(b["transfer_ids"])),
                   tuple(tuple(k) for k in json.loads(b["record_keys"]))) for b in await recon_repo.open_breaks(conn)}
        classified = {(int(i), r) for i, r in await conn.execute(text(
            "SELECT transfer_id, reason FROM transfer_classifications WHERE revoked_at IS NULL"))}
        queued = int(await conn.scalar(text("SELECT count(*) FROM recon_dirty")) or 0)
    return matches, breaks, classified, queued


def _amount_cases() -> tuple[list[dict], list[dict]]:
    e16 = 10**16
    transfers = [transfer(1, DAI, 100 * 10**18 + e16),  # within DAI's tolerance of 0.01 of record d1
                 transfer(2, DAI, 200 * 10**18 + e16 + 1, minutes=1),  # one base unit beyond it (record d2)
                 transfer(3, DAI, 4 * 10**15, minutes=2),  # below DAI's dust of 0.005, no record: dust
                 transfer(4, DAI, e16, minutes=3),  # above the dust, no record: a break
                 transfer(5, BIG, MAX_UINT256, minutes=4),  # record b1 is BIG_TOLERANCE below: within it
                 transfer(6, BIG, MAX_UINT256 - 11, recipient=HOT, minutes=5)]  # below BIG's dust: dust
    records = [record("d1", DAI, 100 * 10**18), record("d2", DAI, 200 * 10**18, minutes=1),
               record("b1", BIG, MAX_UINT256 - BIG_TOLERANCE, minutes=4)]
    return transfers, records


AMOUNT_OUTCOME = (
    {("deposit_address", (1,), (("core", "d1"),)), ("deposit_address", (5,), (("core", "b1"),))},
    {("unmatched_transfer", "low", (2,), ()), ("unmatched_transfer", "low", (4,), ()),
     ("missing_transfer", "low", (), (("core", "d2"),))},
    {(3, "dust"), (6, "dust")})


async def test_tolerance_and_dust_of_an_18_decimal_token_at_10_16_and_near_2_256_in_a_full_pass(
        database_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    """The migration queued a full pass: it runs (on PostgreSQL the tolerance is bound as NUMERIC, not integer),
    matches within the tolerance and not one base unit beyond, and is consumed."""
    transfers, records = _amount_cases()
    await load(engine, transfers, records)
    summary = await reconcile_once(_settings(database_url, tmp_path), engine, now=NOW)
    assert summary.full
    matches, breaks, classified, queued = await state(engine)
    assert (matches, breaks, classified) == AMOUNT_OUTCOME
    assert queued == 0
    again = await reconcile_once(_settings(database_url, tmp_path), engine, now=NOW, full=True)
    assert (again.matched, again.opened, again.closed) == (0, [], 0)


async def test_the_same_amounts_decided_incrementally_and_by_the_core_alone_agree(
        database_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    await reconcile_once(_settings(database_url, tmp_path), engine, now=NOW)  # the queued full pass, on nothing
    transfers, records = _amount_cases()
    await load(engine, transfers, records, mark=True)
    summary = await reconcile_once(_settings(database_url, tmp_path, bulk=False), engine, now=NOW)
    assert not summary.full
    assert (await state(engine))[:3] == AMOUNT_OUTCOME


KNOWN = address_for("money-known-payee")
POISONER = KNOWN[:6] + "f" * 30 + KNOWN[-4:]
OUTSIDER = address_for("money-outsider")


def _noise_cases() -> tuple[list[dict], list[dict]]:
    usdt = 10**6
    transfers = [transfer(1, USDT, 100 * usdt, sender=HOT, recipient=KNOWN),  # paid as recorded
                 transfer(2, USDT, 50_000 * usdt, sender=HOT, recipient=POISONER, minutes=1),  # a poisoning loss
                 transfer(3, USDT, 0, sender=POISONER, recipient=DEPOSIT, minutes=2),  # the poisoner's bait
                 transfer(4, USDT, usdt // 10, sender=HOT, recipient=OUTSIDER, minutes=3),  # 0.1 USDT paid, no record
                 transfer(5, USDT, usdt // 10, sender=OUTSIDER, recipient=DEPOSIT, minutes=4),  # 0.1 USDT received
                 transfer(6, DAI, 4 * 10**15, sender=HOT, recipient=OUTSIDER, minutes=5)]  # DAI dust paid
    records = [record("w1", USDT, 100 * usdt, kind="withdrawal", wallet=HOT, counterparty=KNOWN,
                      tx_hash=f"0x{1:064x}")]
    return transfers, records


async def _play_noise(database_url: str, engine: AsyncEngine, tmp_path: Path, mode: str) -> None:
    settings = _settings(database_url, tmp_path, bulk=mode == "full")
    transfers, records = _noise_cases()
    if mode == "incremental":
        await reconcile_once(settings, engine, now=NOW)  # the migration's queued full pass, on nothing
    await load(engine, transfers, records, mark=mode == "incremental")
    summary = await reconcile_once(settings, engine, now=NOW, full=mode != "incremental")
    assert summary.full == (mode != "incremental")


async def test_noise_is_only_inbound_from_outside_and_an_outbound_lookalike_is_a_high_break(
        database_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    for mode in ("full", "incremental", "core"):
        async with engine.begin() as conn:
            for table in ("match_links", "matches", "break_links", "break_events", "breaks",
                          "transfer_classifications", "feed_events", "records", "transfers", "recon_dirty"):
                await conn.execute(text(f"DELETE FROM {table}"))
        await _play_noise(database_url, engine, tmp_path, mode)
        matches, breaks, classified, _ = await state(engine)
        assert matches == {("tx_hash", (1,), (("core", "w1"),))}, mode
        assert breaks == {("outbound_lookalike", "high", (2,), ()), ("unmatched_transfer", "low", (4,), ()),
                          ("unmatched_transfer", "low", (6,), ())}, mode
        assert classified == {(3, "zero_value"), (3, "poisoning_suspect"), (5, "dust")}, mode


async def test_machine_classifications_are_in_the_audit_chain(database_url: str, engine: AsyncEngine,
                                                              tmp_path: Path) -> None:
    from app.persistence import audit

    await _play_noise(database_url, engine, tmp_path, "full")
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT actor, entity, after FROM audit_log WHERE action = "
                                        "'transfer.classified' ORDER BY id"))).all()
        assert (await audit.verify(conn))[1] is None
    assert {(actor, entity, json.loads(after)["reason"]) for actor, entity, after in rows} == {
        ("reconciler", "transfer:3", "zero_value"), ("reconciler", "transfer:3", "poisoning_suspect"),
        ("reconciler", "transfer:5", "dust")}
    await reconcile_once(_settings(database_url, tmp_path), engine, now=NOW, full=True)
    async with engine.connect() as conn:  # idempotent: no second entry for the same classification
        assert await conn.scalar(text("SELECT count(*) FROM audit_log WHERE action = 'transfer.classified'")) == 3


async def test_a_payment_the_old_rules_classified_noise_is_decided_again_by_the_next_full_pass(
        database_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    """Rule version 1 classified an outbound look-alike payment `poisoning_suspect` and an outbound 0.1 USDT
    `dust`: the full pass the migration queues withdraws those (audited) and breaks; inbound noise stays."""
    settings = _settings(database_url, tmp_path)
    await reconcile_once(settings, engine, now=NOW)
    transfers, records = _noise_cases()
    await load(engine, transfers, records)
    async with engine.begin() as conn:
        await recon_repo.classify_many(conn, [(2, "poisoning_suspect"), (4, "dust"), (5, "dust")],
                                       actor="reconciler", at=NOW - timedelta(hours=1))
    await reconcile_once(settings, engine, now=NOW, full=True)
    _, breaks, classified, _ = await state(engine)
    assert {("outbound_lookalike", "high", (2,), ()), ("unmatched_transfer", "low", (4,), ())} <= breaks
    assert (2, "poisoning_suspect") not in classified and (4, "dust") not in classified
    assert {(3, "zero_value"), (3, "poisoning_suspect"), (5, "dust")} <= classified
    async with engine.connect() as conn:
        withdrawn = {(entity, json.loads(before)["reason"]) for entity, before in await conn.execute(text(
            "SELECT entity, before FROM audit_log WHERE action = 'transfer.unclassified'"))}
        kept = {(int(i), r, by) for i, r, by in await conn.execute(text(
            "SELECT transfer_id, reason, revoked_by FROM transfer_classifications WHERE revoked_at IS NOT NULL"))}
    assert withdrawn == {("transfer:2", "poisoning_suspect"), ("transfer:4", "dust")}
    assert kept == {(2, "poisoning_suspect", "reconciler"), (4, "dust", "reconciler")}  # revoked, never deleted
