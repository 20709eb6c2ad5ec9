"""/v1/balances: treasury's view per (wallet, token), now or as of a past block or time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from app.access import Scope
from app.api import params
from app.api.auth import AUTH, PROBLEMS, require
from app.api.balance_schemas import Balances
from app.api.schemas import amount_out, documented, token_ref
from app.balance_views import BalanceLine, BalanceQuery, balance_lines
from app.errors import BadRequest
from app.wallet_book import wallet_book

router = APIRouter(prefix="/v1", responses=PROBLEMS)


def _as_of(value: str | None) -> tuple[int | None, datetime | None]:
    if value is None:
        return None, None
    if value.isascii() and value.isdigit():  # "²" is a digit to isdigit(), not to int()
        if int(value) >= 2**63:
            raise BadRequest("as_of", "block number out of range")
        return int(value), None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("as_of", "an RFC 3339 time with an offset (2026-11-27T09:00:00Z) or a block number") from None
    if at.tzinfo is None:
        raise BadRequest("as_of", "the time needs an offset, e.g. Z")
    return None, at


@router.get("/balances", dependencies=[Depends(require(Scope.TREASURY))],
            **documented(Balances, "balances per (wallet, token) and their totals", errors=AUTH))
async def balances(
    request: Request,
    chain: Annotated[str | None, Query(description="chain name")] = None,
    token: Annotated[str | None, Query(description="token contract address", pattern=params.ADDRESS)] = None,
    wallet: Annotated[str | None, Query(description="one of our wallets", pattern=params.ADDRESS)] = None,
    segregation: Annotated[str | None, Query(description="segregation class, e.g. customer")] = None,
    as_of: Annotated[str | None, Query(description="a block number, or an RFC 3339 time: the balances then",
                                       max_length=40)] = None,
) -> dict[str, Any]:
    """Per (wallet, token): finalized and confirmed balance (opening balance + indexed flows), pending in and
    out, and the last on-chain balance check with its difference; totals by token and by (token, segregation).
    A balance is null until a balance check has read the pair's opening balance (`settle balances check`)."""
    settings, engine = request.app.state.settings, request.app.state.engine
    block, until = _as_of(as_of)
    params.chain_id(settings, chain)  # an unknown chain is a 400 naming it
    query = BalanceQuery(chain=chain, token=params.address("token", token), wallet=params.address("wallet", wallet),
                         segregation=segregation, block=block, until=until)
    book = await wallet_book(settings, engine)
    async with engine.connect() as conn:
        lines = await balance_lines(conn, settings, book, query)
    totals: dict[tuple, dict[str, int]] = {}
    for line in lines:
        c, t, view = line.chain, line.token, line.view
        for key in ((c.name, t.address, t.symbol, t.decimals, None),
                    (c.name, t.address, t.symbol, t.decimals, line.wallet.segregation)):
            total = totals.setdefault(key, {"finalized": 0, "confirmed": 0, "without_opening": 0})
            if view.finalized is None or view.confirmed is None:
                total["without_opening"] += 1
            else:
                total["finalized"] += view.finalized
                total["confirmed"] += view.confirmed

    def total_out(key: tuple, v: dict[str, int]) -> dict[str, Any]:
        chain_name, address, symbol, decimals, seg = key
        out: dict[str, Any] = {"chain": chain_name, "token": {"address": address, "symbol": symbol,
                                                              "decimals": decimals},
                               "finalized": amount_out(v["finalized"], decimals),
                               "confirmed": amount_out(v["confirmed"], decimals),
                               "pairs_without_opening_balance": v["without_opening"]}
        return out if seg is None else {**out, "segregation": seg}

    return {"as_of": as_of, "items": [line_out(line) for line in lines],
            "totals_by_token": [total_out(k, v) for k, v in totals.items() if k[4] is None],
            "totals_by_segregation": [total_out(k, v) for k, v in totals.items() if k[4] is not None]}


def line_out(line: BalanceLine) -> dict[str, Any]:
    """A balance line as /v1/balances and /v1/wallets/{id}/status show it."""
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
