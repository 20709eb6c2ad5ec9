"""One watcher per chain: a PostgreSQL advisory lock, or an exclusive lock file on SQLite."""

from __future__ import annotations

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
    fd = os.open(lock_dir / f"chain-{chain_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WatcherLocked(f"another watcher holds the lock for chain {chain_id}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
