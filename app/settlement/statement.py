"""A wallet statement: one account (chain, token, wallet) for one business day, presented as a USD account at
par, the way a fiat reconciliation ingests a bank's statement. Pure data and the short references the formats
need; the writers (camt.053, BAI2, CSV) live in `app/close/`.

Amounts are the token's base units; `at_par` gives the cents. References are deterministic and at most 35
characters (camt.053's Max35Text), so a statement built twice from the same facts is byte-for-byte the same.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property

from app.settlement.par import ParStatement, at_par

MAX_REF = 35


@dataclass(frozen=True, slots=True)
class StatementAccount:
    chain_id: int
    chain_name: str
    token: str  # contract address, checksummed
    symbol: str
    decimals: int
    wallet: str  # checksummed address
    label: str

    @property
    def account_id(self) -> str:
        """A short, stable account number (at most 34, camt.053's Othr/Id): chain id and a digest of the
        token and wallet. The 42-character addresses go in the account's name and proxy."""
        digest = hashlib.sha256(f"{self.chain_id}:{self.token.lower()}:{self.wallet.lower()}".encode()).hexdigest()
        return f"ST{self.chain_id}-{digest[:20].upper()}"[:34]

    @property
    def name(self) -> str:
        """At most 70 (Max70Text): the symbol, chain and wallet; the token's address is in `description`."""
        return f"{self.symbol} {self.chain_name[:18]} {self.wallet}"[:70]

    @property
    def description(self) -> str:
        return (f"{self.symbol} ({self.decimals} decimals, contract {self.token}) on chain {self.chain_id} "
                f"({self.chain_name}) held by {self.wallet} ({self.label}); USD at par")[:500]


@dataclass(frozen=True, slots=True)
class StatementEntry:
    """One finalized transfer. `amount` signed: credit positive, debit negative (base units)."""

    chain_id: int
    tx_hash: str
    log_index: int
    amount: int
    counterparty: str
    booked_on: date  # business day, in the business time zone
    block_number: int
    block_time: datetime

    @property
    def reference(self) -> str:
        """At most 35 characters and unique per (chain, tx hash, log index): the digest of the three."""
        digest = hashlib.sha256(f"{self.chain_id}:{self.tx_hash.lower()}:{self.log_index}".encode()).hexdigest()
        return f"TX{digest[:30].upper()}"[:MAX_REF]

    def information(self, account: StatementAccount) -> str:
        """The full identity and exact amount, for AddtlNtryInf (at most 500 characters)."""
        side = "from" if self.amount >= 0 else "to"
        return (f"chain {account.chain_id} tx {self.tx_hash} log {self.log_index} block {self.block_number}; "
                f"{abs(self.amount)} base units of {account.symbol} {account.token} ({account.decimals} decimals) "
                f"{side} {self.counterparty}")[:500]


@dataclass(frozen=True)
class WalletStatement:
    account: StatementAccount
    business_day: date
    sequence: int  # electronic sequence number: +1 per statement of this account, corrections included
    period: tuple[datetime, datetime]  # (start exclusive, end inclusive) UTC: the business day's window
    created_at: datetime
    opening: int  # base units: the previous statement's closing
    entries: tuple[StatementEntry, ...]
    corrects: int | None = None  # the sequence number this statement corrects, for a correction

    @property
    def closing(self) -> int:
        return self.opening + sum(e.amount for e in self.entries)

    @cached_property
    def par(self) -> ParStatement:
        return at_par(self.opening, [e.amount for e in self.entries], self.account.decimals)

    @property
    def statement_id(self) -> str:
        """At most 35: account number, day and sequence."""
        return f"{self.account.account_id}-{self.business_day:%Y%m%d}-{self.sequence}"[-MAX_REF:]

    @property
    def rounding_reference(self) -> str:
        return f"RND{self.business_day:%Y%m%d}S{self.sequence}"
