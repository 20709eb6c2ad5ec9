"""Tables (SQLModel). Queries live in the repositories beside this module, never in handlers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from app.persistence.types import BigInt, ExactInt, UTCDateTime


def _amount(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(ExactInt(), nullable=nullable)


def _time(nullable: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable)


class ChainStatus(SQLModel, table=True):
    """One row per chain: the cursor (written with each batch), marks, state and last error."""

    __tablename__ = "chain_status"
    chain_id: int = Field(sa_column=Column(BigInt(), primary_key=True, autoincrement=False))
    name: str
    cursor_number: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    cursor_hash: str | None = None
    head: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    safe: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    finalized: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    state: str = "syncing"
    alert_detail: str | None = None
    allow_deep_reorg: bool = False
    last_error: str | None = None
    last_error_at: datetime | None = Field(default=None, sa_column=_time())
    endpoints: str | None = None  # JSON: redacted endpoint health
    updated_at: datetime | None = Field(default=None, sa_column=_time())


class Block(SQLModel, table=True):
    """The unfinalized block window (plus anchors), for reorg detection."""

    __tablename__ = "blocks"
    chain_id: int = Field(sa_column=Column(BigInt(), primary_key=True, autoincrement=False))
    number: int = Field(sa_column=Column(BigInt(), primary_key=True, autoincrement=False))
    hash: str
    parent_hash: str
    timestamp: int = Field(sa_column=Column(BigInt(), nullable=False))


class Transfer(SQLModel, table=True):
    """A business transfer event: at most one live (not orphaned) row per (chain_id, tx_hash, log_index); an
    observation is unique on (chain_id, block_hash, log_index). Token, parties and amount never change: a
    transaction re-mined with other content at that log index is a new row beside the orphaned one. Amount in
    base units."""

    __tablename__ = "transfers"
    __table_args__ = (
        Index("uq_transfers_event_live", "chain_id", "tx_hash", "log_index", unique=True,
              sqlite_where=text("state <> 'orphaned'"), postgresql_where=text("state <> 'orphaned'")),
        Index("ix_transfers_orphaned_tx", "chain_id", "tx_hash",
              sqlite_where=text("state = 'orphaned'"), postgresql_where=text("state = 'orphaned'")),
        UniqueConstraint("chain_id", "block_hash", "log_index", name="uq_transfers_observation"),
        Index("ix_transfers_chain_state_block", "chain_id", "state", "block_number"),
        Index("ix_transfers_to", "chain_id", "recipient"),
        Index("ix_transfers_from", "chain_id", "sender"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    chain_id: int = Field(sa_column=Column(BigInt(), nullable=False))
    token: str
    sender: str
    recipient: str
    amount: int = Field(sa_column=_amount())
    tx_hash: str
    log_index: int
    block_number: int = Field(sa_column=Column(BigInt(), nullable=False))
    block_hash: str
    block_time: datetime | None = Field(default=None, sa_column=_time())
    state: str
    seen_at: datetime = Field(sa_column=_time(False))
    confirmed_at: datetime | None = Field(default=None, sa_column=_time())
    finalized_at: datetime | None = Field(default=None, sa_column=_time())
    orphaned_at: datetime | None = Field(default=None, sa_column=_time())


class TransferOrphaning(SQLModel, table=True):
    """Evidence kept when a transfer's observation is reorged away (never deleted)."""

    __tablename__ = "transfer_orphanings"
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    transfer_id: int = Field(sa_column=Column(BigInt(), nullable=False, index=True))
    reorg_id: int = Field(sa_column=Column(BigInt(), nullable=False))
    chain_id: int = Field(sa_column=Column(BigInt(), nullable=False))
    block_number: int = Field(sa_column=Column(BigInt(), nullable=False))
    block_hash: str
    log_index: int
    previous_state: str
    orphaned_at: datetime = Field(sa_column=_time(False))


class Reorg(SQLModel, table=True):
    __tablename__ = "reorgs"
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    chain_id: int = Field(sa_column=Column(BigInt(), nullable=False, index=True))
    depth: int
    ancestor_number: int = Field(sa_column=Column(BigInt(), nullable=False))
    ancestor_hash: str | None = None
    old_head_number: int = Field(sa_column=Column(BigInt(), nullable=False))
    old_head_hash: str | None = None
    new_head_number: int = Field(sa_column=Column(BigInt(), nullable=False))
    new_head_hash: str | None = None
    orphaned: int = 0
    deep: bool = False
    detected_at: datetime = Field(sa_column=_time(False))


