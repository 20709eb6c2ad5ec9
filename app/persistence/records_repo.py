"""Records: current versions and the append-only version history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence import feed
from app.persistence.audit import canonical
from app.persistence.lookups import pairs_in
from app.persistence.tables import Counterparty, Record, RecordVersion
from app.settlement.matching import lookalike_shape

RC = Record.__table__
RV = RecordVersion.__table__
CP = Counterparty.__table__


async def current_by_key(conn: AsyncConnection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    for where in pairs_in(RC.c.source, RC.c.external_id, keys):
        rows = await conn.execute(select(RC).where(where))
        out.update({(r["source"], r["external_id"]): dict(r) for r in rows.mappings()})
    return out


async def save_version(conn: AsyncConnection, rec: dict[str, Any], version: int, actor: str, now: datetime) -> None:
    body = canonical({**rec, "amount": str(rec["amount"]), "version": version})
    version_id = (await conn.execute(RV.insert().values(
        source=rec["source"], external_id=rec["external_id"], version=version, body=body, actor=actor,
        ingested_at=now).returning(RV.c.id))).scalar_one()
    feed.stage(conn, "record.ingested", version_id, rec.get("created_at"))
    values = {**rec, "version": version, "ingested_at": now}
    if version == 1:
        await conn.execute(RC.insert().values(**values))
    else:
        await conn.execute(update(RC).where(RC.c.source == rec["source"], RC.c.external_id == rec["external_id"])
                           .values(**values))


async def versions(conn: AsyncConnection, source: str, external_id: str) -> list[dict]:
    rows = await conn.execute(select(RV).where(RV.c.source == source, RV.c.external_id == external_id)
                              .order_by(RV.c.version))
    return [dict(r) for r in rows.mappings()]


async def page_current(conn: AsyncConnection, *, status: str | None = None, after_id: int | None = None,
                       limit: int = 100) -> list[dict]:
    """Current versions in ingest (id) order after `after_id` (keyset), at most `limit`."""
    stmt = select(RC).order_by(RC.c.id).limit(limit)
    if status is not None:
        stmt = stmt.where(RC.c.status == status)
    if after_id is not None:
        stmt = stmt.where(RC.c.id > after_id)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def all_current(conn: AsyncConnection, status: str | None = None) -> list[dict]:
    stmt = select(RC).order_by(RC.c.id)
    if status is not None:
        stmt = stmt.where(RC.c.status == status)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def add_counterparties(conn: AsyncConnection, addresses: Sequence[str]) -> None:
    """Remember counterparties with their look-alike shape (for the address-poisoning check)."""
    if not addresses:
        return
    unique = sorted(set(addresses))
    known = set()
    for i in range(0, len(unique), 1000):
        known |= set((await conn.execute(select(CP.c.address).where(CP.c.address.in_(unique[i:i + 1000])))).scalars())
    new = [{"address": a, "shape": lookalike_shape(a)} for a in unique if a not in known]
    if new:
        await conn.execute(CP.insert(), new)
