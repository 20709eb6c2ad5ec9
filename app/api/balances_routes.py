"""/v1/balances: treasury's view per (wallet, token), now or as of a past block or time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from app.access import Scope
from app.api import params
from app.api.auth import AUTH, PROBLEMS, require
from app.errors import BadRequest
from app.persistence import balances_repo
from app.settlement.amounts import format_units
from app.settlement.balances import Flows, roll_forward

router = APIRouter(prefix="/v1", responses=PROBLEMS)


def _amount(value: int | None, decimals: int) -> dict[str, str | None]:
    return {"amount": None if value is None else format_units(value, decimals),
            "amount_base_units": None if value is None else str(value)}


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


@router.get("/balances", dependencies=[Depends(require(Scope.TREASURY))], responses=AUTH)
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
    token_filter, wallet_filter = params.address("token", token), params.address("wallet", wallet)
    items: list[dict[str, Any]] = []
    totals: dict[tuple, dict[str, int]] = {}
    async with engine.connect() as conn:
        only = [wallet_filter] if wallet_filter else None
        checks = {(c["chain_id"], c["wallet"], c["token"]): c
                  for c in await balances_repo.latest_checks(conn, wallets=only)} if as_of is None else {}
        for c in settings.chains:
            if chain is not None and c.name != chain:
                continue
            wallets = [w for w in settings.wallets_on(c) if (wallet_filter is None or w.address == wallet_filter)
                       and (segregation is None or w.segregation == segregation)]
            for t in settings.tokens_on(c):
                if token_filter is not None and t.address != token_filter or not wallets:
                    continue
                openings = await balances_repo.opening_balances(conn, c.chain_id, t.address,
                                                                [w.address for w in wallets])
                first = {w.address: openings[w.address][0] + 1 if w.address in openings
                         else max(c.start_block, w.start_block or 0, t.start_block or 0) for w in wallets}
                flows_rows = await balances_repo.flows_by_state(conn, c.chain_id, t.address, first,
                                                                last_block=block, until=until)
                for w in wallets:
                    flows = Flows()
                    for state, incoming, amount in flows_rows.get(w.address, []):
                        flows.add(state, amount, incoming)
                    opening = openings.get(w.address)
                    view = roll_forward(opening[1] if opening else None, flows)
                    check = checks.get((c.chain_id, w.address, t.address)) if as_of is None else None
                    items.append({
                        "chain": c.name, "wallet": w.address, "label": w.label, "kind": w.kind,
                        "segregation": w.segregation,
                        "token": {"address": t.address, "symbol": t.symbol, "decimals": t.decimals},
                        "opening": None if opening is None else {"block_number": opening[0],
                                                                 **_amount(opening[1], t.decimals)},
                        "finalized": _amount(view.finalized, t.decimals),
                        "confirmed": _amount(view.confirmed, t.decimals),
                        "pending_in": _amount(view.pending_in, t.decimals),
                        "pending_out": _amount(view.pending_out, t.decimals),
                        "last_check": None if check is None else {
                            "onchain": _amount(check["onchain_balance"], t.decimals),
                            "indexed": _amount(check["indexed_balance"], t.decimals),
                            "difference": _amount(check["difference"], t.decimals),
                            "block_number": check["block_number"], "block_hash": check["block_hash"],
                            "checked_at": check["checked_at"]}})
                    for key in ((c.name, t.address, t.symbol, t.decimals, None),
                                (c.name, t.address, t.symbol, t.decimals, w.segregation)):
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
                               "finalized": _amount(v["finalized"], decimals),
                               "confirmed": _amount(v["confirmed"], decimals),
                               "pairs_without_opening_balance": v["without_opening"]}
        return out if seg is None else {**out, "segregation": seg}

    return {"as_of": as_of, "items": items,
            "totals_by_token": [total_out(k, v) for k, v in totals.items() if k[4] is None],
            "totals_by_segregation": [total_out(k, v) for k, v in totals.items() if k[4] is not None]}
