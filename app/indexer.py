"""Wiring the chain watchers from the settings and the wallet registry: one locked watcher per chain. A following
watcher picks up wallets registered, deactivated or reactivated while it runs (each poll: one version query)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import SettleError
from app.persistence.locks import chain_lock
from app.persistence.watcher_store import SqlWatcherStore
from app.settings import ChainConfig, Settings
from app.wallet_book import RegisteredWallet, wallet_book
from chains.balances import token_decimals
from chains.errors import ChainError, WrongChain
from chains.replies import header_or_none
from chains.rpc import RpcClient
from chains.types import ChainSpec, ChainState, Cursor, TokenSpec, WalletSpec
from chains.watcher import ChainWatcher, Progress

log = logging.getLogger(__name__)


def tune_gc_for_indexing() -> None:
    """Indexing allocates millions of short-lived, acyclic objects (decoded logs, rows): the cyclic collector
    found nothing but cost 30% of the indexer's CPU. Freeze what start-up allocated and collect the young
    generation less often. Called by the long-running entry points (`settle index`, `settle serve`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def chain_spec(chain: ChainConfig) -> ChainSpec:
    return ChainSpec(
        chain_id=chain.chain_id,
        name=chain.name,
        start_block=chain.start_block,
        confirmations=chain.confirmations,
        finality=chain.finality,
        max_range=chain.max_getlogs_range,
        mode=chain.mode,
        scan_threshold=chain.scan_threshold,
        poll_interval=chain.poll_interval,
    )


INTERACTIVE_TIMEOUT, INTERACTIVE_RETRIES = 5.0, 3


def make_rpc(chain: ChainConfig, *, interactive: bool = False) -> RpcClient:
    """The chain's RPC client; `interactive` (an API request waiting on it) bounds its timeout and retries."""
    if interactive:
        return RpcClient(chain.urls, timeout=min(chain.request_timeout, INTERACTIVE_TIMEOUT),
                         max_retries=min(chain.max_retries, INTERACTIVE_RETRIES), failover_lag=chain.failover_lag,
                         chain_id=chain.chain_id)
    return RpcClient(chain.urls, timeout=chain.request_timeout, max_retries=chain.max_retries,
                     failover_lag=chain.failover_lag, chain_id=chain.chain_id)


class StartupMismatch(SettleError):
    """The chain does not match the configuration (a token's decimals): indexing does not start."""


async def refuse_misconfigured_chains(settings: Settings) -> None:
    """`settle serve` before it starts: `check_chain_at_start` on every chain. A URL on another chain or a token's
    wrong decimals is raised (the service does not start); a node that does not answer now is only logged (the
    watcher retries it, and checks it before it reads from it)."""
    for chain in settings.chains:
        rpc = make_rpc(chain, interactive=True)
        try:
            await check_chain_at_start(settings, chain, rpc)
        except (WrongChain, StartupMismatch):
            raise
        except ChainError as exc:
            log.warning("chain %s could not be checked at start: %s", chain.name, exc)
        finally:
            await rpc.close()


async def check_chain_at_start(settings: Settings, chain: ChainConfig, rpc: RpcClient) -> None:
    """Before a watcher starts (`settle index`, `settle serve`): every URL serves the configured chain id
    (WrongChain names the one that does not) and every token's configured decimals are its contract's
    `decimals()` (StartupMismatch names the token). Amounts would otherwise be shown 10**k off."""
    await rpc.check_chain_ids()
    wrong = []
    for token in settings.tokens_on(chain):
        actual = await token_decimals(rpc, token.address)
        if actual is None:  # no code there now, or no decimals(): nothing proves the configuration wrong
            log.warning("token %s %s on chain %s: decimals() not answered; the configured %d is not verified",
                        token.symbol, token.address, chain.name, token.decimals)
        elif actual != token.decimals:
            wrong.append(f"token {token.symbol} {token.address} on chain {chain.name} is configured with decimals = "
                         f"{token.decimals} but its contract's decimals() is {actual}")
    if wrong:
        raise StartupMismatch("; ".join(wrong))


@dataclass
class WatcherHandle:
    chain: ChainConfig
    watcher: ChainWatcher
    rpc: RpcClient


def wallet_specs(chain: ChainConfig, wallets: Sequence[RegisteredWallet]) -> list[WalletSpec]:
    """What the watcher follows: these wallets (the active ones, `WalletBook.active_on`), from their own start
    block or the chain's."""
    return [WalletSpec(w.address, w.start_block if w.start_block is not None else chain.start_block)
            for w in wallets]


def build_watcher(
    settings: Settings, chain: ChainConfig, wallets: Sequence[RegisteredWallet], store: SqlWatcherStore, *,
    on_progress: Progress | None = None,
) -> WatcherHandle:
    start = chain.start_block
    tokens = [TokenSpec(t.address, t.symbol, t.decimals, t.start_block if t.start_block is not None else start)
              for t in settings.tokens_on(chain)]  # type: ignore[arg-type]
    rpc = make_rpc(chain)
    watcher = ChainWatcher(chain_spec(chain), tokens, wallet_specs(chain, wallets), rpc, store,
                           on_progress=on_progress)
    return WatcherHandle(chain, watcher, rpc)


def registry_changes(settings: Settings, engine: AsyncEngine, chain: ChainConfig, seen: tuple[int, int]
                     ) -> Callable[[], Awaitable[list[WalletSpec] | None]]:
    """For `ChainWatcher.run_forever`: the chain's wallet specs when the registry changed since `seen`, else None."""

    async def changes() -> list[WalletSpec] | None:
        nonlocal seen
        book = await wallet_book(settings, engine)
        if book.version == seen:
            return None
        seen = book.version
        return wallet_specs(chain, book.active_on(chain.chain_id))

    return changes


async def index_chain(
    settings: Settings,
    engine: AsyncEngine,
    chain: ChainConfig,
    *,
    once: bool,
    stop: asyncio.Event | None = None,
    on_progress: Progress | None = None,
) -> Cursor | None:
    """Index one chain under its lock: until caught up (`once`) or until `stop` is set."""
    store = SqlWatcherStore(engine)
    await store.ensure_chain(chain.chain_id, chain.name)
    book = await wallet_book(settings, engine)
    handle = build_watcher(settings, chain, book.active_on(chain.chain_id), store, on_progress=on_progress)
    try:
        try:
            await check_chain_at_start(settings, chain, handle.rpc)
        except (WrongChain, StartupMismatch) as exc:  # shown by `settle chains` and the API, not only logged
            await store.record_status(chain.chain_id, marks=None, state=None, error=str(exc)[:500])
            raise
        async with chain_lock(engine, chain.chain_id, settings.data_dir / "locks"):
            if once:
                return await handle.watcher.run_until_caught_up()
            await handle.watcher.run_forever(stop or asyncio.Event(),
                                             wallets=registry_changes(settings, engine, chain, book.version))
            return handle.watcher.cursor
    finally:
        await handle.rpc.close()


async def index_chains(
    settings: Settings,
    engine: AsyncEngine,
    chains: Sequence[ChainConfig],
    *,
    once: bool,
    stop: asyncio.Event | None = None,
    on_progress: Progress | None = None,
) -> list[Cursor | None]:
    return list(await asyncio.gather(*(
        index_chain(settings, engine, c, once=once, stop=stop, on_progress=on_progress) for c in chains)))


async def acknowledge_alert(settings: Settings, engine: AsyncEngine, chain: ChainConfig, *, actor: str) -> Cursor:
    """An operator acknowledges a chain's alert that no longer reproduces: when the node says the stored cursor's
    block is canonical again (a node that was wrong, not a reorg), the chain leaves `alert` without a walk or a
    rollback, audited. Refused (SettleError) when the chain is not in alert or the cursor is still not canonical.
    Returns the cursor checked."""
    store = SqlWatcherStore(engine)
    state, _ = await store.load_state(chain.chain_id)
    cursor = await store.load_cursor(chain.chain_id)
    if state is not ChainState.ALERT or cursor is None or cursor.hash is None:
        raise SettleError(f"chain {chain.name} is not in alert")
    rpc = make_rpc(chain, interactive=True)
    try:
        header = await rpc.call("eth_getBlockByNumber", [hex(cursor.number), False], expect=header_or_none)
    finally:
        await rpc.close()
    if header is None or header.hash != cursor.hash:
        raise SettleError(f"chain {chain.name}: the cursor block {cursor.number} {cursor.hash} is still not canonical "
                          f"(the node has {header.hash if header else 'no such block'}); the alert reproduces: see "
                          f"`settle chains allow-deep-reorg {chain.name}`")
    if not await store.acknowledge_alert(chain.chain_id, cursor, actor=actor, entity=f"chain:{chain.name}"):
        raise SettleError(f"chain {chain.name} changed while it was checked; run the command again")
    return cursor
