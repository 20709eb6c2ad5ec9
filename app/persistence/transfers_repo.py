"""Queries over transfers for the API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import ChainStatus, Reorg, Transfer

T = Transfer.__table__
CS = ChainStatus.__table__
R = Reorg.__table__


@dataclass(frozen=True)
class TransferQuery:
    chain_id: int | None = None
    token: str | None = None
    wallet: str | None = None
    state: str | None = None
    after_id: int = 0
    limit: int = 100


async def list_transfers(conn: AsyncConnection, q: TransferQuery) -> list[dict]:
    """Keyset page of transfers ordered by id (stable under inserts), `limit` rows after `after_id`."""
    stmt = select(T).where(T.c.id > q.after_id)
    if q.chain_id is not None:
        stmt = stmt.where(T.c.chain_id == q.chain_id)
    if q.token is not None:
        stmt = stmt.where(T.c.token == q.token)
    if q.wallet is not None:
        stmt = stmt.where(or_(T.c.sender == q.wallet, T.c.recipient == q.wallet))
    if q.state is not None:
        stmt = stmt.where(T.c.state == q.state)
    rows = await conn.execute(stmt.order_by(T.c.id).limit(q.limit))
    return [dict(r) for r in rows.mappings()]


async def recent_of_wallet(conn: AsyncConnection, chain_id: int, wallet: str, limit: int) -> list[dict]:
    """The wallet's last `limit` transfers (either side, any state), newest block first."""
    stmt = (select(T).where(T.c.chain_id == chain_id, or_(T.c.sender == wallet, T.c.recipient == wallet))
            .order_by(T.c.block_number.desc(), T.c.log_index.desc(), T.c.id.desc()).limit(limit))
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def chain_statuses(conn: AsyncConnection) -> list[dict]:
    return [dict(r) for r in (await conn.execute(select(CS).order_by(CS.c.chain_id))).mappings()]


async def reorgs(conn: AsyncConnection, chain_id: int) -> list[dict]:
    rows = await conn.execute(select(R).where(R.c.chain_id == chain_id).order_by(R.c.id))
    return [dict(r) for r in rows.mappings()]


async def transfers_full(conn: AsyncConnection, ids: list[int]) -> list[dict]:
    """Transfers with every column, by id."""
    rows = await conn.execute(select(T).where(T.c.id.in_(ids)).order_by(T.c.id))
    return [dict(r) for r in rows.mappings()]
