"""The three ways of reconciling agree, on SQLite and PostgreSQL: a full pass with the set-based SQL pairing, a
full pass by the pure core alone, and an incremental pass over what changed. Randomised data from small pools
(few wallets, amounts and tx hashes, a tolerance on one token) so that candidates collide: ambiguity, duplicate
claims, splits, batches, mismatches, window edges, pending and cancelled items, amounts between 0 and the dust
threshold in and out, look-alikes of a known counterparty and of our hot wallet sending and being paid, and a
tolerance of several base units; then a delta with new blocks, new records, a reorg and a person's unmatch."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text, update

from app.persistence import recon_repo, records_repo
from app.persistence.db import make_engine, sync_url
from app.persistence.migrate import upgrade
from app.persistence.tables import Record, Transfer
from app.reconciler import reconcile_once
from app.resolutions import unmatch
from app.settings import Settings
from tests.support.harness import address_for

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
USDT = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
DEPOSITS = [address_for(f"eq-dep-{i}") for i in range(12)]
HOT = address_for("eq-hot")
PAYOUT = address_for("eq-payout")  # a second hot wallet, only in the fixed cases
KNOWN = address_for("eq-known")  # a counterparty records name
LOOKALIKES = [KNOWN[:6] + "e" * 30 + KNOWN[-4:], HOT[:6] + "d" * 30 + HOT[-4:]]
EXTERNAL = [address_for(f"eq-ext-{i}") for i in range(4)] + [KNOWN, *LOOKALIKES]
START = datetime(2026, 11, 20, tzinfo=UTC)
NOW = START + timedelta(days=3)
AMOUNTS = [1_000_000, 1_000_003, 1_000_006, 2_000_000, 3_000_000, 5_000_000, 100_000, 499_999, 1, 0]
TOLERANCE = 5  # USDC base units: wider than 1, so ±3 is inside it and ±6 outside


def _settings(url: str, tmp_path: Path, *, bulk: bool = True) -> Settings:
    wallets = [{"address": a, "label": f"d{i}", "kind": "deposit", "segregation": "customer"}
               for i, a in enumerate(DEPOSITS)]
    wallets.append({"address": HOT, "label": "hot", "kind": "hot", "segregation": "house"})
    wallets.append({"address": PAYOUT, "label": "payout", "kind": "hot", "segregation": "house"})
    return Settings(database_url=url, data_dir=tmp_path, chains=[
        {"name": "eth", "chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}],
        tokens=[{"chain": "eth", "address": USDC, "symbol": "USDC", "decimals": 6},
                {"chain": "eth", "address": USDT, "symbol": "USDT", "decimals": 6}],
        wallets=wallets,  # type: ignore[arg-type]
        recon={"tolerance": {"USDC": f"0.{TOLERANCE:06}"}, "dust": {"USDT": "0.5", "USDC": "0.5"},
               "bulk_matching": bulk})  # type: ignore[arg-type]


def _transfers(rng: random.Random, first_id: int, count: int, first_block: int) -> list[dict]:
    out = []
    txs = [f"0x{rng.randrange(16**8):064x}" for _ in range(max(2, count // 2))]
    for i in range(first_id, first_id + count):
        ours = rng.choice(DEPOSITS + [HOT])
        other = rng.choice(EXTERNAL + DEPOSITS + [HOT])
        inbound = rng.random() < 0.65
        block = first_block + (i - first_id) // 3
        when = START + timedelta(minutes=40 * block)
        state = rng.choices(["finalized", "confirmed", "seen"], [8, 2, 1])[0]
        out.append({"id": i, "chain_id": 1, "token": rng.choice([USDC, USDC, USDT]),
                    "sender": other if inbound else ours, "recipient": ours if inbound else other,
                    "amount": rng.choice(AMOUNTS), "tx_hash": rng.choice(txs), "log_index": i,
                    "block_number": block, "block_hash": f"0x{block:064x}", "block_time": when, "state": state,
                    "seen_at": when, "confirmed_at": when, "finalized_at": when})
    return out


def _small_and_lookalike(block: int) -> list[dict]:
    """Fixed delta transfers the random ones may miss: 0.1 USDT paid out (from a wallet no look-alike imitates)
    and received with no record (a break on every pass, and dust), payments to look-alikes of a known
    counterparty and of our hot wallet (breaks), and the look-alikes' bait (noise)."""
    when = START + timedelta(minutes=40 * block)
    cases = [(PAYOUT, UNKNOWN, USDT, 100_000), (UNKNOWN, DEPOSITS[0], USDT, 100_000),
             (HOT, LOOKALIKES[0], USDC, 5_000_000), (DEPOSITS[2], LOOKALIKES[1], USDT, 1),
             (LOOKALIKES[0], DEPOSITS[3], USDC, 0), (LOOKALIKES[1], HOT, USDT, 2_000_000)]
    return [{"id": SMALL_IDS + i, "chain_id": 1, "token": token, "sender": sender, "recipient": recipient,
             "amount": amount, "tx_hash": f"0x{SMALL_IDS + i:064x}", "log_index": i, "block_number": block,
             "block_hash": f"0x{block:064x}", "block_time": when, "state": "finalized", "seen_at": when,
             "confirmed_at": when, "finalized_at": when}
            for i, (sender, recipient, token, amount) in enumerate(cases)]


