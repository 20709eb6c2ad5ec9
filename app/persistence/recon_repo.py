"""Reconciliation state: the facts fed to the matcher, matches, breaks, classifications."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import BreakEvent, BreakRow, MatchLink, MatchRow, Record, Transfer, TransferClassification
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
    return f"{key[0]}/{key[1]}"


async def transfers(conn: AsyncConnection) -> list[dict]:
    """Every transfer, orphaned ones included (the reconciler needs to see matches that lost their transfer)."""
    cols = [T.c.id, T.c.chain_id, T.c.token, T.c.sender, T.c.recipient, T.c.amount, T.c.tx_hash, T.c.log_index,
            T.c.block_time, T.c.state, T.c.block_hash]
    return [dict(r) for r in (await conn.execute(select(*cols))).mappings()]


async def records(conn: AsyncConnection) -> list[dict]:
    return [dict(r) for r in (await conn.execute(select(RC))).mappings()]


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
                    at: datetime) -> int:
    t_ids, r_keys = sorted(transfer_ids), sorted(tuple(k) for k in record_keys)
    match_id = (await conn.execute(M.insert().values(
        rule=rule, rule_version=rule_version, transfer_ids=dumps(t_ids), record_keys=dumps(r_keys),
        candidates=dumps(candidates), facts=dumps(facts), created_at=at, created_by=actor).returning(M.c.id))
    ).scalar_one()
    links = [{"match_id": match_id, "kind": "transfer", "ref": str(i), "active": True} for i in t_ids]
    links += [{"match_id": match_id, "kind": "record", "ref": record_ref(k), "active": True} for k in r_keys]
    await conn.execute(ML.insert(), links)
    return int(match_id)


async def remove_match(conn: AsyncConnection, match_id: int, *, actor: str, reason: str, at: datetime) -> None:
    await conn.execute(update(M).where(M.c.id == match_id).values(removed_at=at, removed_by=actor,
                                                                    removed_reason=reason))
    await conn.execute(update(ML).where(ML.c.match_id == match_id).values(active=False))


async def classified_transfer_ids(conn: AsyncConnection) -> set[int]:
    return set((await conn.execute(select(TC.c.transfer_id))).scalars())


async def classify(conn: AsyncConnection, transfer_id: int, reason: str, *, actor: str, at: datetime,
                   note: str | None = None) -> None:
    exists = await conn.scalar(select(TC.c.transfer_id).where(TC.c.transfer_id == transfer_id, TC.c.reason == reason))
    if exists is None:
        await conn.execute(TC.insert().values(transfer_id=transfer_id, reason=reason, actor=actor, note=note, at=at))


async def open_breaks(conn: AsyncConnection) -> list[dict]:
    rows = await conn.execute(select(BR).where(BR.c.status != "resolved").order_by(BR.c.id))
    return [dict(r) for r in rows.mappings()]


async def open_break(conn: AsyncConnection, *, type: str, fingerprint: str, transfer_ids: Sequence[int],
                     record_keys: Sequence[Sequence[str]], facts: Any, actor: str, at: datetime) -> int:
    break_id = (await conn.execute(BR.insert().values(
        type=type, status="open", fingerprint=fingerprint, transfer_ids=dumps(sorted(transfer_ids)),
        record_keys=dumps(sorted(tuple(k) for k in record_keys)), facts=dumps(facts), opened_at=at,
    ).returning(BR.c.id))).scalar_one()
    await add_event(conn, int(break_id), "opened", actor, at, {"type": type})
    return int(break_id)


async def set_break_status(conn: AsyncConnection, break_id: int, status: str, *, at: datetime,
                           resolution: Any = None) -> None:
    values: dict[str, Any] = {"status": status}
    if status == "resolved":
        values |= {"resolved_at": at, "resolution": dumps(resolution)}
    elif status == "open":
        values |= {"resolved_at": None, "resolution": None}
    else:
        values["resolution"] = dumps(resolution)
    await conn.execute(update(BR).where(BR.c.id == break_id).values(**values))


async def add_event(conn: AsyncConnection, break_id: int, action: str, actor: str, at: datetime,
                    detail: Any = None) -> None:
    await conn.execute(BE.insert().values(break_id=break_id, action=action, actor=actor, at=at,
                                          detail=dumps(detail) if detail is not None else None))


async def get_break(conn: AsyncConnection, break_id: int) -> dict | None:
    row = (await conn.execute(select(BR).where(BR.c.id == break_id))).mappings().first()
    return dict(row) if row else None


async def break_events(conn: AsyncConnection, break_id: int) -> list[dict]:
    rows = await conn.execute(select(BE).where(BE.c.break_id == break_id).order_by(BE.c.id))
    return [dict(r) for r in rows.mappings()]


async def all_breaks(conn: AsyncConnection) -> list[dict]:
    return [dict(r) for r in (await conn.execute(select(BR).order_by(BR.c.id))).mappings()]


ORPHANED = TransferState.ORPHANED.value
