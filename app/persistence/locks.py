"""One watcher per chain, and one reconciler pass at a time: PostgreSQL advisory locks, or exclusive lock files
on SQLite."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import WatcherLocked

_LOCK_NAMESPACE = 0x5E771E << 32  # keeps our advisory keys apart from other applications'


@asynccontextmanager
async def chain_lock(engine: AsyncEngine, chain_id: int, lock_dir: Path) -> AsyncIterator[None]:
    """Hold the watcher lock of `chain_id` for the duration of the block; raise WatcherLocked if taken."""
    if engine.dialect.name == "postgresql":
        key = _LOCK_NAMESPACE + chain_id
        async with engine.connect() as conn:
            if not await conn.scalar(select(func.pg_try_advisory_lock(key))):
                raise WatcherLocked(f"another watcher holds the lock for chain {chain_id}")
            await conn.commit()
            try:
                yield
            finally:
                await conn.scalar(select(func.pg_advisory_unlock(key)))
                await conn.commit()
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    async with _file_lock(lock_dir / f"chain-{chain_id}.lock", wait=False) as taken:
        if not taken:
            raise WatcherLocked(f"another watcher holds the lock for chain {chain_id}")
        yield


RECONCILER_LOCK_POLL = 0.05  # seconds between tries while another process reconciles


@asynccontextmanager
async def reconciler_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold the reconciler lock for the duration of the block, waiting for it while another process (`settle
    recon` beside `settle serve`) holds it. SQLite: an exclusive lock file beside the database file, so every
    process on that database shares it whatever its data_dir. PostgreSQL: nothing here, the pass takes a
    transaction-scoped advisory lock itself."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    async with _file_lock(Path(f"{database}.reconciler.lock"), wait=True):
        yield


@asynccontextmanager
async def _file_lock(path: Path, *, wait: bool) -> AsyncIterator[bool]:
    """An exclusive flock on `path` held for the block (the holder's pid written into it). `wait`: poll until it
    is free (a cancelled wait leaves nothing behind); else yield False at once when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                await asyncio.sleep(RECONCILER_LOCK_POLL)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