SMALL_IDS = 5000
UNKNOWN = address_for("eq-unknown")  # never named by a record
SMALL_OUTCOME = {("breaks", "unmatched_transfer", SMALL_IDS), ("classified", "dust", SMALL_IDS + 1),
                 ("breaks", "outbound_lookalike", SMALL_IDS + 2), ("breaks", "outbound_lookalike", SMALL_IDS + 3),
                 ("classified", "zero_value", SMALL_IDS + 4), ("classified", "poisoning_suspect", SMALL_IDS + 4),
                 ("classified", "poisoning_suspect", SMALL_IDS + 5)}


def _small_outcome(snapshot: tuple[set, set, set]) -> set:
    _, breaks, classified = snapshot
    out = {("breaks", kind, i) for kind, ids, _ in breaks for i in json.loads(ids) if i >= SMALL_IDS}
    return out | {("classified", reason, i) for i, reason in classified if i >= SMALL_IDS}


def _records(rng: random.Random, transfers: list[dict], prefix: str, count: int) -> list[dict]:
    out = []
    for j in range(count):
        t = rng.choice(transfers)
        kind = "deposit" if t["recipient"] in DEPOSITS + [HOT] and rng.random() < 0.7 else rng.choice(
            ["withdrawal", "internal"])
        wallet = t["recipient"] if kind == "deposit" else t["sender"]
        if rng.random() < 0.15:
            wallet = rng.choice(DEPOSITS + [HOT])
        counterparty = None
        if rng.random() < 0.3 or j == 0:
            other = t["sender"] if kind == "deposit" else t["recipient"]
            counterparty = KNOWN if j == 0 else rng.choice([other, *EXTERNAL, KNOWN])
        amount = t["amount"] + rng.choice([0, 0, 0, 1, 3, 6, -1 if t["amount"] else 0, -3 if t["amount"] > 3 else 0])
        if rng.random() < 0.15:
            amount = rng.choice(AMOUNTS[:-1])
        tx_hash = t["tx_hash"] if rng.random() < 0.4 else None
        when = t["block_time"] + timedelta(hours=rng.choice([0, 1, -2, 5.99, 6, 6.01, -7, 12]))
        out.append({"source": "core", "external_id": f"{prefix}{j}", "version": 1, "kind": kind, "chain_id": 1,
                    "token": t["token"] if rng.random() < 0.95 else USDT, "amount": amount, "wallet": wallet,
                    "counterparty": counterparty, "tx_hash": tx_hash,
                    "log_index": t["log_index"] if tx_hash and rng.random() < 0.3 else None,
                    "reference": None, "segregation": "customer",
                    "status": rng.choices(["completed", "pending", "cancelled"], [8, 1, 1])[0],
                    "created_at": when, "expected_by": None, "ingested_at": when})
    return out


async def _load(engine: object, transfers: list[dict], records: list[dict], *, mark: bool) -> None:
    async with engine.begin() as conn:  # type: ignore[attr-defined]
        if transfers:
            await conn.execute(Transfer.__table__.insert(), transfers)
        if records:
            await conn.execute(Record.__table__.insert(), records)
        await records_repo.add_counterparties(conn, [r["counterparty"] for r in records if r["counterparty"]])
        if mark and transfers:
            await recon_repo.mark_range(conn, 1, min(t["block_number"] for t in transfers),
                                        max(t["block_number"] for t in transfers))
        if mark:
            await recon_repo.mark_items(conn, record_keys=[(r["source"], r["external_id"]) for r in records])


