"""The document's models of /v1/records (and of the records a break or a feed event shows). Documentation only:
the handlers return the stored rows as dicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.api.schemas import RECORD_KEY_EXAMPLE, examples
from app.settlement.model import RecordKind, RecordStatus
from wallets import Segregation

RECORD_CORE_EXAMPLE: dict[str, Any] = {
    **RECORD_KEY_EXAMPLE, "version": 1, "kind": "deposit", "chain_id": 1,
    "token": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "wallet": "0x28C6c06298d514Db089934071355E5743bf21d60",
    "counterparty": None, "tx_hash": None, "log_index": None, "reference": "cust-889", "segregation": "customer",
    "status": "completed", "created_at": "2026-11-27T09:15:00Z", "expected_by": None}
RECORD_EXAMPLE = {**RECORD_CORE_EXAMPLE, "ingested_at": "2026-11-27T09:15:02Z", "amount": "1250.5",
                  "amount_base_units": "1250500000"}


class RecordCore(BaseModel):
    """The fields of a record version as validated (addresses checksummed, times in UTC)."""

    source: str
    external_id: str
    version: int = Field(description="1, then one more for each change of a mutable field")
    kind: RecordKind
    chain_id: int
    token: str = Field(description="the token contract (checksummed)")
    wallet: str = Field(description="our wallet (checksummed)")
    counterparty: str | None
    tx_hash: str | None = Field(description="lower-case 0x-prefixed 32-byte hex")
    log_index: int | None
    reference: str | None
    segregation: Segregation
    status: RecordStatus
    created_at: datetime
    expected_by: datetime | None


class RecordOut(RecordCore):
    ingested_at: datetime = Field(description="when the current version was ingested")
    amount: str | None = Field(description="decimal string in token units; null if the token is not configured")
    amount_base_units: str = Field(description="exact integer in base units, as a string")
    model_config = examples(RECORD_EXAMPLE)


class RecordPage(BaseModel):
    items: list[RecordOut] = Field(description="in ingest order")
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")
    model_config = examples({"items": [RECORD_EXAMPLE], "next_after": None})


class RecordVersionBody(RecordCore):
    """A version as received and stored (canonical JSON)."""

    amount: str = Field(description="exact integer in base units, as a string")


class RecordVersion(BaseModel):
    version: int
    actor: str = Field(description="who sent it (the API key's name)")
    ingested_at: datetime
    body: RecordVersionBody


class RecordDetail(RecordOut):
    versions: list[RecordVersion] = Field(description="oldest first")
    model_config = examples({**RECORD_EXAMPLE, "versions": [{
        "version": 1, "actor": "ingest-core", "ingested_at": "2026-11-27T09:15:02Z",
        "body": {**RECORD_CORE_EXAMPLE, "amount": "1250500000"}}]})


class IngestCounts(BaseModel):
    created: int = Field(description="records new to this service")
    updated: int = Field(description="records with a new version (a mutable field changed)")
    unchanged: int = Field(description="records already recorded as sent")
    model_config = examples({"created": 1, "updated": 0, "unchanged": 0})
