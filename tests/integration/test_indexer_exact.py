"""The indexed set equals the canonical chain's logs exactly, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from chains.devnet import MAX_UINT256
from tests.support.harness import (
    Devnet,
    address_for,
    assert_balances_agree,
    index_once,
    indexed,
    make_settings,
    rows,
    wallet,
)

HOT = address_for("hot")
COLD = address_for("cold")
DEPOSIT = address_for("deposit-1")
CUSTOMER = address_for("customer")
STRANGER = address_for("stranger")


def _settings(tmp_path: Path, url: str, chain: Devnet, **chain_overrides: object):
    return make_settings(
        tmp_path, url, [chain.chain_config("a", **chain_overrides)], chain.token_configs("a"),
        [wallet(HOT, "hot", "hot", "house"), wallet(COLD, "cold", "cold", "house"), wallet(DEPOSIT, "dep-1")],
    )


def _scenario(chain: Devnet) -> None:
    usdc, usdt, dai = chain.tokens["usdc"], chain.tokens["usdt"], chain.tokens["dai"]
    usdc.mint(CUSTOMER, 10_000_000_000)
    usdc.transfer(CUSTOMER, DEPOSIT, 1_250_500_000)  # deposit
    usdc.mint(HOT, 5_000_000)  # mint into our wallet (from the zero address)
    usdc.transfer(HOT, STRANGER, 1)  # withdrawal of one base unit
    usdc.transfer(DEPOSIT, HOT, 1_250_500_000)  # sweep between two company wallets
    usdc.burn(HOT, 2_000_000)  # burn (to the zero address)
    usdt.mint(CUSTOMER, 900_000)
    usdt.transfer(CUSTOMER, DEPOSIT, 900_000)  # USDT-like: transfer returns nothing
    dai.mint(COLD, MAX_UINT256)  # the largest amount a uint256 holds
    dai.transfer(COLD, STRANGER, MAX_UINT256 - 7)
    usdc.mint(CUSTOMER, 200 * 10**6)
    recipients = [HOT if i % 2 == 0 else address_for(f"payee-{i}") for i in range(200)]
    chain.batch.batch_transfer(usdc, CUSTOMER, recipients, [10**6 + i for i in range(200)])
    usdc.transfer(CUSTOMER, STRANGER, 5)  # does not touch us: must not be indexed


async def test_indexed_set_equals_canonical_logs(chain_a: Devnet, engine: AsyncEngine, database_url: str,
                                                 tmp_path: Path) -> None:
    _scenario(chain_a)
    chain_a.anvil.mine(10)
    settings = _settings(tmp_path, database_url, chain_a)
    await index_once(settings, engine)

    expected = chain_a.canonical_transfers([HOT, COLD, DEPOSIT])
    got = await indexed(engine, chain_a.chain_id)
    assert got == expected
    amounts = {t[-1] for t in got}
    assert {1, MAX_UINT256, MAX_UINT256 - 7, 1_250_500_000} <= amounts
    assert len([t for t in got if t[5] == HOT and t[4] == chain_a.batch.address]) == 0  # from is the customer
    assert len([t for t in got if t[4] == CUSTOMER and t[5] == HOT]) >= 100  # the batch's transfers to HOT
    await assert_balances_agree(settings, engine)


async def test_indexing_twice_changes_nothing(chain_a: Devnet, engine: AsyncEngine, database_url: str,
                                              tmp_path: Path) -> None:
    _scenario(chain_a)
    chain_a.anvil.mine(10)
    settings = _settings(tmp_path, database_url, chain_a)
    await index_once(settings, engine)
    before = await rows(engine, chain_a.chain_id)
    await index_once(settings, engine)
    assert await rows(engine, chain_a.chain_id) == before


async def test_token_wide_scan_mode_finds_the_same_set(chain_a: Devnet, engine: AsyncEngine, database_url: str,
                                                       tmp_path: Path) -> None:
    _scenario(chain_a)
    chain_a.anvil.mine(10)
    settings = _settings(tmp_path, database_url, chain_a, mode="scan")
    await index_once(settings, engine)
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([HOT, COLD, DEPOSIT])
    await assert_balances_agree(settings, engine)
