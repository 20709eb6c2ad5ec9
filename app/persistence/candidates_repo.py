"""The pools ops suggestions are drawn from (`app.suggestions`): free records and transfers on one (chain, wallet,
token), nearest in time to an item, a bounded number on each side. However many free items a deposit address has
(a hundred thousand unmatched dust transfers, say), the break detail and the queue read at most that many per item."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.recon_repo import _T_COLS, RC, T, _free_r_clause, _free_t_clause

Target = tuple[int, str, str, datetime]
"""(chain id, our wallet, token, the item's time)."""

_PER_STATEMENT = 40  # targets per UNION ALL statement


def _nearest(base, column, at: datetime, per_side: int, key) -> list:  # type: ignore[no-untyped-def]
    before = base.where(column <= at).order_by(column.desc(), key.desc()).limit(per_side)
    after = base.where(column > at).order_by(column, key).limit(per_side)
    return [select(before.subquery()), select(after.subquery())]


async def free_records_near(conn: AsyncConnection, targets: Sequence[Target], per_side: int) -> list[dict]:
    """Free records (see `recon_repo.free_records`) on each target's (chain, wallet, token): the `per_side`
    created last at or before its time and the `per_side` created first after it."""
    found: dict[tuple[str, str], dict] = {}
    targets = sorted(set(targets))
    for i in range(0, len(targets), _PER_STATEMENT):
        parts = []
        for chain_id, wallet, token, at in targets[i:i + _PER_STATEMENT]:
            base = select(RC).where(RC.c.chain_id == chain_id, RC.c.wallet == wallet, RC.c.token == token,
                                    _free_r_clause())
            parts += _nearest(base, RC.c.created_at, at, per_side, RC.c.id)
        rows = await conn.execute(union_all(*parts))
        found.update({(r["source"], r["external_id"]): dict(r) for r in rows.mappings()})
    return list(found.values())


async def free_transfers_near(conn: AsyncConnection, targets: Sequence[Target], per_side: int) -> list[dict]:
    """Free transfers (see `recon_repo.free_transfers`) of each target's token from or to its wallet on its
    chain: the `per_side` last at or before its time and the `per_side` first after it (by block time, else the
    time it was first seen)."""
    found: dict[int, dict] = {}
    targets = sorted(set(targets))
    for i in range(0, len(targets), _PER_STATEMENT):
        parts = []
        for chain_id, wallet, token, at in targets[i:i + _PER_STATEMENT]:
            base = select(*_T_COLS, T.c.seen_at).where(
                T.c.chain_id == chain_id, T.c.token == token, or_(T.c.sender == wallet, T.c.recipient == wallet),
                _free_t_clause())
            parts += _nearest(base, func.coalesce(T.c.block_time, T.c.seen_at), at, per_side, T.c.id)
        rows = await conn.execute(union_all(*parts))
        found.update({r["id"]: dict(r) for r in rows.mappings()})
    return list(found.values())
