"""/v1/breaks, /v1/matches and /v1/audit: the ops queue's resolutions, four-eyes approvals, and the audit log.

Scopes: `ops` reads breaks, resolves, reopens, matches and unmatches; `approver` approves write-offs (and reads
breaks); `admin` reads and verifies the audit log. The actor recorded is the key's name."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from app.access import Principal, Scope
from app.api.auth import AUTH, PROBLEMS, require
from app.api.break_schemas import (
    AuditPage,
    AuditVerification,
    AuditVerifyProgress,
    BreakDetail,
    BreakPage,
    BreakStatusOut,
    MatchCreated,
    MatchRemoved,
)
from app.api.limits import TOO_LARGE
from app.api.problems import problem_response
from app.api.records_routes import record_out
from app.api.routes import transfer_out
from app.api.schemas import (
    RECORD_KEY_EXAMPLE,
    RecordKey,
    amount_out,
    documented,
    examples,
    record_keys_out,
    token_ref,
)
from app.errors import NotFound
from app.persistence import audit, candidates_repo, recon_repo, records_repo, transfers_repo
from app.resolutions import ReasonCode, approve, classify, manual_match, reopen, unmatch
from app.settlement.model import BreakType
from app.settlement.severity import Severity
from app.suggestions import CANDIDATE_POOL, our_side, records_for, transfers_for
from app.wallet_book import wallet_book

router = APIRouter(prefix="/v1", responses=PROBLEMS)
READ = Depends(require(Scope.OPS, Scope.APPROVER))
OPS = Depends(require(Scope.OPS))
BreakId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a break's id")]
NO_BREAK = problem_response("no such break")
NDJSON = "application/x-ndjson"


class ResolveIn(BaseModel):
    reason: ReasonCode = Field(description="why the break needs no (further) match; the reasons in "
                                           "`recon.four_eyes_reasons` (default write_off, refund, other) wait "
                                           "for an approver")
    note: str = Field(min_length=1, max_length=4000, description="what was found, for the auditor")
    model_config = examples({"reason": "spam", "note": "address-poisoning dust from a look-alike address"})


class ReopenIn(BaseModel):
    reason: str = Field(min_length=1, max_length=4000, description="why, for the auditor")
    model_config = examples({"reason": "the customer disputes the refund; reviewing again"})


class MatchIn(BaseModel):
    transfer_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(min_length=1, max_length=50)
    record_keys: list[RecordKey] = Field(min_length=1, max_length=50)
    break_id: int | None = Field(None, ge=1, le=2**63 - 1, description="the break this match resolves, if any")
    model_config = examples({"transfer_ids": [1042], "record_keys": [RECORD_KEY_EXAMPLE], "break_id": 17})


def break_out(settings: Any, b: dict, now: datetime) -> dict[str, Any]:
    token = settings.token_at(b["chain_id"], b["token"])
    since = b["since"] or b["opened_at"]
    return {"id": b["id"], "type": b["type"], "status": b["status"], "severity": b["severity"],
            "token": None if b["token"] is None else token_ref(b["token"], token),
            **amount_out(b["amount"], token.decimals if token else None),
            "since": since, "age_seconds": int((now - since).total_seconds()), "due_at": b["due_at"],
            "overdue": b["status"] != "resolved" and b["due_at"] is not None and now > b["due_at"],
            "opened_at": b["opened_at"], "resolved_at": b["resolved_at"],
            "resolution": json.loads(b["resolution"]) if b["resolution"] else None,
            "transfer_ids": json.loads(b["transfer_ids"]),
            "record_keys": record_keys_out(b["record_keys"]),
            "facts": json.loads(b["facts"])}


@router.get("/breaks", dependencies=[READ], **documented(BreakPage, "a page of breaks", errors=AUTH))
async def list_breaks(
    request: Request,
    status: Annotated[str | None, Query(pattern="^(open|awaiting_approval|resolved)$")] = None,
    type: Annotated[BreakType | None, Query()] = None,  # noqa: A002 - the contract's name
    severity: Annotated[Severity | None, Query()] = None,
    older_than: Annotated[float | None, Query(ge=0, le=100_000, description="hours since the oldest item")] = None,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="the last id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Breaks, oldest id first, with severity, age and SLA due time; `next_after` pages on."""
    now = datetime.now(UTC)
    before = None if older_than is None else datetime.fromtimestamp(now.timestamp() - older_than * 3600, UTC)
    async with request.app.state.engine.connect() as conn:
        rows = await recon_repo.list_breaks(conn, status=status, kind=type.value if type else None,
                                            severity=severity.value if severity else None, since_before=before,
                                            after_id=after, limit=limit)
    items = [break_out(request.app.state.settings, b, now) for b in rows]
    return {"items": items, "next_after": rows[-1]["id"] if len(rows) == limit else None}


