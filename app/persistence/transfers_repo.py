"""Queries over transfers for the API and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence.tables import (
    BreakLink,
    BreakRow,
    ChainStatus,
    MatchLink,
    Reorg,
    Transfer,
    TransferClassification,
    WalletRow,
)

T = Transfer.__table__
CS = ChainStatus.__table__
R = Reorg.__table__
ML = MatchLink.__table__
TC = TransferClassification.__table__
BL = BreakLink.__table__
BR = BreakRow.__table__
W = WalletRow.__table__

RECON_STATUSES = ("matched", "explained", "unmatched", "pending")
"""matched: an active match holds it; explained: classified (internal, noise, a person's reason) and not matched;
unmatched: neither, and an unresolved break names it; pending: none of these yet (inside its grace period, or not
yet reconciled)."""


def _matched():  # type: ignore[no-untyped-def]
    return exists().where(ML.c.transfer_id == T.c.id, ML.c.active.is_(True))


def _explained():  # type: ignore[no-untyped-def]
    return exists().where(TC.c.transfer_id == T.c.id, TC.c.revoked_at.is_(None))


def _in_break():  # type: ignore[no-untyped-def]
    return exists().where(BL.c.transfer_id == T.c.id, BL.c.break_id == BR.c.id, BR.c.status != "resolved")


def _recon_clause(status: str):  # type: ignore[no-untyped-def]
    if status == "matched":
        return _matched()
    if status == "explained":
        return and_(not_(_matched()), _explained())
    if status == "unmatched":
        return and_(not_(_matched()), not_(_explained()), _in_break())
    return and_(not_(_matched()), not_(_explained()), not_(_in_break()))


@dataclass(frozen=True)
class TransferQuery:
    chain_id: int | None = None
    token: str | None = None
    wallet: str | None = None
    state: str | None = None
    recon_status: str | None = None
    direction: str | None = None  # in | out | internal, relative to `wallet`, or else to the wallet registry
    since: datetime | None = None  # block time, inclusive
    until: datetime | None = None  # block time, exclusive
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
    if q.recon_status is not None:
        stmt = stmt.where(_recon_clause(q.recon_status))
    if q.direction is not None:
        stmt = stmt.where(_direction_clause(q))
    if q.since is not None:
        stmt = stmt.where(T.c.block_time >= q.since)
    if q.until is not None:
        stmt = stmt.where(T.c.block_time < q.until)
    rows = await conn.execute(stmt.order_by(T.c.id).limit(q.limit))
    return [dict(r) for r in rows.mappings()]


def _direction_clause(q: TransferQuery):  # type: ignore[no-untyped-def]
    if q.wallet is not None:
        to_us, from_us = T.c.recipient == q.wallet, T.c.sender == q.wallet
    else:  # the registry joined in SQL, on the transfer's own chain: no parameter per wallet (there may be 50,000)
        to_us = exists().where(W.c.chain_id == T.c.chain_id, W.c.address == T.c.recipient)
        from_us = exists().where(W.c.chain_id == T.c.chain_id, W.c.address == T.c.sender)
    return {"in": and_(to_us, not_(from_us)), "out": and_(from_us, not_(to_us)),
            "internal": and_(to_us, from_us)}[q.direction]  # type: ignore[index]


async def recon_statuses(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, str]:
    """The reconciliation status of each of these transfers (see RECON_STATUSES). Each lookup starts from the
    link table's transfer index: an EXISTS from `transfers` let the planner hash every open break's links."""
    if not ids:
        return {}
    wanted = list(ids)
    lookups = (
        ("unmatched", select(BL.c.transfer_id).join(BR, BR.c.id == BL.c.break_id)
         .where(BL.c.transfer_id.in_(wanted), BR.c.status != "resolved")),
        ("explained", select(TC.c.transfer_id).where(TC.c.transfer_id.in_(wanted), TC.c.revoked_at.is_(None))),
        ("matched", select(ML.c.transfer_id).where(ML.c.transfer_id.in_(wanted), ML.c.active.is_(True))),
    )
    out = dict.fromkeys(ids, "pending")
    for status, query in lookups:  # later wins: matched, then explained, then unmatched
        out.update(dict.fromkeys((i for (i,) in await conn.execute(query)), status))
    return out


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
