"""The append-only audit log with a hash chain: each entry's hash covers its canonical encoding and the previous
entry's hash, so editing or deleting any entry breaks the chain from there on (`settle audit verify`).

Deleting the *last* entries breaks no link, so the head (entries so far, last hash) is kept outside the log, in
`audit_head`, moved in the same transaction as each append under the same lock. Truncating the log and its head
together is caught against a head held elsewhere (`settle audit head` prints it, HMAC-SHA256 signed with
`audit.head_key` when one is configured; `settle audit verify --head SEQ:HASH[:SIG]` checks the log against it)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import SettleError
from app.persistence.tables import AuditEntry, AuditHead

A = AuditEntry.__table__
H = AuditHead.__table__
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


@dataclass(frozen=True)
class Head:
    """The chain's head: `seq` entries so far (1-based, gapless, unlike ids), the last one's hash, id and time."""

    seq: int
    hash: str
    entry_id: int | None = None
    at: datetime | None = None

    @property
    def anchor(self) -> str:
        """`SEQ:HASH`, the text an external anchor keeps and the HMAC signs."""
        return f"{self.seq}:{self.hash}"


class AuditHeadMissing(SettleError):
    """The audit head row is gone: the log cannot be appended to without hiding what happened to it."""


def sign_head(head: Head, key: str) -> str:
    """HMAC-SHA256 (hex) of `SEQ:HASH` with `key` (`openssl dgst -sha256 -hmac KEY` gives the same)."""
    return hmac.new(key.encode(), head.anchor.encode(), hashlib.sha256).hexdigest()


def signature_holds(head: Head, signature: str, key: str) -> bool:
    return hmac.compare_digest(sign_head(head, key), signature.lower())


_ANCHOR = re.compile(r"^(\d+):([0-9a-fA-F]{64})(?::([0-9a-fA-F]{64}))?$")


def parse_anchor(value: str) -> tuple[Head, str | None]:
    """`SEQ:HASH[:SIG]` (as `settle audit head` prints it) into a head and its signature. Raises ValueError."""
    found = _ANCHOR.match(value.strip())
    if not found:
        raise ValueError(f"not SEQ:HASH[:SIGNATURE] (hashes are 64 hex characters): {value!r}")
    return Head(int(found[1]), found[2].lower()), (found[3].lower() if found[3] else None)


async def read_head(conn: AsyncConnection) -> Head | None:
    row = (await conn.execute(select(H).where(H.c.id == 1))).first()
    return Head(row.seq, row.hash, row.entry_id, row.at) if row else None


async def _locked_head(conn: AsyncConnection) -> Head:
    """The head to chain onto, under the log's lock (PostgreSQL: two writers cannot chain onto the same entry)."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
    head = await read_head(conn)
    if head is None:
        raise AuditHeadMissing("the audit head (table audit_head) is missing: nothing more can be audited until "
                               "it is restored; see `settle audit verify`")
    return head


async def _advance(conn: AsyncConnection, head: Head, count: int, digest: str, entry_id: int | None,
                   at: datetime) -> None:
    await conn.execute(H.update().where(H.c.id == 1).values(seq=head.seq + count, hash=digest, entry_id=entry_id,
                                                            at=at))


async def append(conn: AsyncConnection, *, actor: str, action: str, entity: str, before: Any = None,
                 after: Any = None, at: datetime | None = None) -> str:
    """Append one entry in the caller's transaction, and move the head with it."""
    head = await _locked_head(conn)
    prev = head.hash
    when = at or datetime.now(UTC)
    b, a = canonical(before), canonical(after)
    digest = entry_hash(prev, when, actor, action, entity, b, a)
    result = await conn.execute(A.insert().values(at=when, actor=actor, action=action, entity=entity, before=b,
                                                  after=a, prev_hash=prev, hash=digest))
    await _advance(conn, head, 1, digest, result.inserted_primary_key[0], when)
    return digest