@router.get("/breaks/{break_id}", dependencies=[READ], **documented(
    BreakDetail, "the break with its items, their suggested counterparts, and its history",
    errors={**AUTH, 404: NO_BREAK}))
async def get_break(request: Request, break_id: BreakId) -> dict[str, Any]:
    """One break with its transfers and records (current versions), each with up to 3 suggested counterparts
    among the unexplained items on the same wallet and token (drawn from the 100 nearest in time), and its
    history."""

    settings, engine, now = request.app.state.settings, request.app.state.engine, datetime.now(UTC)
    ours = (await wallet_book(settings, engine)).our_wallets()
    async with engine.connect() as conn:
        b = await recon_repo.get_break(conn, break_id)
        if b is None:
            raise NotFound(f"break {break_id} not found")
        transfers = await transfers_repo.transfers_full(conn, json.loads(b["transfer_ids"]))
        statuses = await transfers_repo.recon_statuses(conn, [t["id"] for t in transfers])
        records = await records_repo.current_by_key(conn, [tuple(k) for k in json.loads(b["record_keys"])])
        history = await recon_repo.break_events(conn, break_id)
        free_r = await candidates_repo.free_records_near(conn, [
            (t["chain_id"], our_side(t, ours), t["token"], t["block_time"] or t["seen_at"]) for t in transfers],
            CANDIDATE_POOL // 2)
        free_t = await candidates_repo.free_transfers_near(conn, [
            (r["chain_id"], r["wallet"], r["token"], r["created_at"]) for r in records.values()],
            CANDIDATE_POOL // 2)
    own_t, own_r = {t["id"] for t in transfers}, set(records)
    free_r = [r for r in free_r if (r["source"], r["external_id"]) not in own_r]
    free_t = [t for t in free_t if t["id"] not in own_t]
    return {**break_out(settings, b, now),
            "transfers": [{**transfer_out(settings, t, statuses[t["id"]]).model_dump(),
                           "candidates": records_for(t, free_r, ours)} for t in transfers],
            "records": [{**record_out(settings, r), "candidates": transfers_for(r, free_t)}
                        for _, r in sorted(records.items())],
            "history": [{"action": e["action"], "actor": e["actor"], "at": e["at"],
                         "detail": json.loads(e["detail"]) if e["detail"] else None} for e in history]}


@router.post("/breaks/{break_id}/resolve", **documented(
    BreakStatusOut, "resolved, or awaiting approval (a write-off)",
    errors={**AUTH, **TOO_LARGE, 404: NO_BREAK, 409: problem_response("the break is not open")}))
async def resolve_break(request: Request, break_id: BreakId, body: ResolveIn,
                        caller: Annotated[Principal, OPS]) -> dict[str, Any]:
    """Classify a break with a reason code and a note. A reason needing four eyes becomes `awaiting_approval`."""
    return await classify(request.app.state.engine, break_id, reason=body.reason, note=body.note, actor=caller.name,
                          person=caller.person, approval_reasons=request.app.state.settings.recon.four_eyes_reasons)


@router.post("/breaks/{break_id}/approve", **documented(BreakStatusOut, "resolved", errors={
    **AUTH, 403: problem_response("the key lacks the `approver` scope, or its person proposed the resolution "
                                  "(four-eyes)"),
    404: NO_BREAK, 409: problem_response("not awaiting approval, or an item was matched meanwhile")}))
async def approve_break(request: Request, break_id: BreakId,
                        caller: Annotated[Principal, Depends(require(Scope.APPROVER))]) -> dict[str, Any]:
    """Approve a proposed resolution (a write-off, refund, ...): by a second person (a key held by another person
    than the one that proposed it), while none of the break's items was matched meanwhile."""
    return await approve(request.app.state.engine, break_id, actor=caller.name, person=caller.person)


@router.post("/breaks/{break_id}/reopen", **documented(BreakStatusOut, "open again", errors={
    **AUTH, **TOO_LARGE, 404: NO_BREAK,
    409: problem_response("already open, or an item of it is in another open break")}))
async def reopen_break(request: Request, break_id: BreakId, body: ReopenIn,
                       caller: Annotated[Principal, OPS]) -> dict[str, Any]:
    """Reopen a resolved break (or one awaiting approval): what its resolution did is undone (classifications
    revoked, a manual match removed), the reconciler decides its items again, and only a person resolves it."""
    return await reopen(request.app.state.engine, break_id, reason=body.reason, actor=caller.name)


@router.post("/matches", status_code=201, **documented(MatchCreated, "matched", status=201, errors={
    **AUTH, **TOO_LARGE, 404: problem_response("`break_id` names no break"),
    409: problem_response("an item is already matched")}))
async def create_match(request: Request, body: MatchIn, caller: Annotated[Principal, OPS]) -> dict[str, Any]:
    """Match transfers to records by hand, validated like an automatic match (chain, token, our side, exact
    sum); optionally resolving a break."""
    match_id = await manual_match(request.app.state.settings, request.app.state.engine,
                                  transfer_ids=body.transfer_ids,
                                  record_keys=[(k.source, k.external_id) for k in body.record_keys],
                                  actor=caller.name, break_id=body.break_id)
    return {"id": match_id}


@router.delete("/matches/{match_id}", **documented(MatchRemoved, "unmatched", errors={
    **AUTH, 404: problem_response("no active match with this id")}))
async def delete_match(request: Request, match_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
                       reason: Annotated[str, Query(min_length=1, max_length=4000, description="why (required)")],
                       caller: Annotated[Principal, OPS]) -> dict[str, Any]:
    """Unmatch: the match is kept as removed, and the reconciler will not make the same pair again."""
    await unmatch(request.app.state.engine, match_id, reason=reason, actor=caller.name)
    return {"id": match_id, "removed": True}


@router.get("/audit", dependencies=[Depends(require(Scope.ADMIN))],
            **documented(AuditPage, "a page of the audit log", errors=AUTH))
async def audit_entries(request: Request,
                        after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """The audit log in order, from after entry `after`; each entry carries the previous one's hash."""
    async with request.app.state.engine.connect() as conn:
        rows = await audit.entries(conn, after=after, limit=limit)
    items = [{**r, "before": json.loads(r["before"]) if r["before"] else None,
              "after": json.loads(r["after"]) if r["after"] else None} for r in rows]
    return {"items": items, "next_after": rows[-1]["id"] if rows else after}


@router.get("/audit/verify", dependencies=[Depends(require(Scope.ADMIN))], response_class=StreamingResponse,
            responses={**AUTH, 200: {"description": "NDJSON, streamed: a progress line per chunk of entries "
                                                    "checked, then the verdict (its last line)",
                                     "content": {NDJSON: {"schema": {"oneOf": [
                                         AuditVerifyProgress.model_json_schema(),
                                         AuditVerification.model_json_schema()]}}}}})
async def audit_verify(request: Request) -> StreamingResponse:
    """Walk the hash chain (and the batch digests) in chunks of `VERIFY_CHUNK` entries, each read on its own, and
    stream one JSON line per chunk (`checked`, `through_entry`), then the verdict naming the first bad entry:
    the log is never held in memory whole, and the client sees progress on a long log. The end is held against
    the audit head, as `settle audit verify` does."""
    engine = request.app.state.engine

    async def lines() -> AsyncIterator[bytes]:
        async with engine.connect() as conn:
            walk = audit.Walk(await audit.read_head(conn))
        while True:
            before = walk.position.checked
            async with engine.connect() as conn:
                done = await walk.step(conn)
            if walk.bad is None and walk.position.checked > before:
                yield _line({"checked": walk.position.checked, "through_entry": walk.position.last_id})
            if done:
                checked, bad, why = walk.result
                yield _line({"intact": bad is None, "entries": checked, "first_bad_entry": bad, "reason": why})
                return

    return StreamingResponse(lines(), media_type=NDJSON)



def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode() + b"\n"
