"""The SQL implementation of `chains.store.WatcherStore`: each write is one transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.persistence import audit, feed
from app.persistence.recon_repo import mark_range
from app.persistence.tables import Block, ChainStatus, Reorg, Transfer, TransferOrphaning, WatchTarget
from app.persistence.transfer_inserts import insert_transfers
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


CHECKPOINT_EVERY = 64
"""Below finality the block window keeps the blocks whose number is a multiple of this (anchors for a deep reorg)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


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

    async def window_hashes(self, chain_id: int, first: int, last: int) -> dict[int, str]:
        async with self.engine.connect() as conn:
            found = await conn.execute(select(B.c.number, B.c.hash).where(
                B.c.chain_id == chain_id, B.c.number >= first, B.c.number <= last))
            return {int(r.number): r.hash for r in found}

    async def stored_hashes(self, chain_id: int, first: int, last: int) -> list[tuple[int, str]]:
        blocks = select(B.c.number, B.c.hash).where(B.c.chain_id == chain_id, B.c.number >= first,
                                                    B.c.number <= last)
        transfers = select(T.c.block_number, T.c.block_hash).where(
            T.c.chain_id == chain_id, T.c.block_number >= first, T.c.block_number <= last,
            T.c.state != TransferState.ORPHANED.value)
        async with self.engine.connect() as conn:
            found = {(int(n), h) for n, h in await conn.execute(blocks.union(transfers))}
        return sorted(found, reverse=True)

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
        async with feed.transaction(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                # The batch and its cursor commit together, and re-indexing is idempotent: a server crash can
                # only lose whole recent batches, which the next run indexes again. So don't wait for the WAL
                # flush (this is not the business ledger; matches and resolutions keep synchronous commits),
                # unless the batch announces transfers to the feed: then the feed's flush turns it back on.
                await conn.execute(text("SET LOCAL synchronous_commit = off"))
            inserted = await insert_transfers(conn, transfers, marks, now)
            if transfers:
                lo, hi = min(t.block_number for t in transfers), max(t.block_number for t in transfers)
                await mark_range(conn, chain_id, lo, hi)
                feed.stage_transfers(conn, chain_id, lo, hi, now)
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

    async def promote(self, chain_id: int, marks: Marks, cursor: Cursor) -> None:
        async with feed.transaction(self.engine) as conn:
            await self._promote(conn, chain_id, marks, cursor, utcnow())

    async def _promote(
        self, conn: AsyncConnection, chain_id: int, marks: Marks, cursor: Cursor, now: datetime
    ) -> None:
        fin = min(marks.finalized, cursor.number)
        safe = min(marks.safe, cursor.number)
        live = T.c.state.in_([TransferState.SEEN.value, TransferState.CONFIRMED.value])
        lowest = await conn.scalar(select(func.min(T.c.block_number)).where(T.c.chain_id == chain_id, live))
        if lowest is not None and lowest <= max(fin, safe):
            await mark_range(conn, chain_id, int(lowest), max(fin, safe))  # the reconciler looks again
            feed.stage_transfers(conn, chain_id, int(lowest), max(fin, safe), now)
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
        # below finality one block in CHECKPOINT_EVERY stays: anchors for a deep reorg's fork point
        await conn.execute(delete(B).where(B.c.chain_id == chain_id, B.c.number < fin,
                                           B.c.number % CHECKPOINT_EVERY != 0))
        await conn.execute(update(CS).where(CS.c.chain_id == chain_id).values(
            head=marks.head, safe=marks.safe, finalized=marks.finalized, updated_at=now))

    async def rollback(self, chain_id: int, reorg: ReorgRecord) -> int:
        now = utcnow()
        above = and_(T.c.chain_id == chain_id, T.c.block_number > reorg.ancestor.number,
                     T.c.state != TransferState.ORPHANED.value)
        async with feed.transaction(self.engine) as conn:
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
            feed.stage_orphaned(conn, reorg_id, now)
            await mark_range(conn, chain_id, reorg.ancestor.number + 1, None)
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

    async def acknowledge_alert(self, chain_id: int, cursor: Cursor, *, actor: str, entity: str) -> bool:
        """An operator's decision: leave `alert` without a walk, because the node agrees with our cursor again.
        Conditional on the cursor being the one checked; audited in the same transaction."""
        now = utcnow()
        async with self.engine.begin() as conn:
            detail = await conn.scalar(select(CS.c.alert_detail).where(CS.c.chain_id == chain_id))
            result = await conn.execute(update(CS).where(
                CS.c.chain_id == chain_id, CS.c.state == ChainState.ALERT.value,
                CS.c.cursor_number == cursor.number, CS.c.cursor_hash == cursor.hash,
            ).values(state=ChainState.LIVE.value, alert_detail=None, allow_deep_reorg=False, updated_at=now))
            if not result.rowcount:
                return False
            await audit.append(conn, actor=actor, action="chain.alert_acknowledged", entity=entity, at=now,
                               before={"alert": detail}, after={"cursor": [cursor.number, cursor.hash]})
        return True

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
