"""Indexed balances agree with balanceOf at the pinned block; no-event balance changes show as differences."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence.tables import BalanceCheck
from tests.support.harness import (
    Devnet,
    address_for,
    assert_balances_agree,
    balance_differences,
    index_once,
    make_settings,
    wallet,
)
from wallets import to_checksum

DEPOSIT = address_for("deposit-b")
HOT = address_for("hot-b")
CUSTOMER = address_for("customer-b")


def _settings(tmp_path: Path, url: str, chain: Devnet, start_block: int = 0, extra_wallets: list | None = None):
    return make_settings(tmp_path, url, [chain.chain_config("a", start_block=start_block)],
                         chain.token_configs("a"),
                         [wallet(DEPOSIT, "dep"), wallet(HOT, "hot", "hot", "house")] + (extra_wallets or []))


def _history(chain: Devnet) -> None:
    usdc, usdt, dai = chain.tokens["usdc"], chain.tokens["usdt"], chain.tokens["dai"]
    usdc.mint(CUSTOMER, 10**12)
    usdt.mint(CUSTOMER, 10**12)
    dai.mint(HOT, 5 * 10**18)
    usdc.transfer(CUSTOMER, DEPOSIT, 700_000)
    usdt.transfer(CUSTOMER, DEPOSIT, 300_000)
    usdc.transfer(DEPOSIT, HOT, 650_000)
    dai.transfer(HOT, CUSTOMER, 10**18)
    usdc.burn(HOT, 50_000)


async def test_indexed_balances_equal_balance_of(chain_a: Devnet, engine: AsyncEngine, database_url: str,
                                                 tmp_path: Path) -> None:
    _history(chain_a)
    chain_a.anvil.mine(8)
    settings = _settings(tmp_path, database_url, chain_a)
    await index_once(settings, engine)
    await assert_balances_agree(settings, engine)
    async with engine.connect() as conn:
        checks = (await conn.execute(select(BalanceCheck.__table__))).mappings().all()
    assert len(checks) == 2 * 3  # two wallets x three tokens
    head = chain_a.anvil.get_block(checks[0]["block_number"])
    assert all(c["block_hash"] == head["hash"] for c in checks)
    by_pair = {(c["wallet"], c["token"]): c for c in checks}
    assert by_pair[(HOT, chain_a.tokens["usdc"].address)]["onchain_balance"] == 600_000


async def test_start_in_the_middle_of_the_chain_uses_the_opening_balance(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    _history(chain_a)
    middle = chain_a.anvil.block_number() + 1
    usdc = chain_a.tokens["usdc"]
    usdc.transfer(CUSTOMER, DEPOSIT, 11)
    usdc.transfer(HOT, CUSTOMER, 22)
    chain_a.anvil.mine(8)
    settings = _settings(tmp_path, database_url, chain_a, start_block=middle)
    await index_once(settings, engine)
    await assert_balances_agree(settings, engine)
    async with engine.connect() as conn:
        checks = (await conn.execute(select(BalanceCheck.__table__))).mappings().all()
    dep_usdc = next(c for c in checks if c["wallet"] == DEPOSIT and c["token"] == usdc.address)
    assert dep_usdc["opening_balance"] == 50_000 and dep_usdc["indexed_balance"] == 50_011


async def test_usdt_destroyed_black_funds_shows_as_a_difference(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    _history(chain_a)
    usdt = chain_a.tokens["usdt"]
    owner = to_checksum(usdt.owner)
    usdt.issue(10**9)  # Issue: supply to the owner with no Transfer event
    usdt.add_black_list(DEPOSIT)
    usdt.destroy_black_funds(DEPOSIT)  # zeroes DEPOSIT's 300_000 with no Transfer event
    chain_a.anvil.mine(8)
    settings = _settings(tmp_path, database_url, chain_a, extra_wallets=[wallet(owner, "issuer", "omnibus",
                                                                               "house")])
    await index_once(settings, engine)
    diffs = await balance_differences(settings, engine)
    assert diffs[("a", DEPOSIT, "USDT")] == -300_000
    assert diffs[("a", owner, "USDT")] == 10**9
    assert {k: v for k, v in diffs.items() if v} == {("a", DEPOSIT, "USDT"): -300_000,
                                                      ("a", owner, "USDT"): 10**9}
