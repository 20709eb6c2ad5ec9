"""The document's models of /v1/breaks, /v1/matches and /v1/audit. Documentation only: the handlers return
dicts (see `break_out`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.record_schemas import RECORD_EXAMPLE, RecordOut
from app.api.schemas import (
    RECORD_CANDIDATE_EXAMPLE,
    TOKEN_EXAMPLE,
    TRANSFER_EXAMPLE,
    RecordCandidate,
    RecordKey,
    TokenRef,
    TransferOut,
    examples,
)
from app.settlement.model import BreakType
from app.settlement.severity import Severity

BreakStatus = Literal["open", "awaiting_approval", "resolved"]


class Resolution(BaseModel):
    """How a break was resolved: classified by ops (a write-off also names its approver), matched by hand, or
    explained by a later reconciler pass."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"by": "ops-alice", "action": "classify", "reason": "spam", "note": "address-poisoning dust"}]})
    by: str = Field(description="the API key's name, or `reconciler`")
    action: str | None = Field(None, description="classify | manual_match (absent: explained by the reconciler)")
    reason: str | None = Field(None, description="the reason code (or the reconciler's explanation)")
    note: str | None = None
    approved_by: str | None = Field(None, description="write-offs: the second person")
    approved_at: str | None = Field(None, description="write-offs: when approved (RFC 3339)")
    match_id: int | None = Field(None, description="manual_match: the match made")


class BreakCore(BaseModel):
    """What a break is, in GET /v1/breaks and in the feed's break events."""

    id: int
    type: BreakType
    status: BreakStatus
    amount: str | None = Field(description="the larger side, in token units; null if unknown")
    amount_base_units: str | None = Field(description="the larger side, exact, in base units")
    opened_at: datetime
    resolved_at: datetime | None
    resolution: Resolution | None
    transfer_ids: list[int]
    record_keys: list[RecordKey]
    facts: dict[str, Any] = Field(description="what the reconciler compared (depends on the type)")


BREAK_EXAMPLE = {
    "id": 17, "type": "unmatched_transfer", "status": "open", "severity": "medium", "token": TOKEN_EXAMPLE,
    "amount": "1250.5", "amount_base_units": "1250500000", "since": "2026-11-26T09:14:03Z", "age_seconds": 93600,
    "due_at": "2026-11-27T09:14:03Z", "overdue": True, "opened_at": "2026-11-26T10:14:05Z", "resolved_at": None,
    "resolution": None, "transfer_ids": [1042], "record_keys": [],
    "facts": {"reason": "no record within the window"}}


class BreakOut(BreakCore):
    severity: Severity
    token: TokenRef | None = Field(description="null if the break names no token (e.g. an ambiguous group)")
    since: datetime = Field(description="the oldest item's time: the break's age counts from it")
    age_seconds: int
    due_at: datetime | None = Field(description="the SLA's due time")
    overdue: bool = Field(description="unresolved past `due_at`")
    model_config = examples(BREAK_EXAMPLE)


class BreakPage(BaseModel):
    items: list[BreakOut] = Field(description="oldest id first")
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")
    model_config = examples({"items": [BREAK_EXAMPLE], "next_after": None})


class TransferCandidate(BaseModel):
    """An unexplained transfer suggested for a record: same wallet and token, closest in amount, then time."""

    id: int
    tx_hash: str
    state: str = Field(description="seen | confirmed | finalized | orphaned")
    amount_base_units: str
    amount_difference_base_units: str = Field(description="the transfer's amount minus the record's (signed)")
    block_time: datetime | None
    hours_from_created_at: float = Field(description="the transfer's time minus the record's, in hours")


BREAK_TRANSFER_EXAMPLE = {**TRANSFER_EXAMPLE, "recon_status": "unmatched", "candidates": [RECORD_CANDIDATE_EXAMPLE]}
BREAK_RECORD_EXAMPLE = {**RECORD_EXAMPLE, "candidates": []}


class BreakTransfer(TransferOut):
    """A transfer of the break, as GET /v1/transfers/{id} shows it, with suggested records."""

    candidates: list[RecordCandidate] = Field(description="up to 3 suggested records")
    model_config = examples(BREAK_TRANSFER_EXAMPLE)


class BreakRecord(RecordOut):
    """A record of the break, as GET /v1/records shows it (current version), with suggested transfers."""

    candidates: list[TransferCandidate] = Field(description="up to 3 suggested transfers")
    model_config = examples(BREAK_RECORD_EXAMPLE)


class BreakEvent(BaseModel):
    action: str = Field(description="opened | classified | approved | reopened | matched | auto_resolved")
    actor: str
    at: datetime
    detail: dict[str, Any] | None


class BreakDetail(BreakOut):
    transfers: list[BreakTransfer]
    records: list[BreakRecord] = Field(description="current versions")
    history: list[BreakEvent] = Field(description="oldest first")
    model_config = examples({
        **BREAK_EXAMPLE,
        "transfers": [BREAK_TRANSFER_EXAMPLE], "records": [BREAK_RECORD_EXAMPLE],
        "history": [{"action": "opened", "actor": "reconciler", "at": "2026-11-26T10:14:05Z", "detail": None}]})


class BreakStatusOut(BaseModel):
    id: int
    status: BreakStatus = Field(description="after the action")
    model_config = examples({"id": 17, "status": "resolved"}, {"id": 18, "status": "awaiting_approval"})


class MatchCreated(BaseModel):
    id: int = Field(description="the new match")
    model_config = examples({"id": 77})


class MatchRemoved(BaseModel):
    id: int
    removed: Literal[True]
    model_config = examples({"id": 77, "removed": True})


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str = Field(description="e.g. record.ingested, match.created, break.resolution, wallet.registered")
    entity: str = Field(description="kind:id, e.g. break:17")
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    prev_hash: str = Field(description="the previous entry's hash (the chain)")
    hash: str = Field(description="SHA-256 over this entry's canonical encoding and `prev_hash`")


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_after: int = Field(description="pass as `after` for the next page (`after` itself when nothing is new)")
    model_config = examples({"items": [{
        "id": 311, "at": "2026-11-26T10:20:00Z", "actor": "ops-alice", "action": "break.resolution",
        "entity": "break:17", "before": {"status": "open"},
        "after": {"status": "resolved", "by": "ops-alice", "action": "classify", "reason": "spam", "note": "dust"},
        "prev_hash": "9f2c5e0d4b3a29187f6e5d4c3b2a1908178f0d0ae5e3a8d4c5e1a4b1f3cd7b1a",
        "hash": "1b7c0e9d3a5f2e8b4c6d0a1f9e3b7c5d2a8f4e6b0c9d1a3f5e7b2c4d6a8f0e1b"}], "next_after": 311})


class AuditVerifyProgress(BaseModel):
    """A line of GET /v1/audit/verify's stream: how far the walk has got."""

    checked: int = Field(description="entries checked so far")
    through_entry: int = Field(description="the last entry checked")
    model_config = examples({"checked": 5000, "through_entry": 5000})


class AuditVerification(BaseModel):
    """The last line of GET /v1/audit/verify's stream."""

    intact: bool
    entries: int = Field(description="entries checked")
    first_bad_entry: int | None = Field(description="the first entry whose hash or link does not hold")
    reason: str | None
    # no nulls in the example: the stream's schema is inline, and FastAPI drops null members of inline examples
    model_config = examples({"intact": False, "entries": 312, "first_bad_entry": 312,
                             "reason": "hash does not match the entry's content (edited)"})
