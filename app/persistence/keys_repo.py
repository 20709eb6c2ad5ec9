"""API keys: stored by hash, never in the clear."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import ApiKey

K = ApiKey.__table__


async def add(conn: AsyncConnection, *, name: str, person: str, key_hash: str, prefix: str, scopes: list[str],
              actor: str, at: datetime) -> None:
    await conn.execute(K.insert().values(name=name, person=person, key_hash=key_hash, prefix=prefix,
                                         scopes=json.dumps(scopes), created_at=at, created_by=actor))


async def by_name(conn: AsyncConnection, name: str) -> dict | None:
    row = (await conn.execute(select(K).where(K.c.name == name))).mappings().first()
    return _out(row) if row else None


async def active_by_hash(conn: AsyncConnection, key_hash: str) -> dict | None:
    row = (await conn.execute(select(K).where(K.c.key_hash == key_hash, K.c.revoked_at.is_(None)))).mappings().first()
    return _out(row) if row else None


async def all_keys(conn: AsyncConnection) -> list[dict]:
    return [_out(r) for r in (await conn.execute(select(K).order_by(K.c.id))).mappings()]


async def revoke(conn: AsyncConnection, name: str, *, actor: str, at: datetime) -> bool:
    result = await conn.execute(update(K).where(K.c.name == name, K.c.revoked_at.is_(None))
                                .values(revoked_at=at, revoked_by=actor))
    return bool(result.rowcount)


def _out(row: object) -> dict:
    d = {k: v for k, v in dict(row).items() if k != "key_hash"}  # type: ignore[call-overload]
    d["scopes"] = json.loads(d["scopes"])
    return d
