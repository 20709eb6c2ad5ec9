"""Response models shared by the routers: tokens, amounts, record keys, transfers, chains, health.

Amounts are a decimal string in token units plus the exact integer `amount_base_units` (a string: up to 2**256-1).
Times are RFC 3339. Every model carries an example; the hot endpoints return plain dicts that FastAPI dumps as
they are, and these models describe them in the OpenAPI document only (see `documented`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, Field, WithJsonSchema

from app.settings import TokenConfig
from app.settlement.amounts import format_units

USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
TOKEN_EXAMPLE = {"address": USDC, "symbol": "USDC", "decimals": 6}
RECORD_KEY_EXAMPLE = {"source": "core", "external_id": "dep-2026-000123"}


def usdc(base_units: int) -> dict[str, str]:
    """An example amount pair in USDC (6 decimals)."""
    return {"amount": format_units(base_units, 6), "amount_base_units": str(base_units)}


def examples(*values: dict[str, Any]) -> dict[str, Any]:
    """A model's `model_config` carrying its examples (shown by /docs, checked against the schema by the tests)."""
    return {"json_schema_extra": {"examples": list(values)}}


def documented(model: Any, description: str, *, status: int = 200, errors: dict[int | str, dict] | None = None
               ) -> dict[str, Any]:
    """Route keyword arguments that document `model` as the success response without FastAPI validating the
    handler's dict through it: `response_model=Any` dumps what the handler returns as it is (the same bytes as
    the `dict` return annotation did, and cheaper), and the document shows `model`."""
    return {"response_model": Any,
            "responses": {status: {"model": model, "description": description}, **(errors or {})}}


class TokenRef(BaseModel):
    address: str = Field(description="the token contract (EIP-55 checksummed)")
    symbol: str | None = Field(description="null if the token is no longer configured")
    decimals: int | None = Field(description="null if the token is no longer configured (then `amount` is null)")
    model_config = examples(TOKEN_EXAMPLE)


def amount_out(value: int | None, decimals: int | None) -> dict[str, str | None]:
    """An amount as every view shows it: a decimal string in token units (null when the amount or the token's
    decimals are unknown) and the exact base units (null when the amount is)."""
    return {"amount": None if value is None or decimals is None else format_units(value, decimals),
            "amount_base_units": None if value is None else str(value)}


def token_ref(address: str, token: TokenConfig | None) -> dict[str, Any]:
    """A token as every view names it (symbol and decimals null if it is no longer configured)."""
    return {"address": address, "symbol": token.symbol if token else None,
            "decimals": token.decimals if token else None}


class Amount(BaseModel):
    amount: str = Field(description="decimal string in token units", examples=["1250.5"])
    amount_base_units: str = Field(description="exact integer in base units, as a string", examples=["1250500000"])
    model_config = examples(usdc(1_250_500_000))


class MaybeAmount(BaseModel):
    amount: str | None = Field(description="decimal string in token units; null when unknown")
    amount_base_units: str | None = Field(description="exact integer in base units; null when unknown")
    model_config = examples(usdc(1_250_500_000), {"amount": None, "amount_base_units": None})


class RecordKey(BaseModel):
    source: str = Field(min_length=1, max_length=200, description="the system the record comes from")
    external_id: str = Field(min_length=1, max_length=200, description="the record's id in that system")
    model_config = examples(RECORD_KEY_EXAMPLE)


def record_keys_out(stored: str) -> list[dict[str, str]]:
    """Record keys as stored (JSON `[[source, external_id], ...]`) as every view shows them."""
    return [{"source": s, "external_id": e} for s, e in orjson.loads(stored)]


TRANSFER_AT_EXAMPLE = {
    "id": 1042, "chain": "ethereum", "chain_id": 1, "token": TOKEN_EXAMPLE,
    "sender": "0x4838B106FCe9647Bdf1E7877BF73cE8B0BAD5f97", "recipient": "0x28C6c06298d514Db089934071355E5743bf21d60",
    "amount": "1250.5", "amount_base_units": "1250500000",
    "tx_hash": "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060", "log_index": 3,
    "block_number": 21500123, "block_hash": "0x8f0d0ae5e3a8d4c5e1a4b1f3cd7b1a9f2e6d0c4b3a29187f6e5d4c3b2a190817",
    "block_time": "2026-11-26T09:14:03Z", "state": "finalized"}
TRANSFER_EXAMPLE = {**TRANSFER_AT_EXAMPLE, "seen_at": "2026-11-26T09:14:15Z", "confirmed_at": "2026-11-26T09:14:51Z",
                    "finalized_at": "2026-11-26T09:27:39Z", "orphaned_at": None, "recon_status": "matched"}


class TransferAt(BaseModel):
    """A transfer as of one block: what GET /v1/transfers shows and what the feed's transfer events carry."""

    id: int
    chain: str = Field(description="the chain's name (its id as a string if no longer configured)")
    chain_id: int
    token: TokenRef
    sender: str = Field(description="the log's `from` (checksummed)")
    recipient: str = Field(description="the log's `to` (checksummed)")
    amount: str | None = Field(description="decimal string in token units, e.g. \"1.5\"; null if the token's "
                                           "decimals are unknown", examples=["1250.5"])
    amount_base_units: str = Field(description="exact integer in base units, as a string", examples=["1250500000"])
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    block_time: datetime | None
    state: str = Field(description="seen | confirmed | finalized | orphaned")
    model_config = examples(TRANSFER_AT_EXAMPLE)


