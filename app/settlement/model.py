"""Plain data of the settlement core: transfers and records as the matcher sees them, the policy, and the
decisions. Frozen dataclasses; amounts are ints in base units; times are timezone-aware UTC."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class RecordKind(StrEnum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    INTERNAL = "internal"


class RecordStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class BreakType(StrEnum):
    UNMATCHED_TRANSFER = "unmatched_transfer"
    MISSING_TRANSFER = "missing_transfer"
    AMOUNT_MISMATCH = "amount_mismatch"
    DETAILS_MISMATCH = "details_mismatch"
    AMBIGUOUS = "ambiguous"
    DUPLICATE_CLAIM = "duplicate_claim"
    REORGED_AFTER_MATCH = "reorged_after_match"
    OUTBOUND_LOOKALIKE = "outbound_lookalike"  # we paid an address that imitates a known one: poisoning loss?


@dataclass(frozen=True, slots=True)
class TransferFact:
    """An indexed transfer. `*_is_ours`: whether that side is a company wallet."""

    id: int
    chain_id: int
    token: str
    sender: str
    recipient: str
    amount: int
    tx_hash: str
    log_index: int
    block_time: datetime
    state: str
    sender_is_ours: bool
    recipient_is_ours: bool


@dataclass(frozen=True, slots=True)
class RecordFact:
    """The current version of an internal record. `wallet` is our side (deposit address, or the wallet a
    withdrawal is sent from); `counterparty` the other side when known."""

    source: str
    external_id: str
    kind: RecordKind
    chain_id: int
    token: str
    amount: int
    wallet: str
    counterparty: str | None
    tx_hash: str | None
    log_index: int | None
    created_at: datetime
    expected_by: datetime | None
    status: RecordStatus

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.external_id)


@dataclass(frozen=True)
class Policy:
    """Matching policy. `tolerance` and `dust` are per token, (chain id, address), in base units: one address
    can be two tokens with different decimals on two chains."""

    window: timedelta = timedelta(hours=6)
    tolerance: Mapping[tuple[int, str], int] = field(default_factory=dict)
    dust: Mapping[tuple[int, str], int] = field(default_factory=dict)
    auto_internal: bool = True
    max_combination: int = 5
    subset_search_limit: int = 200_000  # search nodes per split/batch search; beyond: an ambiguity break
    unmatched_grace: timedelta = timedelta(hours=1)
    missing_grace: timedelta = timedelta(hours=24)
    match_states: frozenset[str] = frozenset({"confirmed", "finalized"})
    known_counterparties: frozenset[str] = frozenset()
    excluded: frozenset[tuple[int, tuple[str, str]]] = frozenset()  # (transfer id, record key) a person unmatched


Facts = tuple[tuple[str, object], ...]


@dataclass(frozen=True, order=True)
class Match:
    rule: str
    rule_version: str
    transfer_ids: tuple[int, ...]
    record_keys: tuple[tuple[str, str], ...]
    candidates: tuple[int, ...]
    facts: Facts


@dataclass(frozen=True, order=True)
class Break:
    type: BreakType
    transfer_ids: tuple[int, ...]
    record_keys: tuple[tuple[str, str], ...]
    facts: Facts


@dataclass(frozen=True, order=True)
class Classification:
    transfer_id: int
    reason: str
    rule_version: str


@dataclass(frozen=True, order=True)
class Flag:
    transfer_id: int
    kind: str  # zero_value | dust | poisoning_suspect


@dataclass(frozen=True)
class Outcome:
    matches: tuple[Match, ...]
    breaks: tuple[Break, ...]
    classifications: tuple[Classification, ...]
    flags: tuple[Flag, ...]
    pending: tuple[int, ...]
