"""Plain data exchanged between the chain watcher and its store. No JSON-RPC, no SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from wallets import Address


class TransferState(StrEnum):
    SEEN = "seen"
    CONFIRMED = "confirmed"
    FINALIZED = "finalized"
    ORPHANED = "orphaned"


class ChainState(StrEnum):
    SYNCING = "syncing"
    LIVE = "live"
    ALERT = "alert"


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last block fully indexed: number and hash (hash is None only before the genesis block)."""

    number: int
    hash: str | None


@dataclass(frozen=True, slots=True)
class BlockHeader:
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    logs_bloom: str = ""


@dataclass(frozen=True, slots=True)
class TransferLog:
    """One decoded ERC-20 Transfer log. `amount` is in the token's base units (0 <= amount < 2**256)."""

    chain_id: int
    token: Address
    sender: Address
    recipient: Address
    amount: int
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    block_time: int | None  # unix seconds


@dataclass(frozen=True, slots=True)
class TokenSpec:
    address: Address
    symbol: str
    decimals: int
    start_block: int


@dataclass(frozen=True, slots=True)
class WalletSpec:
    address: Address
    start_block: int


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """What a watcher needs to know about its chain (built from the settings by the app)."""

    chain_id: int
    name: str
    start_block: int
    confirmations: int | str  # depth, or "safe"
    finality: int | str  # depth, or "tag"
    max_range: int
    mode: str  # "wallets" | "scan" | "auto"
    scan_threshold: int
    poll_interval: float
    live_batch: int = 50  # headers fetched per live step
    max_reorg_walk: int = 10_000
    """Blocks below the cursor that an operator-allowed deep reorg may walk back to find the fork point."""


@dataclass(frozen=True, slots=True)
class Target:
    """A token or wallet the watcher follows. `synced_to` is the last block it has been indexed to."""

    kind: str  # "token" | "wallet"
    address: Address
    start_block: int
    synced_to: int
    joined: bool


@dataclass(frozen=True, slots=True)
class ReorgRecord:
    chain_id: int
    depth: int
    ancestor: Cursor
    old_head: Cursor
    new_head: Cursor
    deep: bool = False


@dataclass(slots=True)
class Marks:
    """Head, safe and finalized block numbers as the watcher sees them (after failover lag)."""

    head: int
    safe: int
    finalized: int
    extra: dict[str, int] = field(default_factory=dict)
