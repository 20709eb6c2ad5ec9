"""The SQL implementation of `chains.store.WatcherStore`: each write is one transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import SettleError
from app.persistence.tables import Block, ChainStatus, Reorg, Transfer, TransferOrphaning, WatchTarget
from app.persistence.upsert import insert_for
from chains.types import (
    BlockHeader,
    ChainState,
    Cursor,
    Marks,
    ReorgRecord,
    Target,
    TransferLog,
    TransferState,
)
from wallets import Address

T = Transfer.__table__
B = Block.__table__
CS = ChainStatus.__table__
WT = WatchTarget.__table__
R = Reorg.__table__
TO = TransferOrphaning.__table__


def utcnow() -> datetime:
    return datetime.now(UTC)


def _state_for(block: int, marks: Marks) -> TransferState:
    if block <= marks.finalized:
        return TransferState.FINALIZED
    if block <= marks.safe:
        return TransferState.CONFIRMED
    return TransferState.SEEN


class SqlWatcherStore:
    """Watcher persistence over an AsyncEngine (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def ensure_chain(self, chain_id: int, name: str) -> None:
        async with self.engine.begin() as conn:
            stmt = insert_for(conn, CS).values(chain_id=chain_id, name=name, state=ChainState.SYNCING.value,
                                               allow_deep_reorg=False, updated_at=utcnow())
            await conn.execute(stmt.on_conflict_do_update(index_elements=[CS.c.chain_id], set_={"name": name}))

    async def load_cursor(self, chain_id: int) -> Cursor | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(CS.c.cursor_number, CS.c.cursor_hash).where(CS.c.chain_id == chain_id))
                   ).first()
        if row is None or row.cursor_number is None:
            return None
        return Cursor(row.cursor_number, row.cursor_hash)

    async def load_state(self, chain_id: int) -> tuple[ChainState, bool]:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(CS.c.state, CS.c.allow_deep_reorg).where(CS.c.chain_id == chain_id))
                   ).first()
        if row is None:
            return ChainState.SYNCING, False
        return ChainState(row.state), bool(row.allow_deep_reorg)

    async def load_targets(self, chain_id: int) -> list[Target]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(WT).where(WT.c.chain_id == chain_id))).all()
        return [Target(r.kind, Address(r.address), r.start_block, r.synced_to, bool(r.joined)) for r in rows]

    async def save_targets(self, chain_id: int, targets: Sequence[Target]) -> None:
        async with self.engine.begin() as conn:
            await self._save_targets(conn, chain_id, targets)

    async def _save_targets(self, conn: AsyncConnection, chain_id: int, targets: Sequence[Target]) -> None:
        if not targets:
            return
        rows = [{"chain_id": chain_id, "kind": t.kind, "address": t.address, "start_block": t.start_block,
                 "synced_to": t.synced_to, "joined": t.joined} for t in targets]
        stmt = insert_for(conn, WT)
        stmt = stmt.on_conflict_do_update(
            index_elements=[WT.c.chain_id, WT.c.kind, WT.c.address],
            set_={"synced_to": stmt.excluded.synced_to, "joined": stmt.excluded.joined},
        )
        await conn.execute(stmt, rows)

    async def window_hash(self, chain_id: int, number: int) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.scalar(select(B.c.hash).where(B.c.chain_id == chain_id, B.c.number == number))

    async def commit_batch(
        self,
        chain_id: int,
        transfers: Sequence[TransferLog],
        blocks: Sequence[BlockHeader],
        cursor: Cursor | None,
        marks: Marks,
        targets: Sequence[Target] = (),
    ) -> int:
        now = utcnow()
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # The batch and its cursor commit together, and re-indexing is idempotent: a server crash can
                # only lose whole recent batches, which the next run indexes again. So don't wait for the WAL
                # flush (this is not the business ledger; matches and resolutions keep synchronous commits).
                await conn.execute(text("SET LOCAL synchronous_commit = off"))
            inserted = await self._insert_transfers(conn, transfers, marks, now)
            if blocks:
                rows = [{"chain_id": chain_id, "number": b.number, "hash": b.hash, "parent_hash": b.parent_hash,
                         "timestamp": b.timestamp} for b in blocks]
                stmt = insert_for(conn, B)
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[B.c.chain_id, B.c.number],
                        set_={"hash": stmt.excluded.hash, "parent_hash": stmt.excluded.parent_hash,
                              "timestamp": stmt.excluded.timestamp},
                    ),
                    rows,
                )
            if cursor is not None:
                await conn.execute(update(CS).where(CS.c.chain_id == chain_id).values(
                    cursor_number=cursor.number, cursor_hash=cursor.hash, updated_at=now))
                await self._promote(conn, chain_id, marks, cursor, now)
            await self._save_targets(conn, chain_id, targets)
        return inserted

    async def _insert_transfers(
        self, conn: AsyncConnection, transfers: Sequence[TransferLog], marks: Marks, now: datetime
    ) -> int:
        """Insert new transfers; a row whose event (chain_id, tx_hash, log_index) exists is left alone unless it
        is orphaned, in which case it is revived with the new observation. Returns the rows inserted or revived
        (the batch size where the driver does not say).

        Hot path (backfill): rows are built once as tuples; PostgreSQL takes large batches by COPY into a temporary
        table then one INSERT ... SELECT ... ON CONFLICT, SQLite by a driver-level executemany. The first of
        several rows for one event wins, as it did with one statement per row."""
        if not transfers:
            return 0
        if conn.dialect.name == "postgresql" and len(transfers) >= _COPY_MIN_ROWS:
            return await _copy_transfers(conn, _stage_rows(transfers, marks), now)
        rows = _transfer_rows(transfers, marks, now)
        if conn.dialect.name == "sqlite":
            return await _executemany_transfers(conn, rows)
        stmt = insert_for(conn, T)
        stmt = stmt.on_conflict_do_update(
            index_elements=[T.c.chain_id, T.c.tx_hash, T.c.log_index],
            set_={c: getattr(stmt.excluded, c) for c in _REVIVED},
            where=T.c.state == TransferState.ORPHANED.value,
        )
        result = await conn.execute(stmt, [dict(zip(_COLUMNS, r, strict=True)) for r in rows])
        return result.rowcount if result.rowcount is not None and result.rowcount >= 0 else len(rows)

    async def promote(self, chain_id: int, marks: Marks, cursor: Cursor) -> None:
        async with self.engine.begin() as conn:
            await self._promote(conn, chain_id, marks, cursor, utcnow())

    async def _promote(
        self, conn: AsyncConnection, chain_id: int, marks: Marks, cursor: Cursor, now: datetime
    ) -> None:
        fin = min(marks.finalized, cursor.number)
        safe = min(marks.safe, cursor.number)
        live = T.c.state.in_([TransferState.SEEN.value, TransferState.CONFIRMED.value])
        await conn.execute(
            update(T)
            .where(T.c.chain_id == chain_id, live, T.c.block_number <= fin)
            .values(state=TransferState.FINALIZED.value, finalized_at=now,
                    confirmed_at=func.coalesce(T.c.confirmed_at, now))
        )
        await conn.execute(
            update(T)
            .where(T.c.chain_id == chain_id, T.c.state == TransferState.SEEN.value, T.c.block_number <= safe)
            .values(state=TransferState.CONFIRMED.value, confirmed_at=now)
        )
        await conn.execute(delete(B).where(B.c.chain_id == chain_id, B.c.number < fin))
        await conn.execute(update(CS).where(CS.c.chain_id == chain_id).values(
            head=marks.head, safe=marks.safe, finalized=marks.finalized, updated_at=now))

    async def rollback(self, chain_id: int, reorg: ReorgRecord) -> int:
        now = utcnow()
        above = and_(T.c.chain_id == chain_id, T.c.block_number > reorg.ancestor.number,
                     T.c.state != TransferState.ORPHANED.value)
        async with self.engine.begin() as conn:
            reorg_id = (await conn.execute(R.insert().values(
                chain_id=chain_id, depth=reorg.depth, ancestor_number=reorg.ancestor.number,
                ancestor_hash=reorg.ancestor.hash, old_head_number=reorg.old_head.number,
                old_head_hash=reorg.old_head.hash, new_head_number=reorg.new_head.number,
                new_head_hash=reorg.new_head.hash, deep=reorg.deep, detected_at=now,
            ).returning(R.c.id))).scalar_one()
            await conn.execute(TO.insert().from_select(
                ["transfer_id", "reorg_id", "chain_id", "block_number", "block_hash", "log_index",
                 "previous_state", "orphaned_at"],
                select(T.c.id, literal(reorg_id), T.c.chain_id, T.c.block_number, T.c.block_hash, T.c.log_index,
                       T.c.state, literal(now, type_=T.c.orphaned_at.type)).where(above),
            ))
            orphaned = (await conn.execute(
                update(T).where(above).values(state=TransferState.ORPHANED.value, orphaned_at=now))).rowcount
            await conn.execute(update(R).where(R.c.id == reorg_id).values(orphaned=orphaned))
            await conn.execute(delete(B).where(B.c.chain_id == chain_id, B.c.number > reorg.ancestor.number))
            await conn.execute(update(WT).where(
                WT.c.chain_id == chain_id, WT.c.joined.is_(False), WT.c.synced_to > reorg.ancestor.number,
            ).values(synced_to=reorg.ancestor.number))
            values: dict[str, Any] = {"cursor_number": reorg.ancestor.number, "cursor_hash": reorg.ancestor.hash,
                                      "updated_at": now}
            if reorg.deep:
                values |= {"state": ChainState.LIVE.value, "allow_deep_reorg": False, "alert_detail": None}
            await conn.execute(update(CS).where(CS.c.chain_id == chain_id).values(**values))
        return int(orphaned)

    async def set_alert(self, chain_id: int, detail: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(CS).where(CS.c.chain_id == chain_id).values(
                state=ChainState.ALERT.value, alert_detail=detail, last_error=detail, last_error_at=utcnow()))

    async def allow_deep_reorg(self, chain_id: int) -> bool:
        """An operator's decision: let the next reorg roll back below finality (recorded as deep)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(update(CS).where(
                CS.c.chain_id == chain_id, CS.c.state == ChainState.ALERT.value).values(allow_deep_reorg=True))
        return bool(result.rowcount)

    async def record_status(
        self, chain_id: int, *, marks: Marks | None, state: ChainState | None, error: str | None,
        endpoints: list[dict] | None = None,
    ) -> None:
        now = utcnow()
        values: dict[str, Any] = {"updated_at": now}
        if marks is not None:
            values |= {"head": marks.head, "safe": marks.safe, "finalized": marks.finalized}
        if error is not None:
            values |= {"last_error": error, "last_error_at": now}
        if endpoints is not None:
            values["endpoints"] = json.dumps(endpoints)
        async with self.engine.begin() as conn:
            where = [CS.c.chain_id == chain_id]
            if state is not None:
                # never leave the alert state by a status report: only a resolved reorg does
                await conn.execute(update(CS).where(*where, CS.c.state != ChainState.ALERT.value).values(
                    state=state.value))
            await conn.execute(update(CS).where(*where).values(**values))


# ---- transfer inserts (the backfill hot path) ----------------------------------------------------------------------
_COLUMNS = ("chain_id", "token", "sender", "recipient", "amount", "tx_hash", "log_index", "block_number",
            "block_hash", "block_time", "state", "seen_at", "confirmed_at", "finalized_at", "orphaned_at")
_REVIVED = ("block_number", "block_hash", "block_time", "state", "seen_at", "confirmed_at", "finalized_at",
            "orphaned_at", "token", "sender", "recipient", "amount")
_ORPHANED, _SEEN, _FINALIZED = TransferState.ORPHANED.value, TransferState.SEEN.value, TransferState.FINALIZED.value
_ON_CONFLICT = ("ON CONFLICT (chain_id, tx_hash, log_index) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in _REVIVED) + f" WHERE transfers.state = '{_ORPHANED}'")
_SQLITE_INSERT = (f"INSERT INTO transfers ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
                  + _ON_CONFLICT)
_COPY_MIN_ROWS = 32
"""Below this many rows a PostgreSQL batch is one executemany: the staging table would cost more than it saves."""
_STAGE = "_transfers_stage"
# Fixed column types (asyncpg caches the COPY's column codecs by table name). Amounts travel as decimal text and are
# cast exactly to NUMERIC(78, 0); the per-batch timestamps are derived from the state in SQL, as _state_for did.
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
            state = self._states[block] = _state_for(block, self.marks)
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
