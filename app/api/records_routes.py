"""/v1/records: ingest (all or nothing, up to 10,000 per request), list, and one record with its versions."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse

from app.access import Principal, Scope
from app.api.auth import AUTH, PROBLEMS, require
from app.api.problems import problem_response
from app.api.record_schemas import IngestCounts, RecordDetail, RecordPage
from app.api.schemas import amount_out, documented
from app.errors import NotFound
from app.persistence import records_repo
from app.records import ingest
from app.settlement.model import RecordStatus

router = APIRouter(prefix="/v1", responses=PROBLEMS)

EXAMPLE = [{"source": "core", "external_id": "dep-2026-000123", "kind": "deposit", "chain": "ethereum",
            "token": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "amount": "1250.50",
            "wallet": "0x28C6c06298d514Db089934071355E5743bf21d60", "segregation": "customer", "status": "completed",
            "reference": "cust-889", "created_at": "2026-11-27T09:15:00Z"}]


@router.post("/records", status_code=201, **documented(IngestCounts, "something new was recorded", status=201, errors={
    **AUTH, 200: {"model": IngestCounts, "description": "nothing new: every item was already recorded as sent"},
    409: problem_response("an immutable field differs; the problem names `items[i].field`, nothing written"),
    413: problem_response("more than 10,000 items, or a body over `api.max_body_bytes`"),
    422: problem_response("invalid items, nothing written; the problem names each `items[i].field`")}))
async def post_records(
    request: Request,
    items: Annotated[list[dict[str, Any]], Body(examples=[EXAMPLE])],
    caller: Annotated[Principal, Depends(require(Scope.INGEST))],
) -> JSONResponse:
    """Ingest records. Validated all or nothing; errors name `items[i].field` and the reason. The audit trail
    records the key's name as the actor."""
    counts = await ingest(request.app.state.settings, request.app.state.engine, items, actor=caller.name)
    return JSONResponse(counts, status_code=201 if counts["created"] or counts["updated"] else 200)


def record_out(settings: Any, r: dict) -> dict[str, Any]:
    """A record's current version as every view shows it (amount in token units and in base units)."""
    token = settings.token_at(r["chain_id"], r["token"])
    return {**{k: v for k, v in r.items() if k not in ("id", "amount")},
            **amount_out(r["amount"], token.decimals if token else None)}


@router.get("/records", dependencies=[Depends(require(Scope.OPS, Scope.INGEST))],
            **documented(RecordPage, "a page of records (current versions)", errors=AUTH))
async def list_records(
    request: Request,
    status: Annotated[RecordStatus | None, Query()] = None,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="`next_after` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Records' current versions in ingest order, optionally only those with `status`; `next_after` pages on."""
    async with request.app.state.engine.connect() as conn:
        rows = await records_repo.page_current(conn, status=status.value if status else None, after_id=after,
                                               limit=limit)
    return {"items": [record_out(request.app.state.settings, r) for r in rows],
            "next_after": rows[-1]["id"] if len(rows) == limit else None}


@router.get("/records/{source}/{external_id}", dependencies=[Depends(require(Scope.OPS, Scope.INGEST))],
            **documented(RecordDetail, "the record with its versions",
                         errors={**AUTH, 404: problem_response("no such record")}))
async def get_record(request: Request, source: str, external_id: str) -> dict:
    """One record: its current version and every version received, oldest first."""
    async with request.app.state.engine.connect() as conn:
        current = await records_repo.current_by_key(conn, [(source, external_id)])
        versions = await records_repo.versions(conn, source, external_id)
    if not current:
        raise NotFound(f"record {source}/{external_id} not found")
    return {**record_out(request.app.state.settings, current[(source, external_id)]),
            "versions": [{"version": v["version"], "actor": v["actor"], "ingested_at": v["ingested_at"],
                          "body": json.loads(v["body"])} for v in versions]}