class TransferOut(TransferAt):
    seen_at: datetime
    confirmed_at: datetime | None
    finalized_at: datetime | None
    orphaned_at: datetime | None
    recon_status: str | None = Field(None, description="matched | explained | unmatched | pending")
    model_config = examples(TRANSFER_EXAMPLE)


class TransferPage(BaseModel):
    items: list[TransferOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")
    model_config = examples({"items": [TRANSFER_EXAMPLE], "next_cursor": "MTA0Mg"})


RECORD_CANDIDATE_EXAMPLE = {**RECORD_KEY_EXAMPLE, "kind": "deposit", "status": "completed",
                            "amount_base_units": "1250500000", "amount_difference_base_units": "0",
                            "created_at": "2026-11-26T09:15:00Z", "hours_from_block_time": 0.02}


class RecordCandidate(BaseModel):
    """An unexplained record suggested for a transfer: same wallet and token, closest in amount, then time."""

    source: str
    external_id: str
    kind: str = Field(description="deposit | withdrawal | internal")
    status: str = Field(description="pending | completed | cancelled")
    amount_base_units: str
    amount_difference_base_units: str = Field(description="the record's amount minus the transfer's (signed)")
    created_at: datetime
    hours_from_block_time: float = Field(description="the record's time minus the transfer's, in hours")
    model_config = examples(RECORD_CANDIDATE_EXAMPLE)


class UnmatchedItem(BaseModel):
    break_id: int = Field(description="the open `unmatched_transfer` break naming the transfer")
    severity: str = Field(description="low | medium | high | critical")
    age_seconds: int = Field(description="since the transfer's block time")
    due_at: datetime | None = Field(description="the SLA's due time")
    overdue: bool
    transfer: TransferOut
    candidates: list[RecordCandidate] = Field(description="up to 3 suggested records")


class UnmatchedPage(BaseModel):
    items: list[UnmatchedItem] = Field(description="oldest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")
    model_config = examples({"items": [{
        "break_id": 17, "severity": "medium", "age_seconds": 93600, "due_at": "2026-11-27T09:14:03Z",
        "overdue": True, "transfer": {**TRANSFER_EXAMPLE, "recon_status": "unmatched"},
        "candidates": [RECORD_CANDIDATE_EXAMPLE]}], "next_cursor": None})


class EndpointOut(BaseModel):
    """An RPC endpoint (credentials redacted) and its health; only `url` before the chain's watcher ran."""

    url: str
    healthy: bool | None = None
    failures: int | None = None
    successes: int | None = None
    last_error: str | None = None
    max_ok_range: int | None = Field(None, description="the largest eth_getLogs range that worked")
    range_cap: int | None = Field(None, description="the provider's stated maximum range, if it gave one")
    latency_ms: float | None = None


ENDPOINT_EXAMPLE = {"url": "https://mainnet.infura.io/v3/***", "healthy": True, "failures": 0, "successes": 48211,
                    "last_error": None, "max_ok_range": 2000, "range_cap": None, "latency_ms": 84.12}
# the handler passes the stored snapshots through as they are: documented, not re-validated
Endpoints = Annotated[list[dict[str, Any]], WithJsonSchema({"type": "array",
                                                            "items": EndpointOut.model_json_schema()})]


class ChainOut(BaseModel):
    name: str
    chain_id: int
    state: str = Field(description="not started | syncing | live | alert")
    head: int | None
    indexed: int | None
    indexed_hash: str | None
    safe: int | None
    finalized: int | None
    lag: int | None
    alert: str | None
    last_error: str | None
    last_error_at: datetime | None
    updated_at: datetime | None
    endpoints: Endpoints
    model_config = examples({
        "name": "ethereum", "chain_id": 1, "state": "live", "head": 21500140, "indexed": 21500138,
        "indexed_hash": "0x8f0d0ae5e3a8d4c5e1a4b1f3cd7b1a9f2e6d0c4b3a29187f6e5d4c3b2a190817", "safe": 21500108,
        "finalized": 21500076, "lag": 2, "alert": None, "last_error": None, "last_error_at": None,
        "updated_at": "2026-11-26T09:30:02Z", "endpoints": [ENDPOINT_EXAMPLE]})


class ChainHealth(BaseModel):
    name: str
    chain_id: int
    state: str
    lag: int | None
    last_error: str | None


class LoopHealth(BaseModel):
    name: str = Field(description="a supervised loop or job of this process: `watcher <chain>`, `reconciler`, "
                                  "`reconciler-follow`, `balance-check`")
    errors_total: int = Field(description="exceptions it survived since the process started")
    consecutive_errors: int = Field(description="failures since its last success (0: its last run succeeded)")
    last_error: str | None
    last_error_at: datetime | None
    last_success_at: datetime | None


class HealthOut(BaseModel):
    status: str = Field(description="ok | degraded | alert | unavailable (the database cannot be read)")
    chains: list[ChainHealth]
    problems: list[str] = Field(default_factory=list, description="why it is not ok, naming the chain or loop")
    loops: list[LoopHealth] = Field(default_factory=list)
    model_config = examples({"status": "ok", "chains": [{"name": "ethereum", "chain_id": 1, "state": "live",
                                                         "lag": 2, "last_error": None}], "problems": [],
                             "loops": []})
