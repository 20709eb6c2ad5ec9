"""Balance check: indexed balance vs `balanceOf` at one pinned block, per (wallet, token).

indexed = balanceOf at (pair start block - 1), read once and kept, + indexed in - indexed out up to the pinned
block. The pinned block is the chain's cursor, asked by hash, so both sides see the same state. A difference is
stored, never hidden: USDT-like `DestroyedBlackFunds` and `Issue`/`Redeem` change balances with no Transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.errors import SettleError
from app.indexer import make_rpc
from app.persistence import balances_repo as repo
from app.persistence.watcher_store import SqlWatcherStore
from app.settings import ChainConfig, Settings
from chains.balances import balance_of


@dataclass(frozen=True)
class CheckResult:
    wallet: str
    token: str
    symbol: str
    block_number: int
    block_hash: str
    indexed: int
    onchain: int

    @property
    def difference(self) -> int:
        return self.onchain - self.indexed


async def check_chain(settings: Settings, engine: AsyncEngine, chain: ChainConfig) -> list[CheckResult]:
    """Check every (wallet, token) of `chain` at its cursor; store and return the results."""
    cursor = await SqlWatcherStore(engine).load_cursor(chain.chain_id)
    if cursor is None or cursor.hash is None:
        raise SettleError(f"chain {chain.name} has not been indexed yet")
    rpc = make_rpc(chain)
    results = []
    try:
        now = datetime.now(UTC)
        for wallet in settings.wallets_on(chain):
            for token in settings.tokens_on(chain):
                start = max(chain.start_block, wallet.start_block or 0, token.start_block or 0)
                async with engine.begin() as conn:
                    opening = await repo.opening_balance(conn, chain.chain_id, wallet.address, token.address)
                if opening is None:
                    amount = await balance_of(rpc, token.address, wallet.address, start - 1) if start > 0 else 0
                    opening = (start - 1, amount)
                    async with engine.begin() as conn:
                        await repo.save_opening_balance(conn, chain.chain_id, wallet.address, token.address,
                                                        *opening)
                onchain = await balance_of(rpc, token.address, wallet.address, cursor.hash)
                async with engine.begin() as conn:
                    flow = await repo.indexed_flow(conn, chain.chain_id, wallet.address, token.address,
                                                   opening[0] + 1, cursor.number)
                    indexed = opening[1] + flow
                    await repo.save_check(conn, **repo.check_row(
                        chain.chain_id, wallet.address, token.address, cursor.number, cursor.hash, opening[1],
                        indexed, onchain, now))
                results.append(CheckResult(wallet.address, token.address, token.symbol, cursor.number,
                                           cursor.hash, indexed, onchain))
    finally:
        await rpc.close()
    return results
