"""Indexed balances, opening balances and balance-check results."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import BalanceCheck, OpeningBalance, Transfer
from app.persistence.upsert import insert_for
from chains.types import TransferState

T = Transfer.__table__
OB = OpeningBalance.__table__
BC = BalanceCheck.__table__


async def indexed_flow(
    conn: AsyncConnection, chain_id: int, wallet: str, token: str, first_block: int, last_block: int
) -> int:
    """Sum of live (non-orphaned) transfers into `wallet` minus out of it, in base units, over
    [first_block, last_block]. Exact on both databases (SQLite sums in Python: its SUM() goes through floats)."""
    live = and_(T.c.chain_id == chain_id, T.c.token == token, T.c.state != TransferState.ORPHANED.value,
                T.c.block_number >= first_block, T.c.block_number <= last_block)
    if conn.dialect.name == "postgresql":
        incoming = await conn.scalar(select(func.coalesce(func.sum(T.c.amount), 0)).where(live,
                                                                                         T.c.recipient == wallet))
        outgoing = await conn.scalar(select(func.coalesce(func.sum(T.c.amount), 0)).where(live,
                                                                                         T.c.sender == wallet))
        return int(incoming) - int(outgoing)
    total = 0
    for amount in (await conn.execute(select(T.c.amount).where(live, T.c.recipient == wallet))).scalars():
        total += amount
    for amount in (await conn.execute(select(T.c.amount).where(live, T.c.sender == wallet))).scalars():
        total -= amount
    return total


async def opening_balance(conn: AsyncConnection, chain_id: int, wallet: str, token: str) -> tuple[int, int] | None:
    row = (await conn.execute(select(OB.c.block_number, OB.c.balance).where(
        OB.c.chain_id == chain_id, OB.c.wallet == wallet, OB.c.token == token))).first()
    return (row.block_number, row.balance) if row else None


async def save_opening_balance(
    conn: AsyncConnection, chain_id: int, wallet: str, token: str, block_number: int, balance: int
) -> None:
    stmt = insert_for(conn, OB).values(chain_id=chain_id, wallet=wallet, token=token, block_number=block_number,
                                       balance=balance)
    await conn.execute(stmt.on_conflict_do_nothing())


async def save_check(conn: AsyncConnection, **row: object) -> None:
    await conn.execute(BC.insert().values(**row))


async def latest_checks(conn: AsyncConnection, chain_id: int | None = None) -> list[dict]:
    """The most recent check per (chain, wallet, token)."""
    latest = select(BC.c.chain_id, BC.c.wallet, BC.c.token, func.max(BC.c.id).label("id")).group_by(
        BC.c.chain_id, BC.c.wallet, BC.c.token)
    if chain_id is not None:
        latest = latest.where(BC.c.chain_id == chain_id)
    sub = latest.subquery()
    rows = (await conn.execute(select(BC).join(sub, BC.c.id == sub.c.id).order_by(BC.c.chain_id, BC.c.wallet,
                                                                                   BC.c.token))).mappings()
    return [dict(r) for r in rows]


def check_row(
    chain_id: int, wallet: str, token: str, block_number: int, block_hash: str, opening: int, indexed: int,
    onchain: int, at: datetime,
) -> dict[str, object]:
    return {"chain_id": chain_id, "wallet": wallet, "token": token, "block_number": block_number,
            "block_hash": block_hash, "opening_balance": opening, "indexed_balance": indexed,
            "onchain_balance": onchain, "difference": onchain - indexed, "checked_at": at}
