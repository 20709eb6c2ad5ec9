"""The /v1 routes: health, chains, transfers. Handlers translate HTTP <-> repositories, nothing more."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.access import Scope
from app.api import params
from app.api.auth import AUTH, PROBLEMS, require
from app.api.problems import problem_response
from app.api.schemas import (
    ChainOut,
    HealthOut,
    LoopHealth,
    TransferOut,
    TransferPage,
    UnmatchedPage,
    amount_out,
    documented,
    token_ref,
)
from app.errors import BadRequest, NotFound
from app.persistence import candidates_repo, recon_repo
from app.persistence import transfers_repo as repo
from app.settings import Settings
from app.suggestions import CANDIDATE_POOL, our_side, records_for
from app.supervision import ChainReport, Supervisor, health_problems, watcher_loop
from app.wallet_book import wallet_book
from chains.redaction import redact_url
from chains.types import ChainState, TransferState

router = APIRouter(prefix="/v1", responses=PROBLEMS)
LAG_DEGRADED = 50


def _ctx(request: Request) -> tuple[Settings, AsyncEngine]:
    return request.app.state.settings, request.app.state.engine


async def _chains(settings: Settings, engine: AsyncEngine) -> list[ChainOut]:
    async with engine.connect() as conn:
        rows = {r["chain_id"]: r for r in await repo.chain_statuses(conn)}
    out = []
    for chain in settings.chains:
        r = rows.get(chain.chain_id, {})
        head, cursor = r.get("head"), r.get("cursor_number")
        endpoints = json.loads(r["endpoints"]) if r.get("endpoints") else [{"url": redact_url(u)} for u in chain.urls]
        out.append(ChainOut(
            name=chain.name, chain_id=chain.chain_id, state=r.get("state", "not started"), head=head,
            indexed=cursor, indexed_hash=r.get("cursor_hash"), safe=r.get("safe"), finalized=r.get("finalized"),
            lag=(head - cursor) if head is not None and cursor is not None else None,
            alert=r.get("alert_detail"), last_error=r.get("last_error"), last_error_at=r.get("last_error_at"),
            updated_at=r.get("updated_at"), endpoints=endpoints,
        ))
    return out


@router.get("/health", response_model=HealthOut, responses={503: {
    "model": HealthOut, "description": "a chain is in alert (a reorg below finality), or the database cannot be read"}})
async def health(request: Request) -> JSONResponse:
    """Per-chain lag and state, and this process's supervised loops. `degraded` when a chain is not live or lags,
    has not reported within a few poll intervals, or failed its last poll; or when a loop or job of this process
    is failing or has not succeeded within a few of its intervals: `problems` names which. 503 when a chain is in
    `alert`, or the database cannot be read (`unavailable`)."""
    supervisor: Supervisor = request.app.state.supervisor
    loops = [LoopHealth(**{k: getattr(loop, k) for k in LoopHealth.model_fields}) for loop in
             supervisor.loops.values()]
    try:
        chains = await _chains(*_ctx(request))
    except (SQLAlchemyError, OSError) as exc:
        body = HealthOut(status="unavailable", chains=[], problems=[f"database: {type(exc).__name__}"], loops=loops)
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    settings = request.app.state.settings
    problems = [f"chain {c.name}: {c.state}" + (f", lag {c.lag}" if c.lag is not None else "") for c in chains
                if c.state != ChainState.LIVE or c.lag is None or c.lag > LAG_DEGRADED]
    problems += health_problems(supervisor, [
        ChainReport(c.name, settings.chain(c.name).poll_interval, c.updated_at, c.last_error, c.last_error_at,
                    watcher_loop(c.name)) for c in chains if c.state != ChainState.ALERT])
    status = "alert" if any(c.state == ChainState.ALERT for c in chains) else "degraded" if problems else "ok"
    body = HealthOut(status=status, chains=[
        {"name": c.name, "chain_id": c.chain_id, "state": c.state, "lag": c.lag, "last_error": c.last_error}
        for c in chains], problems=problems, loops=loops)  # type: ignore[misc]
    return JSONResponse(body.model_dump(mode="json"), status_code=503 if status == "alert" else 200)


@router.get("/chains", response_model=list[ChainOut], dependencies=[Depends(require())], responses=AUTH)
async def chains(request: Request) -> list[ChainOut]:
    """Head, indexed block, safe and finalized marks, lag, state, last error and (redacted) RPC endpoints."""
    return await _chains(*_ctx(request))


def _decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        return int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except ValueError:
        raise BadRequest("cursor", "not a cursor returned by this endpoint") from None


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


@router.get("/transfers", response_model=TransferPage, dependencies=[Depends(require(Scope.TREASURY, Scope.OPS))],
            responses=AUTH)
async def transfers(
    request: Request,
    chain: Annotated[str | None, Query(description="chain name")] = None,
    token: Annotated[str | None, Query(description="token contract address", pattern=params.ADDRESS)] = None,
    wallet: Annotated[str | None, Query(description="our wallet address (either side)", pattern=params.ADDRESS)] = None,
    state: Annotated[TransferState | None, Query()] = None,
    recon_status: Annotated[ReconStatus | None, Query(description="matched, explained (classified), unmatched "
                                                                  "(an open break names it) or pending")] = None,
    direction: Annotated[Direction | None, Query(description="in, out or internal: relative to `wallet` if "
                                                             "given, else to all our wallets")] = None,
    since: Annotated[datetime | None, Query(description="block time from (inclusive), RFC 3339 with offset")]
    = None,
    until: Annotated[datetime | None, Query(description="block time until (exclusive), RFC 3339 with offset")]
    = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TransferPage:
    """Indexed transfers in a stable order, keyset-paginated, each with its reconciliation status."""
    settings, engine = _ctx(request)
    chain_id = params.chain_id(settings, chain)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise BadRequest(name, "the time needs an offset, e.g. Z")
    query = repo.TransferQuery(
        chain_id=chain_id,
        token=params.address("token", token),
        wallet=params.address("wallet", wallet),
        state=state.value if state else None,
        recon_status=recon_status.value if recon_status else None,
        direction=direction.value if direction else None,
        since=since, until=until,
        after_id=_decode_cursor(cursor),
        limit=limit,
    )
    async with engine.connect() as conn:
        rows = await repo.list_transfers(conn, query)
        statuses = await repo.recon_statuses(conn, [r["id"] for r in rows])
    items = [transfer_out(settings, r, statuses[r["id"]]) for r in rows]
    next_cursor = _encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
    return TransferPage(items=items, next_cursor=next_cursor)


@router.get("/transfers/unmatched", dependencies=[Depends(require(Scope.OPS))],
            **documented(UnmatchedPage, "a page of the queue", errors=AUTH))
async def unmatched_transfers(
    request: Request,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict:
    """The ops queue: confirmed transfers no record explains (open `unmatched_transfer` breaks), oldest first,
    with age, severity, SLA due time, and up to 3 suggested records: unexplained records on the same wallet and
    token, closest in amount, then in time, among the 100 nearest in time."""
    settings, engine = _ctx(request)
    after = _decode_queue_cursor(cursor)
    now = datetime.now(UTC)
    ours = (await wallet_book(settings, engine)).our_wallets()
    async with engine.connect() as conn:
        rows = await recon_repo.unmatched_queue(conn, after=after, limit=limit)
        records = await candidates_repo.free_records_near(conn, [
            (r["chain_id"], our_side(r, ours), r["token"], r["block_time"] or r["seen_at"]) for r in rows],
            CANDIDATE_POOL // 2)
    items = [{"break_id": r["break_id"], "severity": r["severity"],
              "age_seconds": int((now - (r["since"] or r["block_time"] or r["seen_at"])).total_seconds()),
              "due_at": r["due_at"], "overdue": r["due_at"] is not None and now > r["due_at"],
              "transfer": transfer_out(settings, r, "unmatched").model_dump(mode="json"),
              "candidates": records_for(r, records, ours)} for r in rows]
    last = rows[-1] if len(rows) == limit else None
    next_cursor = base64.urlsafe_b64encode(f"{last['since'].isoformat()}|{last['break_id']}".encode()).decode() \
        if last else None
    return {"items": items, "next_cursor": next_cursor}


@router.get("/transfers/{transfer_id}", response_model=TransferOut,
            dependencies=[Depends(require(Scope.TREASURY, Scope.OPS))],
            responses={**AUTH, 404: problem_response("no such transfer")})
async def transfer(request: Request, transfer_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> TransferOut:
    """One transfer, whatever its state (orphaned ones are kept)."""
    settings, engine = _ctx(request)
    async with engine.connect() as conn:
        rows = await repo.transfers_full(conn, [transfer_id])
        statuses = await repo.recon_statuses(conn, [transfer_id])
    if not rows:
        raise NotFound(f"transfer {transfer_id} not found")
    return transfer_out(settings, rows[0], statuses[transfer_id])


def _decode_queue_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if cursor is None:
        return None
    try:
        since, break_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        at, number = datetime.fromisoformat(since), int(break_id)
        if at.tzinfo is None or not 0 <= number < 2**63:
            raise ValueError
        return at, number
    except ValueError:
        raise BadRequest("cursor", "not a cursor returned by this endpoint") from None


class ReconStatus(StrEnum):
    MATCHED = "matched"
    EXPLAINED = "explained"
    UNMATCHED = "unmatched"
    PENDING = "pending"


class Direction(StrEnum):
    IN = "in"
    OUT = "out"
    INTERNAL = "internal"


def transfer_out(settings: Settings, r: dict, recon_status: str | None = None) -> TransferOut:
    chain = settings.chain_by_id(r["chain_id"])
    token = settings.token_at(r["chain_id"], r["token"])
    decimals = token.decimals if token else None
    return TransferOut(
        id=r["id"], chain=chain.name if chain else str(r["chain_id"]), chain_id=r["chain_id"],
        token=token_ref(r["token"], token),  # type: ignore[arg-type]
        sender=r["sender"], recipient=r["recipient"],
        **amount_out(r["amount"], decimals), tx_hash=r["tx_hash"], log_index=r["log_index"],
        block_number=r["block_number"], block_hash=r["block_hash"], block_time=r["block_time"],
        state=r["state"], seen_at=r["seen_at"], confirmed_at=r["confirmed_at"], finalized_at=r["finalized_at"],
        orphaned_at=r["orphaned_at"], recon_status=recon_status,
    )
