"""Balances per (wallet, token): opening balance + indexed flows rolled forward (the pure `app.settlement.balances`),
with the last balance check. One home for /v1/balances and /v1/wallets/{id}/status (rendered by
`app.api.balances_routes.line_out`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from app.persistence import balances_repo
from app.settings import ChainConfig, Settings, TokenConfig
from app.settlement.balances import BalanceView, Flows, roll_forward
from app.wallet_book import RegisteredWallet, WalletBook


@dataclass(frozen=True)
class BalanceLine:
    chain: ChainConfig
    wallet: RegisteredWallet
    token: TokenConfig
    opening: tuple[int, int] | None  # (block number, balance)
    view: BalanceView
    check: dict | None  # the last balance check (only for balances now)


@dataclass(frozen=True)
class BalanceQuery:
    chain: str | None = None
    token: str | None = None
    wallet: str | None = None
    segregation: str | None = None
    block: int | None = None  # as of this block, or
    until: datetime | None = None  # as of this block time


async def balance_lines(conn: AsyncConnection, settings: Settings, book: WalletBook, q: BalanceQuery
                        ) -> list[BalanceLine]:
    """Every registered wallet (active or not) x every token of its chain, filtered. A balance is None until a
    balance check has read the pair's opening balance, and as of a block (or time) before the pair's opening
    block: for a time, the opening block must be shown to be at or before it (`balances_repo.last_block_by`)."""
    now = q.block is None and q.until is None
    checks = {(c["chain_id"], c["wallet"], c["token"]): c
              for c in await balances_repo.latest_checks(conn, wallets=[q.wallet] if q.wallet else None)} \
        if now else {}
    lines: list[BalanceLine] = []
    for c in settings.chains:
        if q.chain is not None and c.name != q.chain:
            continue
        as_of = q.block if q.until is None else await balances_repo.last_block_by(conn, c.chain_id, q.until)
        candidates = book.wallets_on(c.chain_id) if q.wallet is None else [
            w for w in [book.find(c.chain_id, q.wallet)] if w is not None]
        wallets = [w for w in candidates if q.segregation is None or w.segregation == q.segregation]
        for t in settings.tokens_on(c):
            if q.token is not None and t.address != q.token or not wallets:
                continue
            openings = await balances_repo.opening_balances(conn, c.chain_id, t.address, [w.address for w in wallets])
            first = {w.address: openings[w.address][0] + 1 if w.address in openings
                     else max(c.start_block, w.start_block or 0, t.start_block or 0) for w in wallets}
            flows_rows = await balances_repo.flows_by_state(conn, c.chain_id, t.address, first,
                                                            last_block=q.block, until=q.until)
            for w in wallets:
                flows = Flows()
                for state, incoming, amount in flows_rows.get(w.address, []):
                    flows.add(state, amount, incoming)
                opening = openings.get(w.address)
                if opening is not None and not now and (as_of is None or opening[0] > as_of):
                    opening = None  # asked about a time before the pair's opening block: unknown, not the later one
                lines.append(BalanceLine(c, w, t, opening, roll_forward(opening[1] if opening else None, flows),
                                         checks.get((c.chain_id, w.address, t.address))))
    return lines