async def _snapshot(engine: object) -> tuple[set, set, set]:
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        matches = {(m["rule"], tuple(m["transfer_ids"]), tuple(tuple(k) for k in m["record_keys"]))
                   for m in await recon_repo.active_matches(conn)}
        breaks = {(b["type"], b["transfer_ids"], b["record_keys"]) for b in await recon_repo.open_breaks(conn)}
        classified = set((await conn.execute(text("SELECT transfer_id, reason FROM transfer_classifications"))).all())
    return matches, breaks, {tuple(c) for c in classified}


def _fresh(database_url: str, tmp_path: Path, name: str) -> str:
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path}/{name}.db"
    else:
        url = database_url
        sync = create_engine(sync_url(url))
        with sync.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        sync.dispose()
    upgrade(url)
    return url


async def _play(database_url: str, tmp_path: Path, seed: int, mode: str) -> tuple[tuple, tuple]:
    """Base data, a first (full) pass, then a delta and one pass in `mode`: the state after each."""
    rng = random.Random(seed)
    url = _fresh(database_url, tmp_path, f"{mode}-{seed}")
    settings = _settings(url, tmp_path, bulk=mode != "core")
    engine = make_engine(url)
    try:
        base_t = _transfers(rng, 1, 90, 0)
        await _load(engine, base_t, _records(rng, base_t, "b", 80), mark=False)
        await reconcile_once(settings, engine, now=NOW)  # the migration queued a full pass
        after_base = await _snapshot(engine)

        delta_t = _transfers(rng, 1000, 30, 100)
        records = _records(rng, base_t + delta_t, "d", 25)
        await _load(engine, delta_t + _small_and_lookalike(60), records, mark=True)
        async with engine.begin() as conn:  # a reorg orphans two base blocks; a seen block gets confirmed
            await conn.execute(update(Transfer.__table__).where(Transfer.__table__.c.block_number.in_([5, 6]))
                               .values(state="orphaned"))
            await conn.execute(update(Transfer.__table__).where(Transfer.__table__.c.block_number == 9,
                                                                Transfer.__table__.c.state == "seen")
                               .values(state="confirmed"))
            await recon_repo.mark_range(conn, 1, 5, 9)
            matches = await recon_repo.active_matches(conn)
        if matches:  # the same match in every mode (ids differ): the one of the lowest transfer
            first = min(matches, key=lambda m: m["transfer_ids"])
            await unmatch(engine, first["id"], reason="wrong customer", actor="alice")
        summary = await reconcile_once(settings, engine, now=NOW, full=mode != "incremental")
        assert summary.full == (mode != "incremental")
        after_delta = await _snapshot(engine)
        again = await reconcile_once(settings, engine, now=NOW)
        assert (again.matched, again.opened, again.closed) == (0, [], 0)
        assert await _snapshot(engine) == after_delta
        return after_base, after_delta
    finally:
        await engine.dispose()


@pytest.mark.parametrize("seed", range(6))
async def test_full_sql_full_core_and_incremental_passes_agree(database_url: str, tmp_path: Path, seed: int) -> None:
    core_base, core_delta = await _play(database_url, tmp_path, seed, "core")
    bulk_base, bulk_delta = await _play(database_url, tmp_path, seed, "full")
    inc_base, inc_delta = await _play(database_url, tmp_path, seed, "incremental")
    assert core_base == bulk_base == inc_base
    assert len(core_base[0]) > 5 and len(core_base[1]) > 5  # the data does exercise matching and breaking
    assert core_delta == bulk_delta
    assert core_delta == inc_delta
    assert _small_outcome(core_delta) == SMALL_OUTCOME


