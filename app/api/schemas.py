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


class WalletOut(BaseModel):
    id: int
    chain: str | None = Field(description="the chain's name; null if the chain is no longer configured")
    chain_id: int
    address: str = Field(description="EIP-55 checksummed")
    label: str
    kind: str = Field(description="deposit | hot | cold | gas | omnibus")
    segregation: str = Field(description="customer | house")
    start_block: int | None = Field(description="where indexing of this wallet begins; null: the chain's start")
    active: bool = Field(description="false: new blocks are not indexed for it; its history stays")
    source: str = Field(description="config (seeded from settle.toml) | api")
    created_at: datetime
    created_by: str
    updated_at: datetime


class WalletList(BaseModel):
    items: list[WalletOut]


class GasOut(BaseModel):
    amount: str | None = Field(description="native balance in ether units (18 decimals); null if the RPC failed")
    amount_base_units: str | None = Field(description="in wei")
    block: str = "latest"
    error: str | None = Field(description="why the balance could not be read")


class WalletStatusOut(BaseModel):
    wallet: WalletOut
    balances: list[dict] = Field(description="per token, as in GET /v1/balances")
    transfers: list[TransferOut] = Field(description="the last 20, newest first")
    open_breaks: list[dict] = Field(description="unresolved breaks touching the wallet, as in GET /v1/breaks")
    gas: GasOut
