"""Response models. Amounts: a decimal string in token units plus the exact integer `amount_base_units`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class TokenRef(BaseModel):
    address: str
    symbol: str | None
    decimals: int | None


class TransferOut(BaseModel):
    id: int
    chain: str
    chain_id: int
    token: TokenRef
    sender: str = Field(description="the log's `from` (checksummed)")
    recipient: str = Field(description="the log's `to` (checksummed)")
    amount: str | None = Field(description="decimal string in token units, e.g. \"1.5\"", examples=["1250.5"])
    amount_base_units: str = Field(description="exact integer in base units, as a string", examples=["1250500000"])
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    block_time: datetime | None
    state: str = Field(description="seen | confirmed | finalized | orphaned")
    seen_at: datetime
    confirmed_at: datetime | None
    finalized_at: datetime | None
    orphaned_at: datetime | None
    recon_status: str | None = Field(None, description="matched | explained | unmatched | pending")


class TransferPage(BaseModel):
    items: list[TransferOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")


class EndpointOut(BaseModel):
    url: str
    healthy: bool | None = None
    failures: int | None = None
    last_error: str | None = None


class ChainOut(BaseModel):
    name: str
    chain_id: int
    state: str
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
    endpoints: list[dict]


class ChainHealth(BaseModel):
    name: str
    chain_id: int
    state: str
    lag: int | None
    last_error: str | None


class HealthOut(BaseModel):
    status: str = Field(description="ok | degraded | alert")
    chains: list[ChainHealth]