async def test_a_reorg_that_removes_one_of_two_candidates_lets_the_incremental_pass_match_the_other(
    database_url: str, tmp_path: Path
) -> None:
    """Only the orphaned transfer is marked as changed; the record and the other candidate are reached through
    the ambiguous break they share with it."""
    settings = _settings(database_url, tmp_path)
    engine = make_engine(database_url)
    when = START + timedelta(hours=1)
    base = {"chain_id": 1, "token": USDT, "sender": EXTERNAL[0], "recipient": DEPOSITS[5], "amount": 3_000_000,
            "state": "finalized", "block_time": when, "seen_at": when, "confirmed_at": when, "finalized_at": when}
    transfers = [{**base, "id": 1, "tx_hash": f"0x{1:064x}", "log_index": 0, "block_number": 10,
                  "block_hash": f"0x{10:064x}"},
                 {**base, "id": 2, "tx_hash": f"0x{2:064x}", "log_index": 0, "block_number": 11,
                  "block_hash": f"0x{11:064x}"}]
    record = {"source": "core", "external_id": "dep-1", "version": 1, "kind": "deposit", "chain_id": 1,
              "token": USDT, "amount": 3_000_000, "wallet": DEPOSITS[5], "counterparty": None, "tx_hash": None,
              "log_index": None, "reference": None, "segregation": "customer", "status": "completed",
              "created_at": when, "expected_by": None, "ingested_at": when}
    try:
        await _load(engine, transfers, [record], mark=False)
        await reconcile_once(settings, engine, now=NOW)
        matches, breaks, _ = await _snapshot(engine)
        assert matches == set() and breaks == {("ambiguous", "[1,2]", '[["core","dep-1"]]')}
        async with engine.begin() as conn:
            await conn.execute(update(Transfer.__table__).where(Transfer.__table__.c.id == 1)
                               .values(state="orphaned"))
            await recon_repo.mark_range(conn, 1, 10, 10)
        summary = await reconcile_once(settings, engine, now=NOW)
        assert not summary.full
        matches, breaks, _ = await _snapshot(engine)
        assert matches == {("deposit_address", (2,), (("core", "dep-1"),))} and breaks == set()
    finally:
        await engine.dispose()


async def test_editing_a_match_written_in_bulk_is_caught_by_audit_verify(database_url: str, tmp_path: Path) -> None:
    from app.persistence import audit

    settings = _settings(database_url, tmp_path)
    engine = make_engine(database_url)
    rng = random.Random(3)
    try:
        base_t = _transfers(rng, 1, 90, 0)
        await _load(engine, base_t, _records(rng, base_t, "b", 80), mark=False)
        await reconcile_once(settings, engine, now=NOW)
        async with engine.connect() as conn:
            batches = [json.loads(a) for (a,) in await conn.execute(text(
                "SELECT after FROM audit_log WHERE entity LIKE 'matches:%' ORDER BY id"))]
            assert batches and all(b["count"] == b["last_id"] - b["first_id"] + 1 for b in batches)
            assert (await audit.verify(conn))[1] is None
        victim = batches[0]["first_id"]
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE matches SET record_keys = :keys WHERE id = :i"),
                               {"i": victim, "keys": '[["core","other"]]'})
        async with engine.connect() as conn:
            checked, bad, why = await audit.verify(conn)
            bad_entity = await conn.scalar(text("SELECT entity FROM audit_log WHERE id = :i"), {"i": bad})
        assert bad_entity == f"matches:{batches[0]['first_id']}..{batches[0]['last_id']}"
        assert why is not None and "digest" in why
    finally:
        await engine.dispose()


async def test_a_late_record_finds_its_transfer_hours_earlier_on_the_same_wallet(database_url: str,
                                                                                 tmp_path: Path) -> None:
    """The incremental pass looks up a wallet's free items within the matching window of the changed ones: a
    deposit recorded 5 h after its transfer (window 6 h) still finds it, and the unmatched break closes."""
    settings = _settings(database_url, tmp_path)
    engine = make_engine(database_url)
    when = START + timedelta(hours=2)
    transfer = {"id": 7, "chain_id": 1, "token": USDT, "sender": EXTERNAL[1], "recipient": DEPOSITS[7],
                "amount": 4_200_000, "tx_hash": f"0x{7:064x}", "log_index": 0, "block_number": 3,
                "block_hash": f"0x{3:064x}", "state": "finalized", "block_time": when, "seen_at": when,
                "confirmed_at": when, "finalized_at": when}
    record = {"source": "core", "external_id": "late-1", "version": 1, "kind": "deposit", "chain_id": 1,
              "token": USDT, "amount": 4_200_000, "wallet": DEPOSITS[7], "counterparty": None, "tx_hash": None,
              "log_index": None, "reference": None, "segregation": "customer", "status": "completed",
              "created_at": when + timedelta(hours=5), "expected_by": None, "ingested_at": when}
    try:
        await _load(engine, [transfer], [], mark=False)
        await reconcile_once(settings, engine, now=NOW)
        assert (await _snapshot(engine))[1] == {("unmatched_transfer", "[7]", "[]")}
        await _load(engine, [], [record], mark=True)
        summary = await reconcile_once(settings, engine, now=NOW)
        matches, breaks, _ = await _snapshot(engine)
        assert not summary.full and summary.closed == 1
        assert matches == {("deposit_address", (7,), (("core", "late-1"),))} and breaks == set()
    finally:
        await engine.dispose()
