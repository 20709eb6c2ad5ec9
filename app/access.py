"""Who may call the API: keys with scopes. A key is shown once, when created; only its SHA-256 is stored. The
actor the audit trail records for an API call is the key's name; the key also names the person who holds it,
which four-eyes compares (one person's two keys are one person). The machine's own actor names are reserved."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import BadRequest, NotFound, SettleError
from app.persistence import audit, keys_repo

PREFIX = "stk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
RESERVED = frozenset({"reconciler", "config", "cli", "system"})  # actors the service itself writes as


class Scope(StrEnum):
    TREASURY = "treasury"  # wallets, balances, transfers
    OPS = "ops"  # the queue, breaks, resolve, match, unmatch
    APPROVER = "approver"  # approve write-offs
    INGEST = "ingest"  # post records
    FEED = "feed"  # the core-recon feed
    ADMIN = "admin"  # wallets, keys, audit


class Unauthorized(SettleError):
    """No key, a malformed header, or a key that is unknown or revoked."""

    status_code = 401
    title = "Unauthorized"


class Forbidden(SettleError):
    """A valid key without the scope the endpoint needs."""

    status_code = 403
    title = "Forbidden"


class KeyExists(SettleError):
    status_code = 409
    title = "Key name taken"


@dataclass(frozen=True)
class Principal:
    """The caller behind a valid key."""

    name: str
    scopes: frozenset[Scope]
    person: str = ""  # who holds the key; the name when empty

    def __post_init__(self) -> None:
        if not self.person:
            object.__setattr__(self, "person", self.name)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str | list[str]) -> list[Scope]:
    """`ops,approver` (or a list) into scopes; an unknown one is refused by name."""
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if not names:
        raise BadRequest("scope", f"at least one of {', '.join(s.value for s in Scope)}")
    out = []
    for name in names:
        try:
            out.append(Scope(name))
        except ValueError:
            raise BadRequest("scope", f"unknown scope {name!r}; one of {', '.join(s.value for s in Scope)}") from None
    return sorted(set(out), key=list(Scope).index)


async def create_key(engine: AsyncEngine, *, name: str, scopes: list[Scope], actor: str,
                     person: str | None = None) -> str:
    """A new key for `name` with these scopes, held by `person` (the name if not given). Returns the key: the
    only time it is ever shown. Reserved actor names (`RESERVED`) are refused as names and persons."""
    person = name if person is None else person
    for field, value in (("name", name), ("person", person)):
        if not _NAME.match(value):
            raise BadRequest(field, "1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
        if value.lower() in RESERVED:
            raise BadRequest(field, f"{value!r} is reserved for the service's own actors "
                                    f"({', '.join(sorted(RESERVED))})")
    key = PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            await keys_repo.add(conn, name=name, person=person, key_hash=hash_key(key), prefix=key[:10],
                                scopes=[s.value for s in scopes], actor=actor, at=now)
            await audit.append(conn, actor=actor, action="key.created", entity=f"key:{name}", at=now,
                               after={"scopes": [s.value for s in scopes], "person": person})
    except IntegrityError:
        raise KeyExists(f"a key named {name!r} exists (names stay taken after revocation)") from None
    return key


async def revoke_key(engine: AsyncEngine, name: str, *, actor: str) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        if not await keys_repo.revoke(conn, name, actor=actor, at=now):
            raise NotFound(f"no active key named {name!r}")
        await audit.append(conn, actor=actor, action="key.revoked", entity=f"key:{name}", at=now)


async def list_keys(engine: AsyncEngine) -> list[dict]:
    async with engine.connect() as conn:
        return await keys_repo.all_keys(conn)


async def authenticate(engine: AsyncEngine, key: str, cache: KeyCache | None = None) -> Principal | None:
    """The principal behind an active key, or None. With a `cache`, a key found active is trusted for the cache's
    lifetime without asking the database again (a revocation takes effect within it)."""
    if not key.startswith(PREFIX):
        return None
    digest = hash_key(key)
    if cache is not None and (known := cache.get(digest)) is not None:
        return known
    async with engine.connect() as conn:
        row = await keys_repo.active_by_hash(conn, digest)
    principal = Principal(row["name"], frozenset(Scope(s) for s in row["scopes"]), row["person"]) if row else None
    if cache is not None and principal is not None:
        cache.put(digest, principal)
    return principal


class KeyCache:
    """Active keys by hash, each trusted for `seconds` after it was read (unknown keys are never cached, so
    guessing cannot fill it). `seconds = 0` asks the database on every request."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[digest]
            return None
        return entry[0]

    def put(self, digest: str, principal: Principal) -> None:
        if self.seconds > 0:
            self._entries[digest] = (principal, self._clock() + self.seconds)

    def clear(self) -> None:
        self._entries.clear()
