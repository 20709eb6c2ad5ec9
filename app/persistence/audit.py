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


VERIFY_CHUNK = 5_000
"""Entries read per query when the chain is walked: memory stays bounded however long the log grows."""


@dataclass(frozen=True)
class ChainPosition:
    """How far a walk of the chain has got: entries checked, and the last one's id and hash."""

    checked: int = 0
    last_id: int = 0
    last_hash: str = GENESIS


class Walk:
    """A verification of the chain, one chunk (`step`) at a time, each on any connection: the links and batch
    digests, then (`finish`) its end held against the head read when the walk began (and `anchor`, a head kept
    outside the database). A deleted entry shows as the next one's previous hash not matching; deleted last
    entries as the log ending before the head, named by their sequence numbers (1-based, gapless; ids may have
    gaps: PostgreSQL sequences skip on rollback). Entries appended while the walk runs are not a fault."""

    def __init__(self, head: Head | None, anchor: Head | None = None) -> None:
        self.head, self.anchor = head, anchor
        self.position = ChainPosition()
        self.bad: int | None = None
        self.why: str | None = None
        self._marks = {h.seq for h in (head, anchor) if h is not None}
        self._hash_at: dict[int, tuple[int, str]] = {0: (0, GENESIS)}

    @property
    def result(self) -> tuple[int, int | None, str | None]:
        return self.position.checked, self.bad, self.why

    async def step(self, conn: AsyncConnection) -> bool:
        """Check the next VERIFY_CHUNK entries; True when the walk is over (a fault, or the end of the log)."""
        limit = VERIFY_CHUNK
        at = self.position
        prev, count, last_id = at.last_hash, at.checked, at.last_id
        rows = (await conn.execute(select(A).where(A.c.id > at.last_id).order_by(A.c.id).limit(limit))).all()
        for row in rows:
            count += 1
            self.position = ChainPosition(count, row.id, prev)
            if row.prev_hash != prev:
                gap = f"after entry id {last_id} " if last_id else ""
                return self._fail(row.id, f"previous hash does not match: entries {gap}before id {row.id} were "
                                          "removed, or an earlier entry was changed")
            if entry_hash(prev, row.at, row.actor, row.action, row.entity, row.before, row.after) != row.hash:
                return self._fail(row.id, "hash does not match the entry's content (edited)")
            if row.entity.startswith(BATCH_PREFIX):
                batch = json.loads(row.after)
                if await matches_digest(conn, batch["first_id"], batch["last_id"]) != batch["digest"]:
                    return self._fail(row.id, f"matches {batch['first_id']}..{batch['last_id']} differ from the "
                                              "digest this entry recorded (a match was edited or removed)")
            if count in self._marks:
                self._hash_at[count] = (row.id, row.hash)
            prev, last_id = row.hash, row.id
        self.position = ChainPosition(count, last_id, prev)
        if len(rows) < limit:
            await self._finish(conn)
            return True
        return False

    def _fail(self, bad: int, why: str) -> bool:
        self.bad, self.why = bad, why
        return True

    async def _finish(self, conn: AsyncConnection) -> None:
        count, last_id = self.position.checked, self.position.last_id or None
        if self.anchor is not None and (problem := _against(self.anchor, "the anchored head", count, last_id,
                                                            self._hash_at)):
            self.bad, self.why = problem
            return
        if self.head is None:
            self.bad, self.why = last_id or 0, (f"the audit head (table audit_head) is missing; the log holds {count} "
                                                "entries")
            return
        if problem := _against(self.head, "the head", count, last_id, self._hash_at):
            self.bad, self.why = problem
            return
        now = await read_head(conn)  # the head as the walk ends: appends meanwhile moved it on
        if now is not None and count > now.seq:
            first = await conn.scalar(select(A.c.id).order_by(A.c.id).offset(now.seq).limit(1))
            self.bad, self.why = first, (f"entries {now.seq + 1}..{count} (from id {first}) are not in the head, "
                                         f"which says {now.seq}: written around the audit log")
        elif now is not None and count == now.seq and now.hash != self.position.last_hash:
            self.bad, self.why = last_id, (f"entry {count} (id {last_id}) is not the head ({now.hash[:16]}...)")


async def verify(conn: AsyncConnection, *, anchor: Head | None = None) -> tuple[int, int | None, str | None]:
    """The whole walk on one connection. Returns (entries checked, id of the first bad entry or None, why)."""
    walk = Walk(await read_head(conn), anchor)
    while not await walk.step(conn):
        pass
    return walk.result


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
