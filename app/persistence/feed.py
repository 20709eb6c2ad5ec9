"""The core-recon feed: append-only events with a gap-free, commit-ordered `seq`.

Writers *stage* events while they work (`stage_*`, cheap: nothing is written) and `flush` them as the last
statements of their transaction; `transaction(engine)` does both. The flush locks the single `feed_head` row,
numbers the staged events from it, and moves it on. The lock is held until commit, so a second writer numbers its
events only after the first has committed: events become visible in `seq` order, and a reader that has passed a
`seq` never sees an event appear behind it. An aborted writer hands out nothing, so there are no gaps either.
The lock is taken last in every writer (after the audit log's), so the order of locks is always the same.

Events keep only what may change later about their entity; the rest is read from the entity when the feed is
served (a transfer's token, parties and amount never change; a match is append-only except its removal; a record
version is immutable). Bulk writers stage a whole set by a predicate (a chain's block range and the batch's
timestamp, a range of match ids): the events are written by one `INSERT ... SELECT`, never a row at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, case, event, func, insert, literal, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import SettleError
from app.persistence.audit import canonical
from app.persistence.tables import BreakRow, FeedEvent, FeedHead, MatchRow, RecordVersion, Transfer, TransferOrphaning
from app.persistence.types import BigInt, UTCDateTime

FE = FeedEvent.__table__
FH = FeedHead.__table__
T = Transfer.__table__
TO = TransferOrphaning.__table__
M = MatchRow.__table__
RV = RecordVersion.__table__
BR = BreakRow.__table__

TYPES = ("transfer.confirmed", "transfer.finalized", "transfer.orphaned", "record.ingested", "match.created",
         "match.removed", "break.opened", "break.resolved")
_KEY = "settle.feed"
_COLUMNS = ("seq", "type", "entity_id", "occurred_at", "recorded_at", "state", "block_number", "block_hash", "detail")


class FeedError(SettleError):
    """Events were staged but not flushed before commit: a writer bypassed `transaction()`."""


def _staged(conn: AsyncConnection) -> list[tuple[str, Any]]:
    return conn.info.setdefault(_KEY, [])  # type: ignore[no-any-return]


# ---- staging --------------------------------------------------------------------------------------------------------
def stage(conn: AsyncConnection, type_: str, entity_id: int, occurred_at: datetime | None, *,
          state: str | None = None, detail: Any = None) -> None:
    """One event about one entity."""
    _staged(conn).append(("row", {"type": type_, "entity_id": entity_id, "occurred_at": occurred_at,
                                  "state": state, "block_number": None, "block_hash": None,
                                  "detail": canonical(detail)}))


def stage_transfers(conn: AsyncConnection, chain_id: int, first_block: int, last_block: int, at: datetime) -> None:
    """Transfers of a chain between these blocks that this transaction confirmed or finalized (stamped `at`):
    `transfer.confirmed` or `transfer.finalized`, one event for the state reached. Several ranges staged with
    the same stamp are merged, so a transfer is never announced twice by one transaction."""
    staged = _staged(conn)
    for i, (kind, spec) in enumerate(staged):
        if kind == "transfers" and spec[0] == chain_id and spec[3] == at:
            staged[i] = (kind, (chain_id, min(spec[1], first_block), max(spec[2], last_block), at))
            return
    staged.append(("transfers", (chain_id, first_block, last_block, at)))


def stage_orphaned(conn: AsyncConnection, reorg_id: int, at: datetime) -> None:
    """`transfer.orphaned` for each transfer this reorg orphaned that had been announced (confirmed or
    finalized); a transfer only ever seen was never in the feed, so its orphaning is not either."""
    _staged(conn).append(("orphaned", (reorg_id, at)))


def stage_matches(conn: AsyncConnection, first_id: int, last_id: int) -> None:
    """`match.created` for every match with an id in this range (a bulk insert)."""
    _staged(conn).append(("matches", (first_id, last_id)))


# ---- writing --------------------------------------------------------------------------------------------------------
@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """`engine.begin()` that flushes the staged events as its last statements."""
    async with engine.begin() as conn:
        try:
            yield conn
        except BaseException:
            _drop_staged(conn.sync_connection)  # type: ignore[arg-type]
            raise
        await flush(conn)


async def flush(conn: AsyncConnection) -> int:
    """Number and write the staged events (under the head lock, held to commit). Returns how many."""
    staged = conn.info.pop(_KEY, None)
    if not staged:
        return 0
    base = await _lock_head(conn)
    first = base
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for kind, spec in staged:
        if kind == "row":
            base += 1
            rows.append({**spec, "seq": base, "recorded_at": now})
            continue
        if rows:
            await conn.execute(insert(FE), rows)
            rows = []
        await conn.execute(_bulk_insert(kind, spec, base, now))
        base = int(await conn.scalar(select(func.coalesce(func.max(FE.c.seq), 0))) or 0)
    if rows:
        await conn.execute(insert(FE), rows)
    if base != first:
        await conn.execute(update(FH).where(FH.c.id == 1).values(seq=base))
        if conn.dialect.name == "postgresql":
            # Readers see events as soon as they commit: a commit that a crash could still lose (the indexer's
            # batches turn synchronous commit off) would let a reader pass numbers that are then handed out again.
            await conn.exec_driver_sql("SET LOCAL synchronous_commit = on")
    return base - first


async def _lock_head(conn: AsyncConnection) -> int:
    locked = await conn.execute(update(FH).where(FH.c.id == 1).values(seq=FH.c.seq))
    if not locked.rowcount:  # a database created without the migration's row
        await conn.execute(text("INSERT INTO feed_head (id, seq) VALUES (1, 0) ON CONFLICT DO NOTHING"))
        await conn.execute(update(FH).where(FH.c.id == 1).values(seq=FH.c.seq))
    return int(await conn.scalar(select(FH.c.seq).where(FH.c.id == 1)) or 0)


def _bulk_insert(kind: str, spec: tuple, base: int, now: datetime):  # type: ignore[no-untyped-def,type-arg]
    recorded = literal(now, UTCDateTime())
    if kind == "transfers":
        chain_id, lo, hi, at = spec
        stamp = literal(at, UTCDateTime())
        finalized = and_(T.c.state == "finalized", T.c.finalized_at == stamp)
        confirmed = and_(T.c.state == "confirmed", T.c.confirmed_at == stamp)
        query = select(
            _numbered(base, T.c.block_number, T.c.log_index, T.c.id),
            case((T.c.state == "finalized", "transfer.finalized"), else_="transfer.confirmed"),
            T.c.id, T.c.block_time, recorded, T.c.state, T.c.block_number, T.c.block_hash, literal(None),
        ).where(T.c.chain_id == chain_id, T.c.block_number.between(lo, hi),
                T.c.state.in_(["confirmed", "finalized"]), or_(finalized, confirmed))
    elif kind == "orphaned":
        reorg_id, at = spec
        stamp = literal(at, UTCDateTime())
        query = select(_numbered(base, TO.c.id), literal("transfer.orphaned"), TO.c.transfer_id, stamp, recorded,
                       literal("orphaned"), TO.c.block_number, TO.c.block_hash, literal(None)
                       ).where(TO.c.reorg_id == reorg_id, TO.c.previous_state.in_(["confirmed", "finalized"]))
    elif kind == "matches":
        lo, hi = spec
        query = select(_numbered(base, M.c.id), literal("match.created"), M.c.id, M.c.created_at, recorded,
                       literal(None), literal(None), literal(None), literal(None)).where(M.c.id.between(lo, hi))
    else:
        raise FeedError(f"unknown staged kind {kind!r}")
    return insert(FE).from_select(list(_COLUMNS), query)


def _numbered(base: int, *order: Any) -> Any:
    return (literal(base, BigInt()) + func.row_number().over(order_by=order)).label("seq")


# ---- reading --------------------------------------------------------------------------------------------------------
async def head(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(FH.c.seq).where(FH.c.id == 1)) or 0)


def _joined():  # type: ignore[no-untyped-def]
    """Each event with what is shown of its entity, one LEFT JOIN per kind (the entity is found by primary key)."""
    def kind(prefix: str) -> Any:
        return FE.c.type.like(prefix + ".%")

    columns = [FE.c.seq, FE.c.type, FE.c.entity_id, FE.c.occurred_at, FE.c.recorded_at, FE.c.state,
               FE.c.block_number, FE.c.block_hash, FE.c.detail,
               T.c.chain_id.label("t_chain_id"), T.c.token.label("t_token"), T.c.sender.label("t_sender"),
               T.c.recipient.label("t_recipient"), T.c.amount.label("t_amount"), T.c.tx_hash.label("t_tx_hash"),
               T.c.log_index.label("t_log_index"),
               RV.c.body.label("v_body"), RV.c.actor.label("v_actor"), RV.c.ingested_at.label("v_ingested_at"),
               M.c.rule.label("m_rule"), M.c.rule_version.label("m_rule_version"),
               M.c.transfer_ids.label("m_transfer_ids"), M.c.record_keys.label("m_record_keys"),
               M.c.created_at.label("m_created_at"), M.c.created_by.label("m_created_by"),
               M.c.removed_at.label("m_removed_at"), M.c.removed_by.label("m_removed_by"),
               M.c.removed_reason.label("m_removed_reason"),
               BR.c.type.label("b_type"), BR.c.chain_id.label("b_chain_id"), BR.c.token.label("b_token"),
               BR.c.amount.label("b_amount"),
               BR.c.since.label("b_since"), BR.c.opened_at.label("b_opened_at"),
               BR.c.transfer_ids.label("b_transfer_ids"), BR.c.record_keys.label("b_record_keys"),
               BR.c.facts.label("b_facts")]
    source = (FE.outerjoin(T, and_(kind("transfer"), T.c.id == FE.c.entity_id))
              .outerjoin(RV, and_(kind("record"), RV.c.id == FE.c.entity_id))
              .outerjoin(M, and_(kind("match"), M.c.id == FE.c.entity_id))
              .outerjoin(BR, and_(kind("break"), BR.c.id == FE.c.entity_id)))
    return select(*columns).select_from(source)


_PAGE = _joined()
COLUMNS = SimpleNamespace(**{c.name: i for i, c in enumerate(_PAGE.selected_columns)})
"""Position of each column in a page's rows (`row[COLUMNS.m_rule]`): reading 5,000 rows by position instead of
by attribute saves a quarter of a page's time."""


