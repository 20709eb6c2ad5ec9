"""Two chains indexed at once; token-wide scan mode with 5,000 deposit addresses."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from app.indexer import build_watcher, index_chains
from app.persistence.watcher_store import SqlWatcherStore
from app.wallet_book import wallet_book
from tests.support.harness import Devnet, address_for, assert_balances_agree, indexed, make_settings, wallet

HOT = address_for("hot-m")
CUSTOMER = address_for("customer-m")


async def test_two_chains_indexed_at_once(chain_a: Devnet, chain_b: Devnet, engine: AsyncEngine,
                                          database_url: str, tmp_path: Path) -> None:
    deposits = [address_for(f"dep-m-{i}") for i in range(3)]
    for n, chain in enumerate((chain_a, chain_b)):
        usdc, dai = chain.tokens["usdc"], chain.tokens["dai"]
        usdc.mint(CUSTOMER, 10**12)
        dai.mint(CUSTOMER, 10**24)
        for i, dep in enumerate(deposits):
            usdc.transfer(CUSTOMER, dep, 1_000_000 * (i + 1) + n)
            dai.transfer(CUSTOMER, dep, 10**18 * (i + 1) + n)
        usdc.transfer(deposits[0], HOT, 1_000_000)
        chain.anvil.mine(3)
    settings = make_settings(
        tmp_path, database_url, [chain_a.chain_config("a"), chain_b.chain_config("b")],
        chain_a.token_configs("a") + chain_b.token_configs("b"),
        [wallet(HOT, "hot", "hot", "house")] + [wallet(d, f"dep{i}") for i, d in enumerate(deposits)],
    )
    await index_chains(settings, engine, settings.chains, once=True)
    ours = [HOT, *deposits]
    got_a, got_b = await indexed(engine, chain_a.chain_id), await indexed(engine, chain_b.chain_id)
    assert got_a == chain_a.canonical_transfers(ours) and len(got_a) == 3 + 3 + 1  # mints to the customer are not ours
    assert got_b == chain_b.canonical_transfers(ours)
    assert {t[-1] % 2 for t in got_b if t[5] != HOT} == {1}  # chain b's amounts, not chain a's
    await assert_balances_agree(settings, engine)


async def test_token_wide_scan_with_5000_deposit_addresses(chain_a: Devnet, engine: AsyncEngine,
                                                           database_url: str, tmp_path: Path) -> None:
    deposits = [address_for(f"dep-s-{i}") for i in range(5000)]
    usdc = chain_a.tokens["usdc"]
    usdc.mint(CUSTOMER, 10**15)
    paid = deposits[::17]  # 295 of them receive a deposit
    for i in range(0, len(paid), 100):
        chunk = paid[i:i + 100]
        chain_a.batch.batch_transfer(usdc, CUSTOMER, chunk, [10_000 + j for j in range(len(chunk))])
    strangers = [address_for(f"stranger-{i}") for i in range(50)]
    chain_a.batch.batch_transfer(usdc, CUSTOMER, strangers, [1] * 50)  # token traffic that is not ours
    usdc.transfer(paid[0], HOT, 5_000)
    chain_a.anvil.mine(3)
    settings = make_settings(tmp_path, database_url, [chain_a.chain_config("a")], chain_a.token_configs("a"),
                             [wallet(HOT, "hot", "hot", "house")] + [wallet(d, "dep") for d in deposits])
    store = SqlWatcherStore(engine)
    await store.ensure_chain(chain_a.chain_id, "a")
    wallets = (await wallet_book(settings, engine)).active_on(chain_a.chain_id)
    handle = build_watcher(settings, settings.chains[0], wallets, store)
    try:
        await handle.watcher.run_until_caught_up()
        assert handle.watcher._filter().wallets is None  # auto mode chose the token-wide scan
    finally:
        await handle.rpc.close()
    got = await indexed(engine, chain_a.chain_id)
    assert got == chain_a.canonical_transfers([HOT, *deposits])
    assert len(got) == len(paid) + 1
    await assert_balances_agree(settings, engine)
