"""Balance check: indexed balance vs `balanceOf` at one pinned block, per (wallet, token).

indexed = balanceOf at (pair start block - 1), read once and kept, + indexed in - indexed out up to the pinned
block. The pinned block is the chain's cursor, asked by hash, so both sides see the same state. A difference is
stored, never hidden: USDT-like `DestroyedBlackFunds` and `Issue`/`Redeem` change balances with no Transfer.
Reads are batched (JSON-RPC batches, one grouped query per token and start block): thousands of deposit
addresses cost a few round trips, not thousands.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import SettleError
from app.indexer import make_rpc
from app.persistence import balances_repo as repo
from app.persistence.watcher_store import SqlWatcherStore
from app.settings import ChainConfig, Settings, TokenConfig
from app.wallet_book import RegisteredWallet, wallet_book
from chains.balances import balances_of
from chains.errors import HistoryUnavailable
from chains.rpc import RpcClient
from chains.types import Cursor


@dataclass(frozen=True)
class CheckResult:
    wallet: str
    token: str
    symbol: str
    block_number: int
    block_hash: str
    opening: int
    indexed: int
    onchain: int

    @property
    def difference(self) -> int:
        return self.onchain - self.indexed


async def check_chain(settings: Settings, engine: AsyncEngine, chain: ChainConfig) -> list[CheckResult]:
    """Check every (active wallet, token) of `chain` at its cursor; store and return the results. Inactive
    wallets are not indexed past their deactivation, so they are not checked."""
    cursor = await SqlWatcherStore(engine).load_cursor(chain.chain_id)
    if cursor is None or cursor.hash is None:
        raise SettleError(f"chain {chain.name} has not been indexed yet")
    wallets = (await wallet_book(settings, engine)).active_on(chain.chain_id)
    rpc = make_rpc(chain)
    try:
        results: list[CheckResult] = []
        for token in settings.tokens_on(chain):
            results += await _check_token(engine, chain, wallets, token, cursor, rpc)
    except HistoryUnavailable as exc:
        raise SettleError(f"chain {chain.name}: none of its RPC URLs keeps the state of past blocks that the balance "
                          f"check reads (balanceOf at the cursor and at each pair's opening block): an archive node "
                          f"is needed in chains.rpc_urls ({exc.reason})") from None
    finally:
        await rpc.close()
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await repo.save_checks(conn, [repo.check_row(chain.chain_id, r.wallet, r.token, r.block_number,
                                                     r.block_hash, r.opening, r.indexed, r.onchain, now)
                                      for r in results])
    return results


async def _check_token(
    engine: AsyncEngine, chain: ChainConfig, wallets: list[RegisteredWallet], token: TokenConfig, cursor: Cursor,
    rpc: RpcClient,
) -> list[CheckResult]:
    starts = {w.address: max(chain.start_block, w.start_block or 0, token.start_block or 0) for w in wallets}
    async with engine.connect() as conn:
        openings = await repo.opening_balances(conn, chain.chain_id, token.address)
    missing_by_block: dict[int, list[str]] = defaultdict(list)
    for wallet, start in starts.items():
        if wallet not in openings:
            missing_by_block[start - 1].append(wallet)
    new: list[tuple[str, int, int]] = []
    for block, wallets in missing_by_block.items():
        amounts = await balances_of(rpc, token.address, wallets, block) if block >= 0 else [0] * len(wallets)
        new += [(w, block, a) for w, a in zip(wallets, amounts, strict=True)]
    if new:
        async with engine.begin() as conn:
            await repo.save_opening_balances(conn, chain.chain_id, token.address, new)
        openings.update({w: (b, a) for w, b, a in new})
    wallets = list(starts)
    onchain = await balances_of(rpc, token.address, wallets, cursor.hash)  # type: ignore[arg-type]
    flows: dict[str, int] = {}
    by_first: dict[int, list[str]] = defaultdict(list)
    for wallet in wallets:
        by_first[openings[wallet][0] + 1].append(wallet)
    async with engine.connect() as conn:
        for first, group in by_first.items():
            got = await repo.net_flows(conn, chain.chain_id, token.address, group, first, cursor.number)
            flows.update({w: got.get(w, 0) for w in group})
    return [CheckResult(w, token.address, token.symbol, cursor.number, cursor.hash,  # type: ignore[arg-type]
                        openings[w][1], openings[w][1] + flows[w], chain_amount)
            for w, chain_amount in zip(wallets, onchain, strict=True)]
