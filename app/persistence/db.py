"""Engines and transactions. SQLite (embedded default, WAL) or PostgreSQL (production).

Writing on SQLite has one discipline, enforced here so that no writer can forget it: `engine.begin()` is the
one entry point for a write transaction (`engine.connect()` reads). On SQLite it first takes this process's write
lock (one writer at a time, queued in asyncio instead of spinning on the busy timeout), then opens the
transaction with `BEGIN IMMEDIATE`, so it holds the database's write lock from its first statement: a deferred
transaction that read first and then tries to write after another connection committed fails at once with
`database is locked` (SQLite cannot upgrade a stale snapshot, and the busy timeout does not apply). Other
processes (`settle recon` beside `settle serve`) queue on the busy timeout. WAL keeps readers unblocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.persistence import feed


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def async_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite://` URLs and pick the async drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql" and parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The synchronous twin of a URL, for Alembic."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}[backend]
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


BUSY_TIMEOUT_MS = 30_000
_IMMEDIATE = "settle_write"  # execution option: this connection's transaction is a write transaction


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # the driver emits no BEGIN of its own: `_sqlite_begin` does
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_IMMEDIATE) else "BEGIN")


_WRITE_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary())


def _write_lock(database: str) -> asyncio.Lock:
    """The process's write lock for one SQLite file (shared by every engine on it), per event loop (an asyncio
    lock belongs to one loop; `asyncio.run` in the CLI makes a new one each time)."""
    locks = _WRITE_LOCKS.setdefault(asyncio.get_running_loop(), {})
    lock = locks.get(database)
    if lock is None:
        lock = locks[database] = asyncio.Lock()
    return lock


class SqliteEngine(AsyncEngine):
    """An AsyncEngine whose `begin()` follows the SQLite write discipline (see the module docstring)."""

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        lock = _write_lock(os.path.realpath(self.sync_engine.url.database or ":memory:"))
        task = asyncio.current_task()
        if getattr(lock, "owner", None) is task and lock.locked():
            # a second write transaction inside the first would wait for itself forever
            raise RuntimeError("nested write transaction on SQLite: write in the transaction already open")
        async with lock:
            lock.owner = task  # type: ignore[attr-defined]
            try:
                async with self.connect() as conn:
                    await conn.execution_options(**{_IMMEDIATE: True})
                    async with conn.begin():
                        yield conn
            finally:
                lock.owner = None  # type: ignore[attr-defined]

    def execution_options(self, **opt: Any) -> SqliteEngine:
        return SqliteEngine(self.sync_engine.execution_options(**opt))


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    url = async_url(url)
    ensure_sqlite_dir(url)
    if is_sqlite(url):
        engine = SqliteEngine(create_async_engine(url, **kwargs).sync_engine)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    else:
        # pre-ping: after a database restart, a pooled connection that died is replaced, not handed out
        engine = create_async_engine(url, pool_size=10, max_overflow=5, pool_pre_ping=True, **kwargs)
    feed.install_guard(engine)
    return engine
