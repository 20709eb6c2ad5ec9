"""Balances per (wallet, token) as the API shows them: opening balance + indexed flows rolled forward (the pure
`app.settlement.balances`), with the last balance check. One home for /v1/balances and /v1/wallets/{id}/status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.api.schemas import amount_out, token_ref
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
    balance check has read the pair's opening balance."""
    now = q.block is None and q.until is None
    checks = {(c["chain_id"], c["wallet"], c["token"]): c
              for c in await balances_repo.latest_checks(conn, wallets=[q.wallet] if q.wallet else None)} \
        if now else {}
    lines: list[BalanceLine] = []
    for c in settings.chains:
        if q.chain is not None and c.name != q.chain:
            continue
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
                lines.append(BalanceLine(c, w, t, opening, roll_forward(opening[1] if opening else None, flows),
                                         checks.get((c.chain_id, w.address, t.address))))
    return lines


def line_out(line: BalanceLine) -> dict[str, Any]:
    w, t, view, opening, check = line.wallet, line.token, line.view, line.opening, line.check
    return {
        "chain": line.chain.name, "wallet": w.address, "wallet_id": w.id, "label": w.label, "kind": w.kind,
        "segregation": w.segregation, "active": w.active,
        "token": token_ref(t.address, t),
        "opening": None if opening is None else {"block_number": opening[0], **amount_out(opening[1], t.decimals)},
        "finalized": amount_out(view.finalized, t.decimals),
        "confirmed": amount_out(view.confirmed, t.decimals),
        "pending_in": amount_out(view.pending_in, t.decimals),
        "pending_out": amount_out(view.pending_out, t.decimals),
        "last_check": None if check is None else {
            "onchain": amount_out(check["onchain_balance"], t.decimals),
            "indexed": amount_out(check["indexed_balance"], t.decimals),
            "difference": amount_out(check["difference"], t.decimals),
            "block_number": check["block_number"], "block_hash": check["block_hash"],
            "checked_at": check["checked_at"]}}
