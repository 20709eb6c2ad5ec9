"""Reconciliation state: the facts fed to the matcher, matches, breaks, classifications."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence import feed
from app.persistence.lookups import pairs_in
from app.persistence.tables import (
    BreakEvent,
    BreakLink,
    BreakRow,
    Counterparty,
    MatchLink,
    MatchRow,
    ReconDirty,
    Record,
    Transfer,
    TransferClassification,
)
from chains.types import TransferState

T = Transfer.__table__
RC = Record.__table__
M = MatchRow.__table__
ML = MatchLink.__table__
BR = BreakRow.__table__
BE = BreakEvent.__table__
TC = TransferClassification.__table__


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def record_ref(key: Sequence[str]) -> str:
    """A record key as one string for identity (audit entities): a JSON array, since ids may contain "/"."""
    return dumps([key[0], key[1]])


_T_COLS = [T.c.id, T.c.chain_id, T.c.token, T.c.sender, T.c.recipient, T.c.amount, T.c.tx_hash, T.c.log_index,
           T.c.block_time, T.c.state, T.c.block_hash]


async def transfers_by_id(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for i in range(0, len(ids), 1000):
        rows = await conn.execute(select(*_T_COLS).where(T.c.id.in_(ids[i:i + 1000])))
        out.update({r["id"]: dict(r) for r in rows.mappings()})
    return out


async def free_transfers(conn: AsyncConnection) -> list[dict]:
    """Live transfers that no active match and no classification explains: the reconciler's incremental input."""
    rows = await conn.execute(select(*_T_COLS).where(_free_t_clause()))
    return [dict(r) for r in rows.mappings()]


async def live_transfers(conn: AsyncConnection) -> list[dict]:
    """Every transfer not orphaned, explained or not (a rebuild from scratch decides them all)."""
    rows = await conn.execute(select(*_T_COLS).where(T.c.state != ORPHANED))
    return [dict(r) for r in rows.mappings()]


async def classifications(conn: AsyncConnection) -> list[tuple[int, str, str]]:
    """(transfer id, reason, actor) of every active (not revoked) classification."""
    rows = await conn.execute(select(TC.c.transfer_id, TC.c.reason, TC.c.actor).where(TC.c.revoked_at.is_(None)))
    return [(int(i), r, a) for i, r, a in rows]


async def free_records(conn: AsyncConnection) -> list[dict]:
    """Current records (not cancelled) that no active match explains."""
    rows = await conn.execute(select(RC).where(_free_r_clause()))
    return [dict(r) for r in rows.mappings()]


async def known_counterparties(conn: AsyncConnection) -> set[str]:
    """Every counterparty a record has named."""
    return set((await conn.execute(select(CP.c.address))).scalars())


async def reorged_match_ids(conn: AsyncConnection, transfer_ids: Sequence[int] | None = None) -> list[int]:
    """Active matches whose transfer was orphaned, or now sits in another block than the one it was matched in
    (among matches of these transfers, if given)."""
    stmt = select(ML.c.match_id).join(T, T.c.id == ML.c.transfer_id).where(
        ML.c.active.is_(True), (T.c.state == ORPHANED) | (T.c.block_hash != ML.c.block_hash))
    if transfer_ids is None:
        return sorted(set((await conn.execute(stmt)).scalars()))
    out: set[int] = set()
    for i in range(0, len(transfer_ids), 1000):
        out |= set((await conn.execute(stmt.where(ML.c.transfer_id.in_(transfer_ids[i:i + 1000])))).scalars())
    return sorted(out)


