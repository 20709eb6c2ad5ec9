"""The document's models of GET /v1/balances (also the `balances` of a wallet's status). Documentation only: the
handler returns the dicts of `app.balance_views` as they are."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.api.schemas import TOKEN_EXAMPLE, Amount, MaybeAmount, TokenRef, examples, usdc
from wallets import Segregation, WalletKind

OPENING_EXAMPLE = {"block_number": 21499999, **usdc(0)}


class OpeningBalance(Amount):
    block_number: int = Field(description="read with balanceOf at this block (the pair's start block - 1)")
    model_config = examples(OPENING_EXAMPLE)


class LastCheck(BaseModel):
    """The last stored balance check: balanceOf at the indexed block (pinned by hash) against the indexed sum."""

    onchain: Amount
    indexed: Amount
    difference: Amount = Field(description="on-chain minus indexed (signed); non-zero: a balance change without "
                                           "a Transfer event")
    block_number: int
    block_hash: str
    checked_at: datetime


BALANCE_LINE_EXAMPLE = {
    "chain": "ethereum", "wallet": "0x28C6c06298d514Db089934071355E5743bf21d60", "wallet_id": 7,
    "label": "deposit-0042", "kind": "deposit", "segregation": "customer", "active": True, "token": TOKEN_EXAMPLE,
    "opening": OPENING_EXAMPLE,
    "finalized": usdc(1_250_500_000), "confirmed": usdc(1_260_500_000),
    "pending_in": usdc(5_000_000), "pending_out": usdc(0),
    "last_check": {"onchain": usdc(1_260_500_000), "indexed": usdc(1_260_500_000), "difference": usdc(0),
                   "block_number": 21500138,
                   "block_hash": "0x8f0d0ae5e3a8d4c5e1a4b1f3cd7b1a9f2e6d0c4b3a29187f6e5d4c3b2a190817",
                   "checked_at": "2026-11-26T09:30:00Z"}}


class BalanceLine(BaseModel):
    """One (wallet, token). Balances are null until a balance check has read the pair's opening balance."""

    chain: str
    wallet: str = Field(description="the wallet's address (checksummed)")
    wallet_id: int
    label: str
    kind: WalletKind
    segregation: Segregation
    active: bool
    token: TokenRef
    opening: OpeningBalance | None = Field(description="null until a balance check has read it")
    finalized: MaybeAmount = Field(description="opening balance + finalized flows")
    confirmed: MaybeAmount = Field(description="opening balance + confirmed and finalized flows")
    pending_in: Amount = Field(description="incoming transfers only seen so far")
    pending_out: Amount = Field(description="outgoing transfers only seen so far")
    last_check: LastCheck | None = Field(description="null as of a past block or time, or before the first check")
    model_config = examples(BALANCE_LINE_EXAMPLE)


TOTAL_EXAMPLE = {"chain": "ethereum", "token": TOKEN_EXAMPLE, "finalized": usdc(1_250_500_000),
                 "confirmed": usdc(1_260_500_000), "pairs_without_opening_balance": 0}


class TokenTotal(BaseModel):
    chain: str
    token: TokenRef
    finalized: Amount
    confirmed: Amount
    pairs_without_opening_balance: int = Field(description="pairs left out of the sums: no opening balance yet")
    model_config = examples(TOTAL_EXAMPLE)


class SegregationTotal(TokenTotal):
    segregation: Segregation
    model_config = examples({**TOTAL_EXAMPLE, "segregation": "customer"})


class Balances(BaseModel):
    as_of: str | None = Field(description="the `as_of` asked for (a block number or a time); null: now")
    items: list[BalanceLine]
    totals_by_token: list[TokenTotal]
    totals_by_segregation: list[SegregationTotal]
    model_config = examples({"as_of": None, "items": [BALANCE_LINE_EXAMPLE], "totals_by_token": [TOTAL_EXAMPLE],
                             "totals_by_segregation": [{**TOTAL_EXAMPLE, "segregation": "customer"}]})
