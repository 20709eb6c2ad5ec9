"""The append-only audit log with a hash chain: each entry's hash covers its canonical encoding and the previous
entry's hash, so editing or deleting any entry breaks the chain from there on (`settle audit verify`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import AuditEntry

A = AuditEntry.__table__
BATCH_PREFIX = "matches:"
GENESIS = "0" * 64


def canonical(value: Any) -> str | None:
    """Canonical JSON: sorted keys, no whitespace, ints as JSON numbers (exact), datetimes as ISO 8601 UTC."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_default, ensure_ascii=False)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, tuple | set | frozenset):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"not JSON-encodable: {type(value).__name__}")


def entry_hash(prev_hash: str, at: datetime, actor: str, action: str, entity: str, before: str | None,
               after: str | None) -> str:
    payload = canonical([prev_hash, at.astimezone(UTC).isoformat(), actor, action, entity, before, after])
    return hashlib.sha256(payload.encode()).hexdigest()  # type: ignore[union-attr]


async def append(conn: AsyncConnection, *, actor: str, action: str, entity: str, before: Any = None,
                 after: Any = None, at: datetime | None = None) -> str:
    """Append one entry in the caller's transaction. On PostgreSQL the table is locked for the append so that two
    writers cannot both chain onto the same previous entry."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
    prev = await conn.scalar(select(A.c.hash).order_by(A.c.id.desc()).limit(1)) or GENESIS
    when = at or datetime.now(UTC)
    b, a = canonical(before), canonical(after)
    digest = entry_hash(prev, when, actor, action, entity, b, a)
    await conn.execute(A.insert().values(at=when, actor=actor, action=action, entity=entity, before=b, after=a,
                                         prev_hash=prev, hash=digest))
    return digest


async def append_many(conn: AsyncConnection, entries: list[dict[str, Any]], *, at: datetime | None = None) -> None:
    """Append several entries (each: actor, action, entity, before, after) in one statement, chained in order."""
    if not entries:
        return
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
    prev = await conn.scalar(select(A.c.hash).order_by(A.c.id.desc()).limit(1)) or GENESIS
    when = at or datetime.now(UTC)
    rows = []
    for e in entries:
        b, a = canonical(e.get("before")), canonical(e.get("after"))
        digest = entry_hash(prev, when, e["actor"], e["action"], e["entity"], b, a)
        rows.append({"at": when, "actor": e["actor"], "action": e["action"], "entity": e["entity"], "before": b,
                     "after": a, "prev_hash": prev, "hash": digest})
        prev = digest
    for i in range(0, len(rows), 5000):
        await conn.execute(A.insert(), rows[i:i + 5000])


_PG_DIGEST = """
    SELECT encode(sha256(convert_to(coalesce(string_agg(encode(sha256(convert_to(concat_ws(chr(31), id, rule,
           rule_version, transfer_ids, record_keys, candidates, facts,
           to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), created_by), 'UTF8')), 'hex'),
           chr(10) ORDER BY id), ''), 'UTF8')), 'hex')
    FROM matches WHERE id BETWEEN :first AND :last"""


_SQLITE_ROWS = """
    SELECT id || char(31) || rule || char(31) || rule_version || char(31) || transfer_ids || char(31) ||
           record_keys || char(31) || candidates || char(31) || facts || char(31) || created_at || char(31) ||
           created_by || char(10)
    FROM matches WHERE id BETWEEN :first AND :last ORDER BY id"""


async def matches_digest(conn: AsyncConnection, first_id: int, last_id: int) -> str:
    """SHA-256 over the immutable columns of matches `first_id`..`last_id`, as stored: a batch of matches written
    in one statement is audited by one entry carrying this digest (`verify` recomputes it). Computed in the
    database on PostgreSQL (a digest of per-row digests), streamed on SQLite: each database always checks its
    own digests the same way it wrote them."""
    if conn.dialect.name == "postgresql":  # in the database: a million rows need not cross the wire
        return str(await conn.scalar(text(_PG_DIGEST), {"first": first_id, "last": last_id}))
    digest = hashlib.sha256()
    result = await conn.stream(text(_SQLITE_ROWS).execution_options(yield_per=50_000),
                               {"first": first_id, "last": last_id})
    async for rows in result.partitions():
        digest.update("".join(row[0] for row in rows).encode())
    return digest.hexdigest()


async def append_match_batch(conn: AsyncConnection, *, actor: str, rule: str, first_id: int, last_id: int,
                             at: datetime) -> None:
    """One entry for matches `first_id`..`last_id` (one rule, one statement): their count and digest."""
    await append(conn, actor=actor, action="match.created", entity=f"{BATCH_PREFIX}{first_id}..{last_id}", at=at,
                 after={"rule": rule, "count": last_id - first_id + 1, "first_id": first_id, "last_id": last_id,
                        "digest": await matches_digest(conn, first_id, last_id)})


VERIFY_CHUNK = 5_000
"""Entries read per query when the chain is walked: memory stays bounded however long the log grows."""


@dataclass(frozen=True)
class ChainPosition:
    """How far a walk of the chain has got: entries checked, and the last one's id and hash."""

    checked: int = 0
    last_id: int = 0
    last_hash: str = GENESIS


async def verify_chunk(conn: AsyncConnection, at: ChainPosition, limit: int | None = None
                       ) -> tuple[ChainPosition, int | None, str | None, bool]:
    """Check the next `limit` (default VERIFY_CHUNK) entries after `at`. Returns (the new position, id of the
    first bad entry or None, why, whether the end of the log was reached). A deleted entry shows as the next
    one's previous hash not matching; ids may have gaps (PostgreSQL sequences skip on rollback)."""
    limit = limit or VERIFY_CHUNK
    prev, count, last_id = at.last_hash, at.checked, at.last_id
    rows = (await conn.execute(select(A).where(A.c.id > at.last_id).order_by(A.c.id).limit(limit))).all()
    for row in rows:
        count += 1
        if row.prev_hash != prev:
            return ChainPosition(count, row.id, prev), row.id, ("previous hash does not match (an earlier entry "
                                                                "was changed or removed)"), True
        if entry_hash(prev, row.at, row.actor, row.action, row.entity, row.before, row.after) != row.hash:
            return ChainPosition(count, row.id, prev), row.id, "hash does not match the entry's content (edited)", True
        if row.entity.startswith(BATCH_PREFIX):
            batch = json.loads(row.after)
            if await matches_digest(conn, batch["first_id"], batch["last_id"]) != batch["digest"]:
                return ChainPosition(count, row.id, prev), row.id, (
                    f"matches {batch['first_id']}..{batch['last_id']} differ from the digest this entry recorded "
                    "(a match was edited or removed)"), True
        prev, last_id = row.hash, row.id
    return ChainPosition(count, last_id, prev), None, None, len(rows) < limit


async def verify(conn: AsyncConnection) -> tuple[int, int | None, str | None]:
    """Walk the chain, VERIFY_CHUNK entries at a time. Returns (entries checked, id of the first bad entry or
    None, why)."""
    position = ChainPosition()
    while True:
        position, bad, why, done = await verify_chunk(conn, position)
        if bad is not None or done:
            return position.checked, bad, why


async def entries(conn: AsyncConnection, *, after: int = 0, limit: int = 100) -> list[dict]:
    rows = await conn.execute(select(A).where(A.c.id > after).order_by(A.c.id).limit(limit))
    return [dict(r) for r in rows.mappings()]
