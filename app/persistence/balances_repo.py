"""Indexed flows, opening balances and balance-check results."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import BalanceCheck, Block, OpeningBalance, Transfer
from app.persistence.upsert import insert_for
from chains.types import TransferState

T = Transfer.__table__
OB = OpeningBalance.__table__
BC = BalanceCheck.__table__
B = Block.__table__


async def net_flows(
    conn: AsyncConnection, chain_id: int, token: str, wallets: Collection[str], first_block: int, last_block: int
) -> dict[str, int]:
    """Per wallet: live (non-orphaned) transfers in minus out, in base units, over [first_block, last_block]."""
    flows = await flows_by_state(conn, chain_id, token, dict.fromkeys(wallets, first_block), last_block=last_block)
    return {wallet: sum(amount if incoming else -amount for _, incoming, amount in rows)
            for wallet, rows in flows.items()}


async def opening_balances(conn: AsyncConnection, chain_id: int, token: str,
                           wallets: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
    """{wallet: (block_number, balance)} for the token's pairs whose opening balance is known (of these
    wallets, if given)."""
    stmt = select(OB.c.wallet, OB.c.block_number, OB.c.balance).where(OB.c.chain_id == chain_id, OB.c.token == token)
    if wallets is not None and len(wallets) <= 1000:
        stmt = stmt.where(OB.c.wallet.in_(list(wallets)))
    return {r.wallet: (r.block_number, r.balance) for r in await conn.execute(stmt)}


async def save_opening_balances(
    conn: AsyncConnection, chain_id: int, token: str, balances: Sequence[tuple[str, int, int]]
) -> None:
    """(wallet, block_number, balance) rows; an existing opening balance is never overwritten."""
    if not balances:
        return
    rows = [{"chain_id": chain_id, "wallet": w, "token": token, "block_number": b, "balance": v}
            for w, b, v in balances]
    await conn.execute(insert_for(conn, OB).on_conflict_do_nothing(), rows)


async def save_checks(conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        await conn.execute(BC.insert(), list(rows))


async def latest_checks(conn: AsyncConnection, chain_id: int | None = None,
                        wallets: Sequence[str] | None = None) -> list[dict]:
    """The most recent check per (chain, wallet, token) (of these wallets, if given)."""
    latest = select(BC.c.chain_id, BC.c.wallet, BC.c.token, func.max(BC.c.id).label("id")).group_by(
        BC.c.chain_id, BC.c.wallet, BC.c.token)
    if chain_id is not None:
        latest = latest.where(BC.c.chain_id == chain_id)
    if wallets is not None and len(wallets) <= 1000:
        latest = latest.where(BC.c.wallet.in_(list(wallets)))
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


async def flows_by_state(conn: AsyncConnection, chain_id: int, token: str, first_block: dict[str, int], *,
                         last_block: int | None = None, until: datetime | None = None) -> dict[str, list[tuple]]:
    """Per wallet: (state, incoming, amount) totals of its live transfers of `token` from the wallet's first block
    (the block after its opening balance), up to `last_block` / block time `until` if given. Exact on both
    databases (SQLite sums in Python: its SUM() goes through floats)."""
    out: dict[str, list[tuple]] = defaultdict(list)
    by_first: dict[int, list[str]] = defaultdict(list)
    for wallet, first in first_block.items():
        by_first[first].append(wallet)
    for first, group in sorted(by_first.items()):
        where = [T.c.chain_id == chain_id, T.c.token == token, T.c.state != TransferState.ORPHANED.value,
                 T.c.block_number >= first]
        if last_block is not None:
            where.append(T.c.block_number <= last_block)
        if until is not None:
            where.append(T.c.block_time <= until)
        pg = conn.dialect.name == "postgresql"
        total = func.sum(T.c.amount) if pg else func.group_concat(T.c.amount)
        for i in range(0, len(group), 1000):
            chunk = group[i:i + 1000]
            sides = [select(column.label("wallet"), T.c.state, literal(incoming).label("incoming"),
                            total.label("total")).where(*where, column.in_(chunk)).group_by(column, T.c.state)
                     for column, incoming in ((T.c.recipient, True), (T.c.sender, False))]
            for address, state, incoming, amounts in await conn.execute(union_all(*sides)):  # one round trip
                amount = int(amounts) if pg else sum(int(x) for x in str(amounts).split(","))
                out[address].append((state, bool(incoming), amount))
    return dict(out)


async def last_block_by(conn: AsyncConnection, chain_id: int, until: datetime) -> int | None:
    """The highest block of the chain known to be at or before time `until`: from the stored block window and
    the live transfers' block times (block times never decrease along a chain). None if nothing stored shows
    one; a block above it may still be earlier, but nothing proves it."""
    by_block = select(func.max(B.c.number)).where(B.c.chain_id == chain_id, B.c.timestamp <= int(until.timestamp()))
    by_transfer = select(func.max(T.c.block_number)).where(
        T.c.chain_id == chain_id, T.c.state != TransferState.ORPHANED.value, T.c.block_time <= until)
    found = [await conn.scalar(by_block), await conn.scalar(by_transfer)]
    known = [int(n) for n in found if n is not None]
    return max(known) if known else None