async def page(conn: AsyncConnection, *, after: int, limit: int, types: Sequence[str] | None
               ) -> tuple[list[Any], int]:
    """Events after `after` in `seq` order, each with what is shown of its entity (columns prefixed `t_`, `v_`,
    `m_`, `b_` by kind; positions in `COLUMNS`), and where the next page starts.

    The head is read first: every event up to it has committed, so a short page moves the reader to the head even
    when `types` filtered events out (a reader of a rare type does not rescan what it has passed). Events past the
    head that committed meanwhile are left for the next page; they are dropped here, not in SQL, so that the
    planner sees the plain `seq > after ORDER BY seq LIMIT n`, which walks the primary key whatever its
    estimates (a range bound let stale statistics pick a bitmap scan and a sort of the whole tail)."""
    last = await head(conn)
    if conn.dialect.name == "postgresql":  # a few thousand key lookups: no parallel workers (10 ms to start)
        await conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
    query = _PAGE.where(FE.c.seq > after)
    if types:
        query = query.where(FE.c.type.in_(list(types)))
    result = await conn.execute(query.order_by(FE.c.seq).limit(limit))
    rows = [r for r in result if r[0] <= last]
    next_after = rows[-1][0] if len(rows) == limit else max(last, after)
    return rows, next_after


# ---- the guard ------------------------------------------------------------------------------------------------------
def install_guard(engine: AsyncEngine) -> None:
    """Refuse to commit staged events that were not flushed; drop them on rollback."""
    sync = engine.sync_engine
    if event.contains(sync, "commit", _refuse_unflushed):
        return
    event.listen(sync, "commit", _refuse_unflushed)
    event.listen(sync, "rollback", _drop_staged)


def _refuse_unflushed(conn: Connection) -> None:
    if conn.info.get(_KEY):
        conn.info.pop(_KEY, None)
        raise FeedError("feed events staged but not flushed: write through app.persistence.feed.transaction()")


def _drop_staged(conn: Connection) -> None:
    if conn.invalidated:  # the connection died (a server restart, a cancelled query): its staged events with it;
        return            # touching `info` now would raise and hide the error that killed it
    conn.info.pop(_KEY, None)


__all__ = ["TYPES", "FeedError", "flush", "head", "install_guard", "page", "stage", "stage_matches",
           "stage_orphaned", "stage_transfers", "transaction"]