async def matched_record_keys(conn: AsyncConnection, keys: Sequence[Sequence[str]]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    out: set[tuple[str, str]] = set()
    for where in pairs_in(ML.c.record_source, ML.c.record_external_id, keys):
        rows = await conn.execute(select(ML.c.record_source, ML.c.record_external_id).where(
            ML.c.active.is_(True), where))
        out |= {(a, b) for a, b in rows}
    return out


async def matched_transfer_ids(conn: AsyncConnection, ids: Sequence[int]) -> set[int]:
    rows = await conn.execute(select(ML.c.transfer_id).where(ML.c.active.is_(True), ML.c.transfer_id.in_(list(ids))))
    return set(rows.scalars())


async def match(conn: AsyncConnection, match_id: int) -> dict | None:
    row = (await conn.execute(select(M).where(M.c.id == match_id))).mappings().first()
    if row is None:
        return None
    return {**dict(row), "transfer_ids": json.loads(row["transfer_ids"]), "facts": json.loads(row["facts"]),
            "record_keys": [tuple(k) for k in json.loads(row["record_keys"])]}


async def active_matches(conn: AsyncConnection) -> list[dict]:
    rows = await conn.execute(select(M).where(M.c.removed_at.is_(None)).order_by(M.c.id))
    return [{**dict(r), "transfer_ids": json.loads(r["transfer_ids"]), "facts": json.loads(r["facts"]),
             "record_keys": [tuple(k) for k in json.loads(r["record_keys"])]} for r in rows.mappings()]


async def pairs_unmatched_by_people(conn: AsyncConnection, system_actor: str) -> frozenset[tuple[int, tuple]]:
    """(transfer id, record key) pairs of matches a person removed: the machine must not make them again."""
    rows = await conn.execute(select(M.c.transfer_ids, M.c.record_keys).where(
        M.c.removed_at.is_not(None), M.c.removed_by != system_actor))
    return frozenset((i, tuple(k)) for t_ids, r_keys in rows for i in json.loads(t_ids) for k in json.loads(r_keys))


async def add_match(conn: AsyncConnection, *, rule: str, rule_version: str, transfer_ids: Iterable[int],
                    record_keys: Iterable[Sequence[str]], candidates: Any, facts: Any, actor: str,
                    at: datetime, observed: dict[int, str]) -> int:
    """`observed`: the block hash each transfer was matched in (a later change means it was reorged)."""
    t_ids, r_keys = sorted(transfer_ids), sorted(tuple(k) for k in record_keys)
    match_id = (await conn.execute(M.insert().values(
        rule=rule, rule_version=rule_version, transfer_ids=dumps(t_ids), record_keys=dumps(r_keys),
        candidates=dumps(candidates), facts=dumps(facts), created_at=at, created_by=actor).returning(M.c.id))
    ).scalar_one()
    links = [{"match_id": match_id, "transfer_id": i, "block_hash": observed[i], "record_source": None,
              "record_external_id": None, "active": True} for i in t_ids]
    links += [{"match_id": match_id, "transfer_id": None, "block_hash": None, "record_source": k[0],
               "record_external_id": k[1], "active": True} for k in r_keys]
    await conn.execute(ML.insert(), links)
    feed.stage(conn, "match.created", int(match_id), at)
    return int(match_id)


async def _insert_returning_ids(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert `rows`; the ids the database generated for them (its sequence, or SQLite's rowid), in row order."""
    if not rows:
        return []
    result = await conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
    return [int(r[0]) for r in result]


async def add_matches(conn: AsyncConnection, matches: list[dict[str, Any]], *, actor: str, at: datetime) -> list[int]:
    """Bulk `add_match`: each dict has rule, rule_version, transfer_ids, record_keys, candidates, facts, observed.
    Returns the new ids in input order."""
    ids: list[int] = []
    for i in range(0, len(matches), 5000):
        chunk = matches[i:i + 5000]
        rows = [{"rule": m["rule"], "rule_version": m["rule_version"],
                 "transfer_ids": dumps(sorted(m["transfer_ids"])),
                 "record_keys": dumps(sorted(tuple(k) for k in m["record_keys"])), "candidates": dumps(m["candidates"]),
                 "facts": dumps(m["facts"]), "created_at": at, "created_by": actor} for m in chunk]
        new = await _insert_returning_ids(conn, M, rows)
        for mid in new:
            feed.stage(conn, "match.created", mid, at)
        ids += new
        links = [{"match_id": mid, "transfer_id": t, "block_hash": m["observed"][t], "record_source": None,
                  "record_external_id": None, "active": True} for mid, m in zip(new, chunk, strict=True)
                 for t in sorted(m["transfer_ids"])]
        links += [{"match_id": mid, "transfer_id": None, "block_hash": None, "record_source": k[0],
                   "record_external_id": k[1], "active": True} for mid, m in zip(new, chunk, strict=True)
                  for k in m["record_keys"]]
        for j in range(0, len(links), 10000):
            await conn.execute(ML.insert(), links[j:j + 10000])
    return ids


async def classify_many(conn: AsyncConnection, items: list[tuple[int, str]], *, actor: str,
                        at: datetime) -> list[tuple[int, str]]:
    """Insert (transfer id, reason) classifications that are not there yet (a revoked one is made anew: the
    revocation and the earlier classification stay in the audit log and the break's history). Returns those
    made (inserted or reinstated), sorted."""
    if not items:
        return []
    existing: dict[tuple[int, str], bool] = {}
    ids = sorted({i for i, _ in items})
    for j in range(0, len(ids), 1000):
        rows = await conn.execute(select(TC.c.transfer_id, TC.c.reason, TC.c.revoked_at).where(
            TC.c.transfer_id.in_(ids[j:j + 1000])))
        existing |= {(a, b): c is not None for a, b, c in rows}
    new = [{"transfer_id": i, "reason": r, "actor": actor, "note": None, "at": at}
           for i, r in sorted(set(items)) if (i, r) not in existing]
    for j in range(0, len(new), 10000):
        await conn.execute(TC.insert(), new[j:j + 10000])
    reinstated = sorted({k for k in set(items) if existing.get(k)})
    for i, r in reinstated:
        await _reinstate(conn, i, r, actor=actor, at=at, note=None)
    return sorted([(row["transfer_id"], row["reason"]) for row in new] + reinstated)


async def _reinstate(conn: AsyncConnection, transfer_id: int, reason: str, *, actor: str, at: datetime,
                     note: str | None) -> None:
    await conn.execute(update(TC).where(TC.c.transfer_id == transfer_id, TC.c.reason == reason).values(
        actor=actor, at=at, note=note, revoked_at=None, revoked_by=None))


async def revoke_classifications(conn: AsyncConnection, transfer_ids: Sequence[int], reason: str, *, actor: str,
                                 at: datetime) -> list[int]:
    """Revoke (keep, marked) the active classifications of these transfers with this reason. Returns their ids."""
    where = [TC.c.transfer_id.in_(list(transfer_ids)), TC.c.reason == reason, TC.c.revoked_at.is_(None)]
    ids = sorted((await conn.execute(select(TC.c.transfer_id).where(*where))).scalars())
    if ids:
        await conn.execute(update(TC).where(*where).values(revoked_at=at, revoked_by=actor))
    return ids


async def classified_by(conn: AsyncConnection, actor: str, reasons: Sequence[str]) -> list[dict]:
    """Active classifications `actor` made with one of these reasons, with their transfer's chain and parties."""
    rows = await conn.execute(select(TC.c.transfer_id, TC.c.reason, TC.c.at, T.c.chain_id, T.c.sender, T.c.recipient)
                              .join(T, T.c.id == TC.c.transfer_id)
                              .where(TC.c.actor == actor, TC.c.reason.in_(list(reasons)), TC.c.revoked_at.is_(None))
                              .order_by(TC.c.transfer_id))
    return [dict(r) for r in rows.mappings()]


async def unclassify(conn: AsyncConnection, items: Sequence[tuple[int, str]], *, actor: str, at: datetime) -> None:
    """Withdraw these (transfer id, reason) classifications: revoked, never deleted (the caller audits them)."""
    by_reason: dict[str, list[int]] = {}
    for transfer_id, reason in items:
        by_reason.setdefault(reason, []).append(transfer_id)
    for reason, ids in sorted(by_reason.items()):
        for i in range(0, len(ids), 1000):
            await revoke_classifications(conn, ids[i:i + 1000], reason, actor=actor, at=at)


async def remove_match(conn: AsyncConnection, match_id: int, *, actor: str, reason: str, at: datetime) -> None:
    await conn.execute(update(M).where(M.c.id == match_id).values(removed_at=at, removed_by=actor,
                                                                    removed_reason=reason))
    feed.stage(conn, "match.removed", match_id, at)
    row = (await conn.execute(select(M.c.transfer_ids, M.c.record_keys).where(M.c.id == match_id))).one()
    sides = [ML.c.transfer_id.in_(json.loads(row.transfer_ids))]
    sides += pairs_in(ML.c.record_source, ML.c.record_external_id, [tuple(k) for k in json.loads(row.record_keys)])
    # found through the transfer and record indexes: match_links has no index on match_id (a million-match
    # bulk pass would maintain it for this one rare update)
    await conn.execute(update(ML).where(ML.c.match_id == match_id, or_(*sides)).values(active=False))


async def classify(conn: AsyncConnection, transfer_id: int, reason: str, *, actor: str, at: datetime,
                   note: str | None = None) -> None:
    row = (await conn.execute(select(TC.c.revoked_at).where(TC.c.transfer_id == transfer_id,
                                                             TC.c.reason == reason))).first()
    if row is None:
        await conn.execute(TC.insert().values(transfer_id=transfer_id, reason=reason, actor=actor, note=note, at=at))
    elif row.revoked_at is not None:
        await _reinstate(conn, transfer_id, reason, actor=actor, at=at, note=note)


async def breaks_by_fingerprint(conn: AsyncConnection, prints: Sequence[str]) -> dict[str, dict]:
    """The latest break per fingerprint."""
    out: dict[str, dict] = {}
    for i in range(0, len(prints), 1000):
        rows = await conn.execute(select(BR).where(BR.c.fingerprint.in_(prints[i:i + 1000])).order_by(BR.c.id))
        out.update({r["fingerprint"]: dict(r) for r in rows.mappings()})
    return out


async def open_breaks(conn: AsyncConnection) -> list[dict]:
    rows = await conn.execute(select(BR).where(BR.c.status != "resolved").order_by(BR.c.id))
    return [dict(r) for r in rows.mappings()]


async def open_breaks_many(conn: AsyncConnection, breaks: list[dict[str, Any]], *, actor: str,
                           at: datetime) -> list[int]:
    """Bulk `open_break`: each dict has type, fingerprint, transfer_ids, record_keys, facts. Ids in input order."""
    ids: list[int] = []
    for i in range(0, len(breaks), 5000):
        chunk = breaks[i:i + 5000]
        rows = [{"type": b["type"], "status": "open", "fingerprint": b["fingerprint"],
                 "chain_id": b.get("chain_id"), "token": b.get("token"), "amount": b.get("amount"),
                 "severity": b.get("severity", "low"),
                 "due_at": b.get("due_at"),
                 "since": b.get("since"),
                 "transfer_ids": dumps(sorted(b["transfer_ids"])),
                 "record_keys": dumps(sorted(tuple(k) for k in b["record_keys"])), "facts": dumps(b["facts"]),
                 "opened_at": at} for b in chunk]
        new = await _insert_returning_ids(conn, BR, rows)
        for bid in new:
            feed.stage(conn, "break.opened", bid, at, state="open")
        ids += new
        await conn.execute(BE.insert(), [{"break_id": bid, "action": "opened", "actor": actor, "at": at,
                                          "detail": dumps({"type": b["type"]})} for bid, b in zip(new, chunk,
                                                                                                  strict=True)])
        links = [{"break_id": bid, "transfer_id": t, "record_source": None, "record_external_id": None}
                 for bid, b in zip(new, chunk, strict=True) for t in b["transfer_ids"]]
        links += [{"break_id": bid, "transfer_id": None, "record_source": k[0], "record_external_id": k[1]}
                  for bid, b in zip(new, chunk, strict=True) for k in b["record_keys"]]
        if links:
            await conn.execute(BL.insert(), links)
    return ids


async def set_break_status(conn: AsyncConnection, break_id: int, status: str, *, at: datetime,
                           resolution: Any = None, expect: str | None = None) -> bool:
    """Set the status (and resolution) of a break, and whether its items count as in an open break. With
    `expect`, only if the break still has that status (the one the caller read): False if it changed meanwhile,
    and nothing is written. Raises IntegrityError when reopening would put an item in two open breaks."""
    values: dict[str, Any] = {"status": status}
    if status == "resolved":
        values |= {"resolved_at": at, "resolution": dumps(resolution)}
    elif status == "open":
        values |= {"resolved_at": None, "resolution": None}
    else:
        values["resolution"] = dumps(resolution)
    stmt = update(BR).where(BR.c.id == break_id)
    if expect is not None:
        stmt = stmt.where(BR.c.status == expect)
    if not (await conn.execute(stmt.values(**values))).rowcount:
        return False
    await conn.execute(update(BL).where(BL.c.break_id == break_id).values(is_open=status != "resolved"))
    if status == "resolved":
        feed.stage(conn, "break.resolved", break_id, at, state=status, detail=resolution)
    elif status == "open":
        feed.stage(conn, "break.opened", break_id, at, state=status)
    return True


async def add_event(conn: AsyncConnection, break_id: int, action: str, actor: str, at: datetime,
                    detail: Any = None) -> None:
    await conn.execute(BE.insert().values(break_id=break_id, action=action, actor=actor, at=at,
                                          detail=dumps(detail) if detail is not None else None))


async def get_break(conn: AsyncConnection, break_id: int, *, for_update: bool = False) -> dict | None:
    """The break; `for_update`: row-locked until commit (PostgreSQL), for a writer that decides from it."""
    stmt = select(BR).where(BR.c.id == break_id)
    row = (await conn.execute(stmt.with_for_update() if for_update else stmt)).mappings().first()
    return dict(row) if row else None


async def reopened_break_ids(conn: AsyncConnection, break_ids: Sequence[int]) -> set[int]:
    """Those of these breaks that a person reopened (and that stay open until a person resolves them again)."""
    out: set[int] = set()
    for i in range(0, len(break_ids), 1000):
        out |= set((await conn.execute(select(BE.c.break_id).where(
            BE.c.break_id.in_(break_ids[i:i + 1000]), BE.c.action == "reopened"))).scalars())
    return out


async def items_in_open_breaks(conn: AsyncConnection, transfer_ids: Sequence[int],
                               record_keys: Sequence[Sequence[str]]) -> tuple[dict[int, int], dict[tuple, int]]:
    """Which of these items are in an unresolved break, and which: ({transfer id: break id}, {record key: id})."""
    by_t: dict[int, int] = {}
    ids = sorted(set(transfer_ids))
    for i in range(0, len(ids), 1000):
        rows = await conn.execute(select(BL.c.transfer_id, BL.c.break_id).where(
            BL.c.is_open.is_(True), BL.c.transfer_id.in_(ids[i:i + 1000])))
        by_t |= {a: b for a, b in rows}
    by_r: dict[tuple, int] = {}
    for where in pairs_in(BL.c.record_source, BL.c.record_external_id, sorted({tuple(k) for k in record_keys})):
        rows = await conn.execute(select(BL.c.record_source, BL.c.record_external_id, BL.c.break_id).where(
            BL.c.is_open.is_(True), where))
        by_r |= {(a, b): c for a, b, c in rows}
    return by_t, by_r


async def active_match_ids_of_records(conn: AsyncConnection, keys: Sequence[Sequence[str]]) -> list[int]:
    """Ids of the active matches these records are in."""
    out: set[int] = set()
    for where in pairs_in(ML.c.record_source, ML.c.record_external_id, [tuple(k) for k in keys]):
        out |= set((await conn.execute(select(ML.c.match_id).where(ML.c.active.is_(True), where))).scalars())
    return sorted(out)


async def break_events(conn: AsyncConnection, break_id: int) -> list[dict]:
    rows = await conn.execute(select(BE).where(BE.c.break_id == break_id).order_by(BE.c.id))
    return [dict(r) for r in rows.mappings()]


async def all_breaks(conn: AsyncConnection) -> list[dict]:
    return [dict(r) for r in (await conn.execute(select(BR).order_by(BR.c.id))).mappings()]


ORPHANED = TransferState.ORPHANED.value


# ---- what changed: the reconciler's work queue ---------------------------------------------------------------------
RD = ReconDirty.__table__
BL = BreakLink.__table__
CP = Counterparty.__table__


async def mark_range(conn: AsyncConnection, chain_id: int, from_block: int, to_block: int | None) -> None:
    """Blocks `from_block`..`to_block` (open-ended if None) of a chain changed: indexed, promoted or reorged."""
    await conn.execute(RD.insert().values(kind="range", chain_id=chain_id, from_block=from_block, to_block=to_block))


async def mark_items(conn: AsyncConnection, *, transfer_ids: Iterable[int] = (),
                     record_keys: Iterable[Sequence[str]] = (), not_before: datetime | None = None) -> None:
    """These transfers and records need deciding again (now, or at `not_before`)."""
    rows = [{"kind": "transfer", "transfer_id": i, "record_source": None, "record_external_id": None,
             "not_before": not_before} for i in sorted(set(transfer_ids))]
    rows += [{"kind": "record", "transfer_id": None, "record_source": k[0], "record_external_id": k[1],
              "not_before": not_before} for k in sorted({tuple(k) for k in record_keys})]
    for i in range(0, len(rows), 10000):
        await conn.execute(RD.insert(), rows[i:i + 10000])


async def due_dirty(conn: AsyncConnection, now: datetime) -> list[dict]:
    rows = await conn.execute(select(RD).where((RD.c.not_before.is_(None)) | (RD.c.not_before <= now))
                              .order_by(RD.c.id))
    return [dict(r) for r in rows.mappings()]


async def consume_dirty(conn: AsyncConnection, ids: Sequence[int]) -> None:
    for i in range(0, len(ids), 1000):
        await conn.execute(delete(RD).where(RD.c.id.in_(ids[i:i + 1000])))


async def set_deadlines(conn: AsyncConnection, transfers: dict[int, datetime], records: dict[tuple[str, str], datetime],
                        *, scope_t: Iterable[int] | None, scope_r: Iterable[Sequence[str]] | None) -> None:
    """Replace the pending deadlines of the items in scope (every item when the scope is None) with these."""
    future = RD.c.not_before.is_not(None)
    if scope_t is None or scope_r is None:
        await conn.execute(delete(RD).where(future, RD.c.kind.in_(["transfer", "record"])))
    else:
        ids = sorted(set(scope_t))
        keys = sorted({tuple(k) for k in scope_r})
        for i in range(0, len(ids), 1000):
            await conn.execute(delete(RD).where(future, RD.c.transfer_id.in_(ids[i:i + 1000])))
        for where in pairs_in(RD.c.record_source, RD.c.record_external_id, keys):
            await conn.execute(delete(RD).where(future, where))
    rows = [{"kind": "transfer", "transfer_id": i, "record_source": None, "record_external_id": None,
             "not_before": at} for i, at in sorted(transfers.items())]
    rows += [{"kind": "record", "transfer_id": None, "record_source": k[0], "record_external_id": k[1],
              "not_before": at} for k, at in sorted(records.items())]
    for i in range(0, len(rows), 10000):
        await conn.execute(RD.insert(), rows[i:i + 10000])


# ---- neighbourhoods: what an incremental pass decides --------------------------------------------------------------
def _free_t_clause():  # type: ignore[no-untyped-def]
    linked = select(ML.c.id).where(ML.c.transfer_id == T.c.id, ML.c.active.is_(True)).exists()
    classified = select(TC.c.transfer_id).where(TC.c.transfer_id == T.c.id, TC.c.revoked_at.is_(None)).exists()
    return (T.c.state != ORPHANED) & ~linked & ~classified


def _free_r_clause():  # type: ignore[no-untyped-def]
    linked = select(ML.c.id).where(ML.c.record_source == RC.c.source, ML.c.record_external_id == RC.c.external_id,
                                   ML.c.active.is_(True)).exists()
    return (RC.c.status != "cancelled") & ~linked


async def transfer_ids_in_ranges(conn: AsyncConnection, ranges: Sequence[tuple[int, int, int | None]]) -> set[int]:
    """Ids of the transfers in (chain id, from block, to block) ranges, whatever their state."""
    out: set[int] = set()
    states = [s.value for s in TransferState]
    for chain_id, lo, hi in ranges:
        where = [T.c.chain_id == chain_id, T.c.state.in_(states), T.c.block_number >= lo]
        if hi is not None:
            where.append(T.c.block_number <= hi)
        out |= set((await conn.execute(select(T.c.id).where(*where))).scalars())
    return out


async def refresh_statistics(conn: AsyncConnection) -> None:
    """After a bulk write: refresh the planner's statistics of the match tables (PostgreSQL), so that the next
    incremental passes probe indexes instead of hashing millions of match links on stale estimates. Autovacuum
    would get there too, a minute or more later."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("ANALYZE matches, match_links, feed_events")


def _ored(predicates: list) -> list:  # type: ignore[type-arg]
    """OR lookup predicates together, a few per statement: one round trip instead of one per predicate."""
    return [or_(*predicates[i:i + 8]) for i in range(0, len(predicates), 8)]


async def free_transfers_where(conn: AsyncConnection, *, ids: Sequence[int] = (),
                               wallets: Sequence[tuple[int, str]] = (),
                               txs: Sequence[tuple[int, str]] = (),
                               between: tuple[datetime, datetime] | None = None) -> list[dict]:
    """Free transfers (see `free_transfers`) with one of these ids, touching one of these (chain, address) on
    either side (with a block time `between`, if given), or in one of these (chain, tx hash)."""
    found: dict[int, dict] = {}
    free = _free_t_clause()
    predicates = [T.c.id.in_(ids[i:i + 1000]) for i in range(0, len(ids), 1000)]
    by_wallet = pairs_in(T.c.chain_id, T.c.recipient, wallets) + pairs_in(T.c.chain_id, T.c.sender, wallets)
    if between is not None:
        by_wallet = [p & T.c.block_time.between(*between) for p in by_wallet]
    predicates += by_wallet + pairs_in(T.c.chain_id, T.c.tx_hash, txs)
    for where in _ored(predicates):
        rows = await conn.execute(select(*_T_COLS).where(where, free))
        found.update({r["id"]: dict(r) for r in rows.mappings()})
    return list(found.values())


async def free_records_where(conn: AsyncConnection, *, keys: Sequence[tuple[str, str]] = (),
                             wallets: Sequence[tuple[int, str]] = (),
                             txs: Sequence[tuple[int, str]] = (),
                             between: tuple[datetime, datetime] | None = None) -> list[dict]:
    """Free records with one of these keys, on one of these (chain, wallet) (created `between`, if given), or
    naming one of these (chain, tx hash)."""
    found: dict[tuple[str, str], dict] = {}
    free = _free_r_clause()
    predicates = pairs_in(RC.c.source, RC.c.external_id, keys)
    by_wallet = pairs_in(RC.c.chain_id, RC.c.wallet, wallets)
    if between is not None:
        by_wallet = [p & RC.c.created_at.between(*between) for p in by_wallet]
    predicates += by_wallet + pairs_in(RC.c.chain_id, RC.c.tx_hash, txs)
    for where in _ored(predicates):
        rows = await conn.execute(select(RC).where(where, free))
        found.update({(r["source"], r["external_id"]): dict(r) for r in rows.mappings()})
    return list(found.values())


async def open_breaks_touching(conn: AsyncConnection, transfer_ids: Sequence[int],
                               record_keys: Sequence[tuple[str, str]]) -> list[dict]:
    """Breaks not resolved yet that list one of these transfers or records."""
    predicates = [BL.c.transfer_id.in_(transfer_ids[i:i + 1000]) for i in range(0, len(transfer_ids), 1000)]
    predicates += pairs_in(BL.c.record_source, BL.c.record_external_id, record_keys)
    found: dict[int, dict] = {}
    for where in _ored(predicates):
        rows = await conn.execute(select(BR).where(BR.c.status != "resolved",
                                                   BR.c.id.in_(select(BL.c.break_id).where(where))))
        found.update({r["id"]: dict(r) for r in rows.mappings()})
    return [found[i] for i in sorted(found)]


async def open_breaks_of_wallet(conn: AsyncConnection, chain_id: int, wallet: str) -> list[dict]:
    """Unresolved breaks with a transfer from or to `wallet`, or a record on it, in id order."""
    by_transfer = select(BL.c.break_id).join(T, T.c.id == BL.c.transfer_id).where(
        T.c.chain_id == chain_id, or_(T.c.sender == wallet, T.c.recipient == wallet))
    by_record = select(BL.c.break_id).join(RC, (RC.c.source == BL.c.record_source)
                                           & (RC.c.external_id == BL.c.record_external_id)).where(
        RC.c.chain_id == chain_id, RC.c.wallet == wallet)
    stmt = select(BR).where(BR.c.status != "resolved", or_(BR.c.id.in_(by_transfer), BR.c.id.in_(by_record)))
    return [dict(r) for r in (await conn.execute(stmt.order_by(BR.c.id))).mappings()]


async def lookalike_counterparties(conn: AsyncConnection, shapes: Sequence[str]) -> set[str]:
    """Known counterparties (named by any record) with one of these look-alike shapes."""
    out: set[str] = set()
    for i in range(0, len(shapes), 1000):
        out |= set((await conn.execute(select(CP.c.address).where(CP.c.shape.in_(shapes[i:i + 1000])))).scalars())
    return out


async def pairs_unmatched_by_people_near(conn: AsyncConnection, system_actor: str, transfer_ids: Sequence[int]
                                         ) -> frozenset[tuple[int, tuple]]:
    """`pairs_unmatched_by_people`, restricted to matches that involved one of these transfers."""
    out: set[tuple[int, tuple]] = set()
    for i in range(0, len(transfer_ids), 1000):
        involved = select(ML.c.match_id).where(ML.c.transfer_id.in_(transfer_ids[i:i + 1000]))
        rows = await conn.execute(select(M.c.transfer_ids, M.c.record_keys).where(
            M.c.id.in_(involved), M.c.removed_at.is_not(None), M.c.removed_by != system_actor))
        out |= {(t, tuple(k)) for t_ids, r_keys in rows for t in json.loads(t_ids) for k in json.loads(r_keys)}
    return frozenset(out)


async def regrade_by_age(conn: AsyncConnection, cutoffs: Sequence[tuple[datetime, str, Sequence[str]]]) -> None:
    """Raise the severity of unresolved breaks older than a cutoff: (cutoff, new level, levels below it). An
    index on (status, severity, since) makes this touch only the breaks that change."""
    for cutoff, level, below in cutoffs:
        await conn.execute(update(BR).where(BR.c.status.in_(["open", "awaiting_approval"]),
                                            BR.c.severity.in_(list(below)),
                                            BR.c.since <= cutoff)
                           .values(severity=level))


async def list_breaks(conn: AsyncConnection, *, status: str | None = None, kind: str | None = None,
                      severity: str | None = None, since_before: datetime | None = None, after_id: int | None = None,
                      limit: int = 100) -> list[dict]:
    """Breaks in id order (keyset: `after_id`), filtered; `since_before`: older than that time."""
    stmt = select(BR).order_by(BR.c.id).limit(limit)
    if status is not None:
        stmt = stmt.where(BR.c.status == status)
    if kind is not None:
        stmt = stmt.where(BR.c.type == kind)
    if severity is not None:
        stmt = stmt.where(BR.c.severity == severity)
    if since_before is not None:
        stmt = stmt.where(BR.c.since <= since_before)
    if after_id is not None:
        stmt = stmt.where(BR.c.id > after_id)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def unmatched_queue(conn: AsyncConnection, *, after: tuple[datetime, int] | None,
                          limit: int) -> list[dict]:
    """Open `unmatched_transfer` breaks with their transfer (all columns), oldest first; keyset on (since, id)."""
    stmt = (select(T, BR.c.id.label("break_id"), BR.c.severity, BR.c.since, BR.c.due_at)
            .select_from(BR.join(BL, BL.c.break_id == BR.c.id).join(T, T.c.id == BL.c.transfer_id))
            .where(BR.c.status == "open", BR.c.type == "unmatched_transfer")
            .order_by(BR.c.since, BR.c.id).limit(limit))
    if after is not None:
        stmt = stmt.where((BR.c.since > after[0]) | ((BR.c.since == after[0]) & (BR.c.id > after[1])))
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]
