"""Inserting transfers: the backfill hot path. Idempotent on (chain_id, tx_hash, log_index) among live rows; an
orphaned event seen again (a transaction re-mined after a reorg) is revived with its new observation only when its
content (token, sender, recipient, amount) is the same: a transaction re-mined behind or without another one has
its logs at other indexes, and what is now at an old index is another transfer. That one is inserted beside the
orphaned row, which keeps what was observed (the feed's past events read it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, exists, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import SettleError
from app.persistence.tables import Transfer
from app.persistence.upsert import insert_for
from chains.types import Marks, TransferLog, TransferState

T = Transfer.__table__


def state_for(block: int, marks: Marks) -> TransferState:
    if block <= marks.finalized:
        return TransferState.FINALIZED
    if block <= marks.safe:
        return TransferState.CONFIRMED
    return TransferState.SEEN


async def insert_transfers(
    conn: AsyncConnection, transfers: Sequence[TransferLog], marks: Marks, now: datetime
) -> int:
    """Insert new transfers; a row whose event (chain_id, tx_hash, log_index) is live is left alone; an orphaned
    row of that event with the same token, sender, recipient and amount is revived with the new observation;
    otherwise the transfer is a new row (the orphaned one stays as it was). Returns the rows inserted or revived
    (the batch size where the driver does not say).

    Hot path (backfill): rows are built once as tuples; PostgreSQL takes large batches by COPY into a temporary
    table then one INSERT ... SELECT ... ON CONFLICT, SQLite by a driver-level executemany. The first of
    several rows for one event wins, as it did with one statement per row."""
    if not transfers:
        return 0
    transfers, revived = await _revive_equal(conn, transfers, marks, now)
    if not transfers:
        return revived
    if conn.dialect.name == "postgresql" and len(transfers) >= _COPY_MIN_ROWS:
        return revived + await _copy_transfers(conn, _stage_rows(transfers, marks), now)
    rows = _transfer_rows(transfers, marks, now)
    if conn.dialect.name == "sqlite":
        return revived + await _executemany_transfers(conn, rows)
    stmt = insert_for(conn, T).on_conflict_do_nothing(
        index_elements=[T.c.chain_id, T.c.tx_hash, T.c.log_index], index_where=_LIVE)
    result = await conn.execute(stmt, [dict(zip(_COLUMNS, r, strict=True)) for r in rows])
    inserted = result.rowcount if result.rowcount is not None and result.rowcount >= 0 else len(rows)
    return revived + inserted


_ORPHANED_SQL = literal_column(f"'{TransferState.ORPHANED.value}'")  # a literal, so the partial indexes apply
_LIVE = T.c.state != _ORPHANED_SQL
_LOOKUP_CHUNK = 500


async def _revive_equal(
    conn: AsyncConnection, transfers: Sequence[TransferLog], marks: Marks, now: datetime
) -> tuple[Sequence[TransferLog], int]:
    """Revive the orphaned rows that these transfers observe again with the same content; returns the transfers
    left to insert and the number revived. Costs one indexed probe when the chain has no orphaned transfer."""
    chains = sorted({t.chain_id for t in transfers})
    orphaned = T.c.state == _ORPHANED_SQL
    if await conn.scalar(select(T.c.id).where(T.c.chain_id.in_(chains), orphaned).limit(1)) is None:
        return transfers, 0
    hashes = sorted({t.tx_hash for t in transfers})
    candidates: dict[tuple[Any, ...], int] = {}
    for i in range(0, len(hashes), _LOOKUP_CHUNK):
        found = await conn.execute(
            select(T.c.id, T.c.chain_id, T.c.tx_hash, T.c.log_index, T.c.token, T.c.sender, T.c.recipient,
                   T.c.amount).where(T.c.chain_id.in_(chains), orphaned, T.c.tx_hash.in_(hashes[i:i + _LOOKUP_CHUNK])))
        for r in found:
            candidates.setdefault((r.chain_id, r.tx_hash, r.log_index, r.token, r.sender, r.recipient, int(r.amount)),
                                  r.id)
    if not candidates:
        return transfers, 0
    per_block = _BlockValues(marks)
    revive: list[dict[str, Any]] = []
    taken: set[tuple[int, str, int]] = set()
    rest: list[TransferLog] = []
    for t in transfers:
        key = (t.chain_id, t.tx_hash, t.log_index)
        row_id = candidates.get((*key, t.token, t.sender, t.recipient, t.amount))
        if key in taken:
            continue  # the first of several observations of one event wins, as for inserts
        if row_id is None:
            rest.append(t)
            continue
        taken.add(key)
        state = per_block.state(t.block_number)
        revive.append({"row_id": row_id, "b_number": t.block_number, "b_hash": t.block_hash,
                       "b_time": per_block.time(t.block_time), "b_state": state.value, "b_seen": now,
                       "b_confirmed": now if state is not TransferState.SEEN else None,
                       "b_finalized": now if state is TransferState.FINALIZED else None})
    if not revive:
        return rest, 0
    live = T.alias("live")
    stmt = update(T).where(
        T.c.id == bindparam("row_id"), orphaned,
        ~exists().where(and_(live.c.chain_id == T.c.chain_id, live.c.tx_hash == T.c.tx_hash,
                             live.c.log_index == T.c.log_index, live.c.state != _ORPHANED_SQL)),
    ).values(block_number=bindparam("b_number"), block_hash=bindparam("b_hash"), block_time=bindparam("b_time"),
             state=bindparam("b_state"), seen_at=bindparam("b_seen"), confirmed_at=bindparam("b_confirmed"),
             finalized_at=bindparam("b_finalized"), orphaned_at=None)
    result = await conn.execute(stmt, revive)
    revived = result.rowcount if result.rowcount is not None and result.rowcount >= 0 else len(revive)
    return rest, revived


_COLUMNS = ("chain_id", "token", "sender", "recipient", "amount", "tx_hash", "log_index", "block_number",
            "block_hash", "block_time", "state", "seen_at", "confirmed_at", "finalized_at", "orphaned_at")
_ORPHANED, _SEEN, _FINALIZED = TransferState.ORPHANED.value, TransferState.SEEN.value, TransferState.FINALIZED.value
_ON_CONFLICT = f"ON CONFLICT (chain_id, tx_hash, log_index) WHERE state <> '{_ORPHANED}' DO NOTHING"
_SQLITE_INSERT = (f"INSERT INTO transfers ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
                  + _ON_CONFLICT)
_COPY_MIN_ROWS = 32
"""Below this many rows a PostgreSQL batch is one executemany: the staging table would cost more than it saves."""
_STAGE = "_transfers_stage"
# Fixed column types (asyncpg caches the COPY's column codecs by table name). Amounts travel as decimal text and are
# cast exactly to NUMERIC(78, 0); the per-batch timestamps are derived from the state in SQL, as state_for does.
# A fresh temporary table is scanned from its first page (no parallel or synchronized scans of local buffers), so
# INSERT ... SELECT keeps the batch's order and ids follow chain order as before.
_STAGE_DDL = (f"CREATE TEMPORARY TABLE {_STAGE} (chain_id BIGINT, token TEXT, sender TEXT, recipient TEXT, "
              "amount TEXT, tx_hash TEXT, log_index INTEGER, block_number BIGINT, block_hash TEXT, "
              "block_time TIMESTAMPTZ, state TEXT) ON COMMIT DROP")
_STAGE_COLUMNS = _COLUMNS[:11]
_STAGE_INSERT = (
    f"INSERT INTO transfers ({', '.join(_COLUMNS)}) SELECT chain_id, token, sender, recipient, "
    "CAST(amount AS NUMERIC(78, 0)), tx_hash, log_index, block_number, block_hash, block_time, state, "
    f"$1::timestamptz, CASE WHEN state <> '{_SEEN}' THEN $1::timestamptz END, "
    f"CASE WHEN state = '{_FINALIZED}' THEN $1::timestamptz END, NULL FROM {_STAGE} {_ON_CONFLICT}"
)


class _BlockValues:
    """Per-block values of a batch, computed once per block: the state and the block time as a UTC datetime."""

    def __init__(self, marks: Marks) -> None:
        self.marks = marks
        self._states: dict[int, TransferState] = {}
        self._times: dict[int, datetime] = {}

    def state(self, block: int) -> TransferState:
        if (state := self._states.get(block)) is None:
            state = self._states[block] = state_for(block, self.marks)
        return state

    def time(self, timestamp: int | None) -> datetime | None:
        if timestamp is None:
            return None
        if (value := self._times.get(timestamp)) is None:
            value = self._times[timestamp] = datetime.fromtimestamp(timestamp, UTC)
        return value


def _transfer_rows(transfers: Sequence[TransferLog], marks: Marks, now: datetime) -> list[tuple[Any, ...]]:
    """One tuple per transfer in `_COLUMNS` order, with the values the per-row statement always bound."""
    per_block = _BlockValues(marks)
    rows = []
    for t in transfers:
        state = per_block.state(t.block_number)
        rows.append((t.chain_id, t.token, t.sender, t.recipient, t.amount, t.tx_hash, t.log_index, t.block_number,
                     t.block_hash, per_block.time(t.block_time), state.value, now,
                     now if state is not TransferState.SEEN else None,
                     now if state is TransferState.FINALIZED else None, None))
    return rows


def _stage_rows(transfers: Sequence[TransferLog], marks: Marks) -> list[tuple[Any, ...]]:
    """Tuples in `_STAGE_COLUMNS` order, amounts as exact decimal text. Only the first transfer of an event is
    kept: one INSERT ... SELECT must not touch a row twice, and the per-row statements made the later ones no-ops
    (PostgreSQL checks the ON CONFLICT arbiter index before inserting into any other)."""
    per_block = _BlockValues(marks)
    seen: set[tuple[int, str, int]] = set()
    rows = []
    for t in transfers:
        key = (t.chain_id, t.tx_hash, t.log_index)
        if key in seen:
            continue
        seen.add(key)
        amount = t.amount
        if not isinstance(amount, int) or isinstance(amount, bool):  # as ExactInt refuses it
            raise TypeError(f"amounts are ints, got {type(amount).__name__}")
        rows.append((t.chain_id, t.token, t.sender, t.recipient, str(amount), t.tx_hash, t.log_index,
                     t.block_number, t.block_hash, per_block.time(t.block_time), per_block.state(t.block_number).value))
    return rows


async def _copy_transfers(conn: AsyncConnection, rows: list[tuple[Any, ...]], now: datetime) -> int:
    """PostgreSQL: COPY the rows into a transaction-local staging table, then one INSERT ... SELECT with the same
    ON CONFLICT clause as the per-row statement."""
    # The DDL goes through SQLAlchemy so that its transaction has begun on the driver before the raw COPY.
    await conn.exec_driver_sql(_STAGE_DDL)
    raw = (await conn.get_raw_connection()).driver_connection
    if not raw.is_in_transaction():
        raise SettleError("COPY of transfers outside the batch's transaction")
    await raw.copy_records_to_table(_STAGE, records=rows, columns=_STAGE_COLUMNS)
    status = await raw.execute(_STAGE_INSERT, now)
    await raw.execute(f"DROP TABLE {_STAGE}")
    return int(status.rsplit(" ", 1)[-1])


async def _executemany_transfers(conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> int:
    """SQLite: the same upsert as one driver-level executemany. Values go through the columns' own bind
    processors (amounts as decimal text, datetimes as naive UTC text), each distinct datetime converted once."""
    dialect = conn.dialect
    amount = T.c.amount.type.dialect_impl(dialect).bind_processor(dialect)
    when = T.c.seen_at.type.dialect_impl(dialect).bind_processor(dialect)
    texts: dict[datetime, Any] = {}

    def stamp(value: datetime | None) -> Any:
        if value is None or when is None:
            return value
        if (out := texts.get(value)) is None:
            out = texts[value] = when(value)
        return out

    params = [(*r[:4], amount(r[4]) if amount else r[4], *r[5:9], stamp(r[9]), r[10], stamp(r[11]),
               stamp(r[12]), stamp(r[13]), None) for r in rows]
    result = await conn.exec_driver_sql(_SQLITE_INSERT, params)
    return result.rowcount if result.rowcount is not None and result.rowcount >= 0 else len(rows)
