"""/v1/wallets models: `WalletOut` and `GasOut` are built by the handlers; `WalletStatusOut` documents the status
dict the handler returns (not re-validated)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.api.balance_schemas import BALANCE_LINE_EXAMPLE, BalanceLine
from app.api.break_schemas import BREAK_EXAMPLE, BreakOut
from app.api.schemas import TRANSFER_EXAMPLE, MaybeAmount, TransferOut, examples

WALLET_EXAMPLE = {
    "id": 7, "chain": "ethereum", "chain_id": 1, "address": "0x28C6c06298d514Db089934071355E5743bf21d60",
    "label": "deposit-0042", "kind": "deposit", "segregation": "customer", "start_block": 21500000, "active": True,
    "source": "api", "created_at": "2026-11-20T08:00:00Z", "created_by": "admin-bob",
    "updated_at": "2026-11-20T08:00:00Z"}


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
    model_config = examples(WALLET_EXAMPLE)


class WalletList(BaseModel):
    items: list[WalletOut]
    next_after: int | None = Field(None, description="pass as `after` for the next page; null on the last page")
    model_config = examples({"items": [WALLET_EXAMPLE], "next_after": None})


GAS_EXAMPLE = {"amount": "0.0421", "amount_base_units": "42100000000000000", "block": "latest", "error": None}


class GasOut(MaybeAmount):
    """The native balance in ether units (18 decimals) and in wei; both null, with `error`, if the RPC failed."""

    block: str = "latest"
    error: str | None = Field(description="why the balance could not be read")
    model_config = examples(GAS_EXAMPLE, {"amount": None, "amount_base_units": None, "block": "latest",
                                          "error": "all RPC endpoints failed after 3 attempts: connection refused"})


class WalletStatusOut(BaseModel):
    wallet: WalletOut
    balances: list[BalanceLine] = Field(description="per token, as in GET /v1/balances")
    transfers: list[TransferOut] = Field(description="the last 20, newest first")
    open_breaks: list[BreakOut] = Field(description="unresolved breaks touching the wallet, as in GET /v1/breaks")
    gas: GasOut
    model_config = examples({"wallet": WALLET_EXAMPLE, "balances": [BALANCE_LINE_EXAMPLE],
                             "transfers": [TRANSFER_EXAMPLE], "open_breaks": [BREAK_EXAMPLE], "gas": GAS_EXAMPLE})