class WatchTarget(SQLModel, table=True):
    """A token or wallet the watcher follows, with its own start block and backfill progress."""

    __tablename__ = "watch_targets"
    chain_id: int = Field(sa_column=Column(BigInt(), primary_key=True, autoincrement=False))
    kind: str = Field(primary_key=True)
    address: str = Field(primary_key=True)
    start_block: int = Field(sa_column=Column(BigInt(), nullable=False))
    synced_to: int = Field(sa_column=Column(BigInt(), nullable=False))
    joined: bool = False


class OpeningBalance(SQLModel, table=True):
    """balanceOf(wallet) at the block before indexing of the (wallet, token) pair starts."""

    __tablename__ = "opening_balances"
    chain_id: int = Field(sa_column=Column(BigInt(), primary_key=True, autoincrement=False))
    wallet: str = Field(primary_key=True)
    token: str = Field(primary_key=True)
    block_number: int = Field(sa_column=Column(BigInt(), nullable=False))
    balance: int = Field(sa_column=_amount())


class BalanceCheck(SQLModel, table=True):
    """Indexed balance vs balanceOf at one pinned block. difference = onchain - indexed (base units)."""

    __tablename__ = "balance_checks"
    __table_args__ = (Index("ix_balance_checks_pair", "chain_id", "wallet", "token", "block_number"),)
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    chain_id: int = Field(sa_column=Column(BigInt(), nullable=False))
    wallet: str
    token: str
    block_number: int = Field(sa_column=Column(BigInt(), nullable=False))
    block_hash: str
    opening_balance: int = Field(sa_column=_amount())
    indexed_balance: int = Field(sa_column=_amount())
    onchain_balance: int = Field(sa_column=_amount())
    difference: int = Field(sa_column=_amount())
    checked_at: datetime = Field(sa_column=_time(False))


# ---- reconciliation (issue 3) ---------------------------------------------------------------------------------------
class Record(SQLModel, table=True):
    """The current version of an internal record (deposit, withdrawal, internal transfer); amount in base units."""

    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_records_key"),
                      Index("ix_records_wallet", "chain_id", "wallet"), Index("ix_records_tx", "chain_id", "tx_hash"))
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    source: str
    external_id: str
    version: int
    kind: str
    chain_id: int = Field(sa_column=Column(BigInt(), nullable=False))
    token: str
    amount: int = Field(sa_column=_amount())
    wallet: str
    counterparty: str | None = None
    tx_hash: str | None = None
    log_index: int | None = None
    reference: str | None = None
    segregation: str
    status: str
    created_at: datetime = Field(sa_column=_time(False))
    expected_by: datetime | None = Field(default=None, sa_column=_time())
    ingested_at: datetime = Field(sa_column=_time(False))


class RecordVersion(SQLModel, table=True):
    """Every version of every record, as received (append-only)."""

    __tablename__ = "record_versions"
    __table_args__ = (UniqueConstraint("source", "external_id", "version", name="uq_record_versions"),)
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    source: str
    external_id: str
    version: int
    body: str  # canonical JSON of the version
    actor: str
    ingested_at: datetime = Field(sa_column=_time(False))


class AuditEntry(SQLModel, table=True):
    """Append-only audit log; `hash` = SHA-256 over the canonical encoding of the entry and the previous hash."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    at: datetime = Field(sa_column=_time(False))
    actor: str
    action: str
    entity: str
    before: str | None = None
    after: str | None = None
    prev_hash: str
    hash: str


class AuditHead(SQLModel, table=True):
    """The audit log's head, one row (id 1), moved in the same transaction as every append: `seq` entries so far,
    the last one's `hash`, id and time. Kept outside the log so that deleting its last entries shows."""

    __tablename__ = "audit_head"
    id: int = Field(default=1, sa_column=Column(BigInt(), primary_key=True, autoincrement=False))
    seq: int = Field(sa_column=Column(BigInt(), nullable=False))
    hash: str
    entry_id: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    at: datetime | None = Field(default=None, sa_column=_time())


