"""The wallet registry as the rest of the app reads it: a `WalletBook` loaded from the `wallets` table.

The table is the registry. The configuration's `[[wallets]]` are seeded into it (the missing ones only) the first
time a process reads the book with those settings, so a label or kind changed through the API is not overwritten
by the file on restart, and a wallet removed from the file stays registered (deactivate it instead).

`active = false` stops a wallet's indexing of new blocks and its balance checks; its history stays ours: its
transfers and records keep reconciling (`our_wallets()` includes it) and it still shows in /v1/wallets and
/v1/balances with `active: false`.

Reads are cheap to repeat: a book is cached per engine and reloaded only when the table's version (row count, sum
of row revisions) moved, which every insert and update does.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import audit
from app.persistence import wallets_repo as repo
from app.settings import Settings
from wallets import Address, Segregation, Wallet, WalletKind

CONFIG_ACTOR = "config"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredWallet(Wallet):
    """A wallet as the registry holds it: its row's id, whether it is active, where it came from and when."""

    id: int
    active: bool
    source: str
    created_at: datetime
    created_by: str
    updated_at: datetime

    @classmethod
    def from_row(cls, row: dict) -> RegisteredWallet:
        return cls(id=row["id"], chain_id=row["chain_id"], address=Address(row["address"]), label=row["label"],
                   kind=WalletKind(row["kind"]), segregation=Segregation(row["segregation"]),
                   start_block=row["start_block"], active=bool(row["active"]), source=row["source"],
                   created_at=row["created_at"], created_by=row["created_by"], updated_at=row["updated_at"])


class WalletBook:
    """Every registered wallet, by id and by chain, with the O(1) `our_wallets()` set the matcher needs."""

    def __init__(self, wallets: Iterable[RegisteredWallet], version: tuple[int, int]) -> None:
        self.version = version
        self._by_id = {w.id: w for w in wallets}
        self._by_chain: dict[int, list[RegisteredWallet]] = {}
        for w in self._by_id.values():
            self._by_chain.setdefault(w.chain_id, []).append(w)
        self._ours = frozenset((w.chain_id, w.address) for w in self._by_id.values())
        self._by_address = {(w.chain_id, w.address): w for w in self._by_id.values()}

    def get(self, wallet_id: int) -> RegisteredWallet | None:
        return self._by_id.get(wallet_id)

    def find(self, chain_id: int, address: str) -> RegisteredWallet | None:
        """The wallet registered at this (checksummed) address on this chain, if any."""
        return self._by_address.get((chain_id, address))

    def all(self) -> list[RegisteredWallet]:
        return list(self._by_id.values())

    def wallets_on(self, chain_id: int) -> list[RegisteredWallet]:
        """Every wallet registered on the chain, active or not (in id order)."""
        return list(self._by_chain.get(chain_id, ()))

    def active_on(self, chain_id: int) -> list[RegisteredWallet]:
        """The wallets whose new blocks are indexed and whose balances are checked."""
        return [w for w in self._by_chain.get(chain_id, ()) if w.active]

    def our_wallets(self) -> frozenset[tuple[int, str]]:
        """(chain id, address) of every registered wallet, inactive ones included (their history is ours)."""
        return self._ours


@dataclass
class _Cached:
    book: WalletBook | None = None
    checked_at: float = float("-inf")  # time.monotonic() of the last version check
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one seeding or reload at a time per engine
    seeded: list[Settings] = field(default_factory=list)  # the settings whose wallets this process seeded

    def current(self, settings: Settings) -> WalletBook | None:
        """The book, if these settings' wallets are seeded and it was checked less than FRESH_SECONDS ago."""
        fresh = time.monotonic() - self.checked_at < FRESH_SECONDS
        return self.book if fresh and any(s is settings for s in self.seeded) else None


FRESH_SECONDS = 1.0
"""A book checked this recently is used without asking the database (API requests and watcher steps come many
times a second); this process's own registry writes `forget()` it at once, another process's show within this."""


_CACHE: weakref.WeakKeyDictionary[AsyncEngine, _Cached] = weakref.WeakKeyDictionary()


async def wallet_book(settings: Settings, engine: AsyncEngine) -> WalletBook:
    """The current registry. The first call with these settings seeds their config wallets; later calls cost one
    small query unless the table changed. Opens its own connections: call it outside a write transaction (on
    SQLite a second writer would wait for the first)."""
    cached = _CACHE.setdefault(engine, _Cached())
    if (book := cached.current(settings)) is not None:
        return book
    async with cached.lock:  # concurrent first requests seed once and load once
        if (book := cached.current(settings)) is not None:
            return book
        if not any(s is settings for s in cached.seeded):
            await seed_config_wallets(engine, config_wallets(settings))
            cached.seeded.append(settings)
        async with engine.connect() as conn:
            # read before the rows: a write in between leaves the book a version behind, so the next check
            # reloads it, never the other way round
            version = await repo.version(conn)
            if cached.book is None or cached.book.version != version:
                rows = await repo.all_wallets(conn)
                cached.book = WalletBook((RegisteredWallet.from_row(r) for r in rows), version)
        cached.checked_at = time.monotonic()
        return cached.book


def forget(engine: AsyncEngine) -> None:
    """The registry changed (this process wrote it): the next `wallet_book` call checks the database."""
    cached = _CACHE.get(engine)
    if cached is not None:
        cached.checked_at = float("-inf")


def config_wallets(settings: Settings) -> list[Wallet]:
    """The configuration's wallets, one per chain (`chain = "*"` expanded to every configured chain)."""
    return [w for chain in settings.chains for w in settings.wallets_on(chain)]


async def seed_config_wallets(engine: AsyncEngine, wallets: Iterable[Wallet]) -> int:
    """Register the config wallets not registered yet (audited, actor `config`); returns how many. Existing rows
    are left as they are: the table is the registry."""
    now = datetime.now(UTC)
    rows = [{"chain_id": w.chain_id, "address": w.address, "label": w.label, "kind": w.kind.value,
             "segregation": w.segregation.value, "start_block": w.start_block, "active": True,
             "source": CONFIG_ACTOR, "revision": 1, "created_at": now, "created_by": CONFIG_ACTOR,
             "updated_at": now} for w in wallets]
    if not rows:
        return 0
    async with engine.begin() as conn:
        known = {(r["chain_id"], r["address"]) for r in await repo.all_wallets(conn)}
        added = await repo.add_missing(conn, [r for r in rows if (r["chain_id"], r["address"]) not in known])
        await audit.append_many(conn, [audit_entry(CONFIG_ACTOR, "wallet.registered", r) for r in added], at=now)
    forget(engine)
    return len(added)


def audit_entry(actor: str, action: str, row: dict, before: dict | None = None) -> dict:
    """An audit entry for a registry write: the row as stored (and as it was, for a change)."""
    return {"actor": actor, "action": action, "entity": f"wallet:{row['id']}",
            "before": _audited(before) if before else None, "after": _audited(row)}


def _audited(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("id", "revision", "created_at", "updated_at")}
