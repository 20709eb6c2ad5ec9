"""The `settle` CLI end to end: index --once, chains, balances check; SIGKILL mid-backfill then restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence.db import sync_url
from tests.support.harness import Devnet, address_for, indexed, wallet, write_toml
from tests.support.rpc_proxy import Fault, FaultProxy

REPO = Path(__file__).parents[2]
DEPOSIT = address_for("deposit-k")
CUSTOMER = address_for("customer-k")


def settle(config: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "--config", str(config), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]


def _config(tmp_path: Path, url: str, chain: Devnet, rpc: str, **overrides: object) -> Path:
    return write_toml(tmp_path / "settle.toml", database_url=url, data_dir=tmp_path / "data",
                      chains=[chain.chain_config("a", rpc_urls=[rpc], **overrides)], tokens=chain.token_configs("a"),
                      wallets=[wallet(DEPOSIT, "dep")])


def _cursor(url: str) -> int | None:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return conn.execute(text("select cursor_number from chain_status")).scalar()
    except Exception:  # the table does not exist until the child has migrated  # noqa: BLE001
        return None
    finally:
        engine.dispose()


async def test_index_once_chains_and_balances_from_the_command_line(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    usdc = chain_a.tokens["usdc"]
    usdc.mint(CUSTOMER, 10**9)
    usdc.transfer(CUSTOMER, DEPOSIT, 5_000_000)
    chain_a.anvil.mine(8)
    with FaultProxy(chain_a.anvil.url) as proxy:
        config = _config(tmp_path, database_url, chain_a, proxy.url)
        done = settle(config, "index", "--once")
        assert done.returncode == 0, done.stderr
        status = settle(config, "chains")
        check = settle(config, "balances", "check")
    assert status.returncode == 0 and "live" in status.stdout
    assert str(chain_a.anvil.block_number()) in status.stdout
    assert check.returncode == 0 and "5" in check.stdout
    for out in (done, status, check):
        assert "SECRETKEY" not in out.stdout + out.stderr
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT])


async def test_sigkill_in_the_middle_of_a_backfill_then_restart_leaves_no_gap_and_no_duplicate(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    usdc = chain_a.tokens["usdc"]
    usdc.mint(CUSTOMER, 10**12)
    for i in range(60):
        usdc.transfer(CUSTOMER, DEPOSIT, 1_000 + i)
    chain_a.anvil.mine(20)
    head = chain_a.anvil.block_number()
    with FaultProxy(chain_a.anvil.url) as proxy:
        proxy.add(Fault("slow", delay=0.15, times=None))  # every getLogs is slow: the backfill takes seconds
        config = _config(tmp_path, database_url, chain_a, proxy.url, max_getlogs_range=2, finality=10)
        child = subprocess.Popen([sys.executable, "-m", "app", "--config", str(config), "index", "--once"],
                                 cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while (cursor := _cursor(database_url)) is None or cursor < 20:
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        killed_at = _cursor(database_url)
        assert killed_at is not None and 20 <= killed_at < head - 10  # really in the middle of the backfill
        proxy.clear()
        again = settle(config, "index", "--once")
    assert again.returncode == 0, again.stderr
    assert await indexed(engine, chain_a.chain_id) == chain_a.canonical_transfers([DEPOSIT])
    engine_sync = create_engine(sync_url(database_url))
    with engine_sync.connect() as conn:
        dupes = conn.execute(text("select tx_hash, log_index, count(*) from transfers group by tx_hash, log_index "
                                  "having count(*) > 1")).all()
    engine_sync.dispose()
    assert dupes == []


def test_serve_refuses_to_start_with_a_token_whose_decimals_differ_from_its_contract(
    chain_a: Devnet, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    usdc = chain_a.tokens["usdc"]
    tokens = [dict(t, decimals=18) if t["address"] == usdc.address else t for t in chain_a.token_configs("a")]
    config = write_toml(tmp_path / "settle.toml", database_url=database_url, data_dir=tmp_path / "data",
                        chains=[chain_a.chain_config("a")], tokens=tokens, wallets=[wallet(DEPOSIT, "dep")])
    done = settle(config, "serve", "--port", "0")  # would serve forever (and time out) if it started
    assert done.returncode != 0
    stderr = " ".join(done.stderr.split())  # rich wraps lines (another item of issue 9)
    assert f"token USDC {usdc.address} on chain a is configured with decimals = 18" in stderr
    assert "contract's decimals() is 6" in stderr