class MatchRow(SQLModel, table=True):
    """A match between transfer(s) and record(s). Never deleted: unmatching sets `removed_*`."""

    __tablename__ = "matches"
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    rule: str
    rule_version: str
    transfer_ids: str  # JSON list
    record_keys: str  # JSON list of [source, external_id]
    candidates: str  # JSON
    facts: str  # JSON
    created_at: datetime = Field(sa_column=_time(False))
    created_by: str
    removed_at: datetime | None = Field(default=None, sa_column=_time())
    removed_by: str | None = None
    removed_reason: str | None = None


class MatchLink(SQLModel, table=True):
    """One side of a match, for joins: a transfer (with the block hash it was matched in) or a record."""

    __tablename__ = "match_links"
    __table_args__ = (Index("ix_match_links_transfer", "transfer_id", "active"),
                      Index("ix_match_links_record", "record_source", "record_external_id", "active"),
                      # an item is in at most one active match, whoever writes it (a person, a pass, two passes)
                      Index("uq_match_links_active_transfer", "transfer_id", unique=True,
                            postgresql_where=text("active AND transfer_id IS NOT NULL"),
                            sqlite_where=text("active AND transfer_id IS NOT NULL")),
                      Index("uq_match_links_active_record", "record_source", "record_external_id", unique=True,
                            postgresql_where=text("active AND record_source IS NOT NULL"),
                            sqlite_where=text("active AND record_source IS NOT NULL")))
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    match_id: int = Field(sa_column=Column(BigInt(), nullable=False))
    transfer_id: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    block_hash: str | None = None
    record_source: str | None = None
    record_external_id: str | None = None
    active: bool = True


class BreakRow(SQLModel, table=True):
    """A break: what needs a human. `fingerprint` (type + items) keeps the reconciler idempotent."""

    __tablename__ = "breaks"
    __table_args__ = (Index("ix_breaks_status", "status", "type"), Index("ix_breaks_fingerprint", "fingerprint"),
                      Index("ix_breaks_ageing", "status", "severity", "since"),
                      Index("ix_breaks_queue", "type", "status", "since", "id"))
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    type: str
    status: str  # open | awaiting_approval | resolved
    fingerprint: str
    transfer_ids: str
    record_keys: str
    facts: str
    chain_id: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))  # the token's chain
    token: str | None = None
    amount: int | None = Field(default=None, sa_column=Column(ExactInt(), nullable=True))
    severity: str = "low"
    since: datetime | None = Field(default=None, sa_column=_time())  # the oldest item's time: the break's age
    due_at: datetime | None = Field(default=None, sa_column=_time())
    opened_at: datetime = Field(sa_column=_time(False))
    resolved_at: datetime | None = Field(default=None, sa_column=_time())
    resolution: str | None = None  # JSON


class BreakEvent(SQLModel, table=True):
    """The history of a break (append-only)."""

    __tablename__ = "break_events"
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    break_id: int = Field(sa_column=Column(BigInt(), nullable=False, index=True))
    action: str
    actor: str
    at: datetime = Field(sa_column=_time(False))
    detail: str | None = None


class TransferClassification(SQLModel, table=True):
    """Why a transfer needs no record: internal, noise (zero value, dust, poisoning suspect), or an ops reason."""

    __tablename__ = "transfer_classifications"
    transfer_id: int = Field(sa_column=Column(BigInt(), primary_key=True, autoincrement=False))
    reason: str = Field(primary_key=True)
    actor: str
    note: str | None = None
    at: datetime = Field(sa_column=_time(False))
    revoked_at: datetime | None = Field(default=None, sa_column=_time())  # a person reopened the break it resolved
    revoked_by: str | None = None


class BreakLink(SQLModel, table=True):
    """One item of a break, for lookups: which breaks touch a transfer or a record."""

    __tablename__ = "break_links"
    __table_args__ = (Index("ix_break_links_transfer", "transfer_id"),
                      Index("ix_break_links_record", "record_source", "record_external_id"),
                      # an item is in at most one unresolved break (`is_open` follows the break's status)
                      Index("uq_break_links_open_transfer", "transfer_id", unique=True,
                            postgresql_where=text("is_open AND transfer_id IS NOT NULL"),
                            sqlite_where=text("is_open AND transfer_id IS NOT NULL")),
                      Index("uq_break_links_open_record", "record_source", "record_external_id", unique=True,
                            postgresql_where=text("is_open AND record_source IS NOT NULL"),
                            sqlite_where=text("is_open AND record_source IS NOT NULL")))
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    break_id: int = Field(sa_column=Column(BigInt(), nullable=False, index=True))
    transfer_id: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    record_source: str | None = None
    record_external_id: str | None = None
    is_open: bool = True


