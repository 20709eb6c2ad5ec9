"""The FastAPI application. With `run_watchers`, the chain watchers run in the same process as asyncio tasks
started from the lifespan, and APScheduler runs the periodic balance check. Every one of them runs under the
app's `Supervisor` (app.supervision): any exception is logged, counted and retried with backoff, and
/v1/health names the loop that fails."""

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
from app.errors import SettleError, WatcherLocked
from app.indexer import index_chain
from app.persistence.db import make_engine
from app.reconciler import reconcile_once
from app.settings import Settings
from app.supervision import Backoff, Supervisor, watcher_loop
from app.wallet_book import wallet_book
from chains.errors import ChainError
from chains.watcher import Progress

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, engine: AsyncEngine | None = None, run_watchers: bool = False) -> FastAPI:
    own_engine = engine is None
    db = engine or make_engine(settings.database_url)
    cfg = settings.supervision
    supervisor = Supervisor(Backoff(cfg.backoff_initial_seconds, cfg.backoff_max_seconds),
                            stale_intervals=cfg.stale_intervals, stale_min_seconds=cfg.stale_min_seconds)

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
            recon = _Reconciler(settings, db, supervisor)
            checks = supervisor.job("balance-check", lambda: _balance_checks(settings, db),
                                    settings.balance_check_interval)
            scheduler.add_job(checks, "interval", seconds=settings.balance_check_interval, id="balance-check",
                              max_instances=1, coalesce=True)
            scheduler.add_job(recon.run_pass, "interval", seconds=settings.recon.interval, id="recon",
                              max_instances=1, coalesce=True)
            scheduler.start()
            tasks = [asyncio.create_task(_watch(settings, db, supervisor, c.name, stop, recon.after_batch),
                                         name=f"watch-{c.name}") for c in settings.chains]
            tasks.append(asyncio.create_task(supervisor.run_forever("reconciler-follow", lambda: recon.follow(stop),
                                                                    stop), name="recon-after-batches"))
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
    app.state.supervisor = supervisor
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


async def _watch(settings: Settings, engine: AsyncEngine, supervisor: Supervisor, name: str, stop: asyncio.Event,
                 on_progress: Progress | None = None) -> None:
    """Keep one chain's watcher running: any error is logged, counted and retried with backoff, never fatal to
    the API. The watcher itself records chain errors on the chain and goes on; whatever escapes it (a database
    restart, an integrity error, a reply nobody classified) ends up here."""
    chain = settings.chain(name)
    loop = watcher_loop(name)

    def progressed(chain_name: str, block: int, head: int) -> None:  # a committed batch: the watcher works again
        supervisor.succeeded(loop)
        if on_progress is not None:
            on_progress(chain_name, block, head)

    async def work() -> None:
        try:
            await index_chain(settings, engine, chain, once=False, stop=stop, on_progress=progressed)
        except WatcherLocked as exc:  # another process indexes this chain: not a failure of ours
            log.info("watcher %s: %s", name, exc)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(chain.poll_interval, 1.0))

    await supervisor.run_forever(loop, work, stop)


RECONCILER = "reconciler"


class _Reconciler:
    """Runs a reconciler pass after indexed batches (coalesced) and on the APScheduler interval; never two at
    once in this process (across processes, the pass itself takes a lock). A failed pass is recorded by the
    supervisor and retried after its backoff."""

    def __init__(self, settings: Settings, engine: AsyncEngine, supervisor: Supervisor) -> None:
        self.settings, self.engine, self.supervisor = settings, engine, supervisor
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()
        supervisor.track(RECONCILER, settings.recon.interval)

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
            if not await self.run_pass():
                await self.supervisor.pause(RECONCILER, stop)
                self.wake.set()  # what woke us is still to be reconciled

    async def run_pass(self) -> bool:
        async with self.lock:
            return await self.supervisor.attempt(RECONCILER, lambda: reconcile_once(self.settings, self.engine))


async def _balance_checks(settings: Settings, engine: AsyncEngine) -> None:
    """Check every chain; a chain that fails does not stop the others, and the job fails if any did."""
    failed: list[str] = []
    for chain in settings.chains:
        try:
            await check_chain(settings, engine, chain)
        except (SettleError, ChainError) as exc:
            log.warning("balance check of %s failed: %s", chain.name, exc)
            failed.append(f"{chain.name}: {exc}")
    if failed:
        raise SettleError("balance check failed on " + "; ".join(failed))