async def append_many(conn: AsyncConnection, entries: list[dict[str, Any]], *, at: datetime | None = None) -> None:
    """Append several entries (each: actor, action, entity, before, after) in one statement, chained in order."""
    if not entries:
        return
    head = await _locked_head(conn)
    prev = head.hash
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
    await _advance(conn, head, len(rows), prev, await conn.scalar(select(func.max(A.c.id))), when)


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


async def verify(conn: AsyncConnection, *, anchor: Head | None = None) -> tuple[int, int | None, str | None]:
    """Walk the chain, then hold its end against the head (and against `anchor`, a head kept outside the
    database). Returns (entries checked, id of the first bad entry or None, why). A deleted entry shows as the
    next one's previous hash not matching; deleted last entries as the log ending before the head, named by
    their sequence numbers (1-based, gapless; ids may have gaps: PostgreSQL sequences skip on rollback)."""
    head = await read_head(conn)
    prev = GENESIS
    count = 0
    last_id: int | None = None
    wanted = {h.seq for h in (head, anchor) if h is not None}
    hash_at: dict[int, tuple[int, str]] = {0: (0, GENESIS)}
    for row in await conn.execute(select(A).order_by(A.c.id)):
        count += 1
        if row.prev_hash != prev:
            gap = f"after entry id {last_id} " if last_id is not None else ""
            return count, row.id, (f"previous hash does not match: entries {gap}before id {row.id} were removed, "
                                   "or an earlier entry was changed")
        if entry_hash(prev, row.at, row.actor, row.action, row.entity, row.before, row.after) != row.hash:
            return count, row.id, "hash does not match the entry's content (edited)"
        if row.entity.startswith(BATCH_PREFIX):
            batch = json.loads(row.after)
            if await matches_digest(conn, batch["first_id"], batch["last_id"]) != batch["digest"]:
                return count, row.id, (f"matches {batch['first_id']}..{batch['last_id']} differ from the digest this "
                                       "entry recorded (a match was edited or removed)")
        if count in wanted or (head is not None and count == head.seq + 1):
            hash_at[count] = (row.id, row.hash)
        prev, last_id = row.hash, row.id
    if anchor is not None and (problem := _against(anchor, "the anchored head", count, last_id, hash_at)):
        return count, *problem
    if head is None:
        return count, last_id or 0, f"the audit head (table audit_head) is missing; the log holds {count} entries"
    if problem := _against(head, "the head", count, last_id, hash_at):
        return count, *problem
    if count > head.seq:
        first = hash_at[head.seq + 1][0]
        return count, first, (f"entries {head.seq + 1}..{count} (from id {first}) are not in the head, which says "
                              f"{head.seq}: written around the audit log")
    return count, None, None


def _against(head: Head, name: str, count: int, last_id: int | None,
             hash_at: dict[int, tuple[int, str]]) -> tuple[int, str] | None:
    """Whether the log reaches `head` with the same hash there: (bad id, why) when not."""
    ends = f"the log ends at entry {count}" + (f" (id {last_id})" if last_id is not None else "")
    if count < head.seq:
        ids = [f"after id {last_id}"] if last_id is not None else []
        ids += [f"up to id {head.entry_id}"] if head.entry_id is not None else []
        ids_text = f" ({', '.join(ids)})" if ids else ""
        return (last_id or 0) + 1, (f"entries {count + 1}..{head.seq} are missing{ids_text}: {ends}, {name} is "
                                    f"entry {head.seq} ({head.hash[:16]}...)")
    entry_id, digest = hash_at[head.seq]
    if digest != head.hash:
        return entry_id, (f"entry {head.seq} (id {entry_id}) is not {name} ({head.hash[:16]}...): entries up to it "
                          "were replaced")
    return None


async def entries(conn: AsyncConnection, *, after: int = 0, limit: int = 100) -> list[dict]:
    rows = await conn.execute(select(A).where(A.c.id > after).order_by(A.c.id).limit(limit))
    return [dict(r) for r in rows.mappings()]