class Counterparty(SQLModel, table=True):
    """Every counterparty address a record has named, with its look-alike shape (first and last 4 hex digits,
    lower case): the known set the address-poisoning check compares against, looked up by shape."""

    __tablename__ = "counterparties"
    address: str = Field(primary_key=True)
    shape: str = Field(index=True)


class ReconDirty(SQLModel, table=True):
    """What changed since the reconciler last looked. `kind`: `range` (a chain's blocks `from_block`..`to_block`
    were indexed, promoted or reorged), `transfer`, `record`, or `full` (decide everything again). A pass deletes
    the rows it handled; `not_before` defers a row to a deadline (a grace period ending)."""

    __tablename__ = "recon_dirty"
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    kind: str
    chain_id: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    from_block: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    to_block: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    transfer_id: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    record_source: str | None = None
    record_external_id: str | None = None
    not_before: datetime | None = Field(default=None, sa_column=_time())


class ApiKey(SQLModel, table=True):
    """An API key: only its SHA-256 is stored (keys are 256-bit random, so a fast hash is enough); `prefix` is
    the key's first characters, to recognise it in a list. Revoked keys are kept (the audit trail names them)."""

    __tablename__ = "api_keys"
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    name: str = Field(unique=True)
    person: str  # who holds the key: four-eyes compares persons, not key names
    key_hash: str = Field(unique=True)
    prefix: str
    scopes: str  # JSON list
    created_at: datetime = Field(sa_column=_time(False))
    created_by: str
    revoked_at: datetime | None = Field(default=None, sa_column=_time())
    revoked_by: str | None = None


# ---- the feed (issue 4) ---------------------------------------------------------------------------------------------
class FeedEvent(SQLModel, table=True):
    """One event of the core-recon feed. `seq` is assigned under the `feed_head` row lock as the writer's last
    statement, so events commit in `seq` order and a reader following `seq` never has one appear behind it.
    The event names its entity (`entity_id`: a transfer, record version, match or break) and keeps what of it
    may change later: a transfer's state and observation (block), a break's status and resolution (`detail`)."""

    __tablename__ = "feed_events"
    seq: int = Field(sa_column=Column(BigInt(), primary_key=True, autoincrement=False))
    type: str
    entity_id: int = Field(sa_column=Column(BigInt(), nullable=False))
    occurred_at: datetime | None = Field(default=None, sa_column=_time())
    recorded_at: datetime = Field(sa_column=_time(False))
    state: str | None = None
    block_number: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    block_hash: str | None = None
    detail: str | None = None  # JSON


class FeedHead(SQLModel, table=True):
    """A single row: the last `seq` handed out. Writers lock it to append events; readers read up to it."""

    __tablename__ = "feed_head"
    id: int = Field(sa_column=Column(BigInt(), primary_key=True, autoincrement=False))
    seq: int = Field(sa_column=Column(BigInt(), nullable=False))


class WalletRow(SQLModel, table=True):
    """A company wallet on one chain: the registry. Config wallets are seeded in (`source` 'config'), the API adds
    more ('api'); afterwards the row is the truth (a PATCHed label stays). `start_block` None: the chain's start.
    `revision` counts the row's writes: (count, sum of revisions) changes with every insert and update, so
    readers can tell cheaply whether their copy is current."""

    __tablename__ = "wallets"
    __table_args__ = (UniqueConstraint("chain_id", "address", name="uq_wallets_chain_address"),)
    id: int | None = Field(default=None, sa_column=Column(BigInt(), primary_key=True, autoincrement=True))
    chain_id: int = Field(sa_column=Column(BigInt(), nullable=False))
    address: str
    label: str
    kind: str
    segregation: str
    start_block: int | None = Field(default=None, sa_column=Column(BigInt(), nullable=True))
    active: bool = True
    source: str  # config | api
    revision: int = 1
    created_at: datetime = Field(sa_column=_time(False))
    created_by: str
    updated_at: datetime = Field(sa_column=_time(False))
