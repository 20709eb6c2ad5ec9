"""The wallet registry's rows: read all, insert (one, or the missing ones of many), update one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import WalletRow
from app.persistence.upsert import insert_for

W = WalletRow.__table__


async def version(conn: AsyncConnection) -> tuple[int, int]:
    """(row count, sum of row revisions): changes with every insert and every update (rows are never deleted)."""
    count, revisions = (await conn.execute(select(func.count(), func.coalesce(func.sum(W.c.revision), 0)))).one()
    return int(count), int(revisions)


async def all_wallets(conn: AsyncConnection) -> list[dict]:
    return [dict(r) for r in (await conn.execute(select(W).order_by(W.c.id))).mappings()]


async def get(conn: AsyncConnection, wallet_id: int) -> dict | None:
    row = (await conn.execute(select(W).where(W.c.id == wallet_id))).mappings().first()
    return dict(row) if row else None


async def add(conn: AsyncConnection, row: dict[str, Any]) -> dict:
    """Insert one wallet; returns the stored row. A duplicate (chain_id, address) raises IntegrityError."""
    inserted = (await conn.execute(W.insert().values(**row).returning(*W.c))).mappings().one()
    return dict(inserted)


async def add_missing(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> list[dict]:
    """Insert the rows whose (chain_id, address) is not registered yet; returns the ones inserted."""
    out: list[dict] = []
    for i in range(0, len(rows), 1000):
        stmt = insert_for(conn, W).on_conflict_do_nothing(index_elements=[W.c.chain_id, W.c.address])
        out += [dict(r) for r in (await conn.execute(stmt.values(list(rows[i:i + 1000])).returning(*W.c))).mappings()]
    return out


async def change(conn: AsyncConnection, wallet_id: int, values: dict[str, Any], *, at: datetime) -> dict:
    """Set `values` on one wallet, bump its revision; returns the stored row."""
    stmt = (update(W).where(W.c.id == wallet_id)
            .values(**values, updated_at=at, revision=W.c.revision + 1).returning(*W.c))
    return dict((await conn.execute(stmt)).mappings().one())
