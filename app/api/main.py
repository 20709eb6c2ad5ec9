"""The FastAPI application. With `run_watchers`, the chain watchers run in the same process as asyncio tasks
started from the lifespan, and APScheduler runs the periodic balance check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.access import KeyCache
from app.api import document, problems
from app.api.balances_routes import router as balances_router
from app.api.breaks_routes import router as breaks_router
from app.api.feed_routes import router as feed_router
from app.api.limits import BodyLimit
from app.api.records_routes import router as records_router
from app.api.routes import router
from app.api.wallets_routes import router as wallets_router
from app.balance_check import check_chain
from app.errors import SettleError
from app.indexer import index_chain
from app.persistence.db import make_engine
from app.reconciler import reconcile_once
from app.settings import Settings
from app.wallet_book import wallet_book
from chains.errors import ChainError
from chains.watcher import Progress

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, engine: AsyncEngine | None = None, run_watchers: bool = False) -> FastAPI:
    own_engine = engine is None
    db = engine or make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[object]] = []
        scheduler = AsyncIOScheduler(timezone="UTC")
        try:  # seed the config's wallets now rather than in the first request (thousands of deposit addresses)
            await wallet_book(settings, db)
        except (SettleError, OSError, SQLAlchemyError) as exc:
            log.warning("wallet registry not loaded at start: %s", exc)
        if run_watchers:
            recon = _Reconciler(settings, db)
            scheduler.add_job(_balance_checks, "interval", seconds=settings.balance_check_interval,
                              args=[settings, db], id="balance-check", max_instances=1, coalesce=True)
            scheduler.add_job(recon.run_pass, "interval", seconds=settings.recon.interval, id="recon",
                              max_instances=1, coalesce=True)
            scheduler.start()
            tasks = [asyncio.create_task(_watch(settings, db, c.name, stop, recon.after_batch),
                                         name=f"watch-{c.name}") for c in settings.chains]
            tasks.append(asyncio.create_task(recon.follow(stop), name="recon-after-batches"))
        try:
            yield
        finally:
            stop.set()
            if scheduler.running:
                scheduler.shutdown(wait=False)
            await asyncio.gather(*tasks, return_exceptions=True)
            if own_engine:
                await db.dispose()

    app = FastAPI(
        title="Stablecoin settlement tracker",
        version="0.1.0",
        description="Reorg-safe, exact tracking of stablecoin transfers touching the company's wallets.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = db
    app.state.key_cache = KeyCache(settings.api.key_cache_seconds)
    problems.install(app)
    document.complete(app)
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    app.include_router(router)
    app.include_router(records_router)
    app.include_router(breaks_router)
    app.include_router(balances_router)
    app.include_router(feed_router)
    app.include_router(wallets_router)
    return app


async def _watch(settings: Settings, engine: AsyncEngine, name: str, stop: asyncio.Event,
                 on_progress: Progress | None = None) -> None:
    """Keep one chain's watcher running; a lost lock or a crash is logged and retried, never fatal to the API."""
    chain = settings.chain(name)
    while not stop.is_set():
        try:
            await index_chain(settings, engine, chain, once=False, stop=stop, on_progress=on_progress)
        except (SettleError, ChainError) as exc:
            log.error("watcher %s stopped: %s", name, exc)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(chain.poll_interval, 1.0))


class _Reconciler:
    """Runs a reconciler pass after indexed batches (coalesced) and on the APScheduler interval; never two at
    once in this process (across processes, the pass itself takes a PostgreSQL advisory lock)."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings, self.engine = settings, engine
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()

    def after_batch(self, _chain: str, _block: int, _head: int) -> None:
        self.wake.set()

    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            waiter = asyncio.create_task(self.wake.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if stop.is_set():
                return
            self.wake.clear()
            await self.run_pass()

    async def run_pass(self) -> None:
        async with self.lock:
            try:
                await reconcile_once(self.settings, self.engine)
            except SettleError as exc:
                log.warning("reconciler pass failed: %s", exc)


async def _balance_checks(settings: Settings, engine: AsyncEngine) -> None:
    for chain in settings.chains:
        try:
            await check_chain(settings, engine, chain)
        except (SettleError, ChainError) as exc:
            log.warning("balance check of %s failed: %s", chain.name, exc)
