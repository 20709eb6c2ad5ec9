"""/v1/wallets: the wallet registry. `admin` registers and changes wallets; `treasury` (and `admin`) reads them
and a wallet's status: balances, recent transfers, open breaks, gas. Every write is audited with the key's name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from app.access import Principal, Scope
from app.api import params
from app.api.auth import AUTH, PROBLEMS, require
from app.api.balances_routes import line_out
from app.api.breaks_routes import break_out
from app.api.limits import TOO_LARGE
from app.api.problems import problem_response
from app.api.routes import transfer_out
from app.api.schemas import amount_out, documented
from app.api.wallet_schemas import WALLET_EXAMPLE, GasOut, WalletList, WalletOut, WalletStatusOut
from app.balance_views import BalanceQuery, balance_lines
from app.errors import BadRequest, NotFound
from app.persistence import recon_repo, transfers_repo
from app.settings import Settings
from app.wallet_book import RegisteredWallet, wallet_book
from app.wallet_registry import change_wallet, gas_balance, register_wallet
from wallets import Segregation, WalletKind

router = APIRouter(prefix="/v1", responses=PROBLEMS)
READ = Depends(require(Scope.TREASURY, Scope.ADMIN))
WalletId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a wallet's id")]
RECENT_TRANSFERS = 20
NATIVE_DECIMALS = 18
NO_WALLET = problem_response("no such wallet")


class WalletIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        k: WALLET_EXAMPLE[k] for k in ("chain", "address", "label", "kind", "segregation", "start_block")}]})
    chain: StrictStr = Field(min_length=1, max_length=100, description="a configured chain's name")
    address: StrictStr = Field(pattern=params.ADDRESS, description="mixed case must carry a valid EIP-55 checksum")
    label: StrictStr = Field(min_length=1, max_length=200)
    kind: WalletKind
    segregation: Segregation
    start_block: StrictInt | None = Field(None, ge=0, le=2**63 - 1, description="indexing of the wallet starts "
                                                                               "here; null: the chain's start")


class WalletPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"label": "deposit-0042-old",
                                                                               "active": False}]})
    label: StrictStr | None = Field(None, min_length=1, max_length=200)
    kind: WalletKind | None = None
    segregation: Segregation | None = None
    active: StrictBool | None = Field(None, description="false: stop indexing new blocks for the wallet")

    @field_validator("label", "kind", "segregation", "active", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null (leave the field out to keep its value)")
        return value


def wallet_out(settings: Settings, w: RegisteredWallet) -> WalletOut:
    chain = settings.chain_by_id(w.chain_id)
    return WalletOut(id=w.id, chain=chain.name if chain else None, chain_id=w.chain_id, address=w.address,
                     label=w.label, kind=w.kind, segregation=w.segregation, start_block=w.start_block,
                     active=w.active, source=w.source, created_at=w.created_at, created_by=w.created_by,
                     updated_at=w.updated_at)


@router.get("/wallets", response_model=WalletList, dependencies=[READ], responses=AUTH)
async def list_wallets(
    request: Request,
    chain: Annotated[str | None, Query(description="chain name")] = None,
    active: Annotated[bool | None, Query(description="only active (true) or inactive (false) wallets")] = None,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="the last id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> WalletList:
    """Registered wallets in id order: from the configuration (`source: config`) and the API; `next_after` pages
    on (null on the last page)."""
    settings = request.app.state.settings
    chain_id = params.chain_id(settings, chain)
    book = await wallet_book(settings, request.app.state.engine)
    chosen = [w for w in book.all() if chain_id in (None, w.chain_id) and active in (None, w.active)
              and (after is None or w.id > after)]
    page = sorted(chosen, key=lambda w: w.id)[:limit]
    return WalletList(items=[wallet_out(settings, w) for w in page],
                      next_after=page[-1].id if len(page) == limit and len(chosen) > limit else None)


@router.post("/wallets", status_code=201, response_model=WalletOut,
             responses={**AUTH, **TOO_LARGE, 409: problem_response("the wallet is already registered on that chain")})
async def post_wallet(request: Request, body: WalletIn,
                      caller: Annotated[Principal, Depends(require(Scope.ADMIN))]) -> WalletOut:
    """Register a wallet. The chain's watcher picks it up at its next poll and indexes it from `start_block`
    (its own backfill), then follows it with the others."""
    settings = request.app.state.settings
    chain_id = params.chain_id(settings, body.chain)
    address = params.address("address", body.address)
    wallet = await register_wallet(settings, request.app.state.engine, chain_id=chain_id,  # type: ignore[arg-type]
                                   address=address, label=body.label, kind=body.kind,  # type: ignore[arg-type]
                                   segregation=body.segregation, start_block=body.start_block, actor=caller.name)
    return wallet_out(settings, wallet)


@router.patch("/wallets/{wallet_id}", response_model=WalletOut,
              responses={**AUTH, **TOO_LARGE, 404: NO_WALLET})
async def patch_wallet(request: Request, wallet_id: WalletId, body: Annotated[WalletPatch, Body()],
                       caller: Annotated[Principal, Depends(require(Scope.ADMIN))]) -> WalletOut:
    """Change a wallet's label, kind, segregation or active flag (only the fields sent). The registry is the
    truth from then on: the configuration does not overwrite it on restart."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise BadRequest("body", "nothing to change: send label, kind, segregation or active")
    wallet = await change_wallet(request.app.state.engine, wallet_id, changes, actor=caller.name)
    return wallet_out(request.app.state.settings, wallet)


@router.get("/wallets/{wallet_id}/status", dependencies=[READ], **documented(
    WalletStatusOut, "the wallet's balances, recent transfers, open breaks and gas", errors={**AUTH, 404: NO_WALLET}))
async def wallet_status(request: Request, wallet_id: WalletId) -> dict[str, Any]:
    """One wallet now: balances per token (as GET /v1/balances), its last 20 transfers newest first (as GET
    /v1/transfers), the unresolved breaks touching it (as GET /v1/breaks), and its native gas balance at the
    latest block (null with an `error` when the chain's RPC fails)."""
    settings, engine, now = request.app.state.settings, request.app.state.engine, datetime.now(UTC)
    book = await wallet_book(settings, engine)
    wallet = book.get(wallet_id)
    if wallet is None:
        raise NotFound(f"wallet {wallet_id} not found")
    chain = next((c for c in settings.chains if c.chain_id == wallet.chain_id), None)
    async with engine.connect() as conn:
        lines = await balance_lines(conn, settings, book, BalanceQuery(chain=chain.name, wallet=wallet.address)) \
            if chain else []
        transfers = await transfers_repo.recent_of_wallet(conn, wallet.chain_id, wallet.address, RECENT_TRANSFERS)
        statuses = await transfers_repo.recon_statuses(conn, [t["id"] for t in transfers])
        breaks = await recon_repo.open_breaks_of_wallet(conn, wallet.chain_id, wallet.address)
    gas, error = await gas_balance(chain, wallet.address) if chain else (None, "the chain is not configured")
    return {"wallet": wallet_out(settings, wallet), "balances": [line_out(line) for line in lines],
            "transfers": [transfer_out(settings, t, statuses[t["id"]]) for t in transfers],
            "open_breaks": [break_out(settings, b, now) for b in breaks],
            "gas": GasOut(**amount_out(gas, NATIVE_DECIMALS), error=error)}
