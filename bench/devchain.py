"""The benchmark chain: exactly N USDC-like Transfer logs over B consecutive blocks, paid by BatchSender to W
deposit addresses, optionally cached on disk with anvil's --dump-state / --load-state.

Amounts are raw base units: transfer j (0-based, in chain order) pays AMOUNT_BASE + j to wallet j % W.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_utils import keccak

from chains.devnet import MAX_UINT256, Anvil, BatchSender, DevnetError, deploy_token, encode_call
from chains.devnet import anvil as anvil_module
from wallets import Address, to_checksum

CHAIN_ID = 31_337
AMOUNT_BASE = 1_000
MAX_PER_TX = 500
TX_BASE_GAS = 300_000
TX_GAS_PER_TRANSFER = 32_000
"""Measured: a batch of 500 transfers to fresh holders uses 14.4M gas (~29k each); 32k leaves headroom."""
MIN_BLOCK_GAS = 60_000_000
_DUMP_TIMEOUT_S = 600.0
_LOAD_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class BenchChain:
    """What the benchmark needs to know about a generated chain (also the cache's metadata)."""

    logs: int
    blocks: int
    wallets: int
    token: str
    first_block: int
    last_block: int
    gas_limit: int
    generated_s: float

    @property
    def amount_sum(self) -> int:
        return AMOUNT_BASE * self.logs + self.logs * (self.logs - 1) // 2


def deposit_addresses(count: int) -> list[Address]:
    """`count` deterministic addresses no one holds a key for (the receiving deposit wallets)."""
    return [to_checksum("0x" + keccak(text=f"bench-deposit-{i}")[-20:].hex()) for i in range(count)]


def per_block_counts(logs: int, blocks: int) -> list[int]:
    """Transfers per block: `logs` spread as evenly as possible, earlier blocks take the remainder."""
    base, extra = divmod(logs, blocks)
    return [base + (1 if i < extra else 0) for i in range(blocks)]


def block_gas_limit(logs: int, blocks: int) -> int:
    per_block = -(-logs // blocks)
    return max(MIN_BLOCK_GAS, 2 * (TX_BASE_GAS + TX_GAS_PER_TRANSFER * per_block))


def _cache_paths(cache_dir: Path, logs: int, blocks: int, wallets: int) -> tuple[Path, Path]:
    stem = cache_dir / f"backfill-n{logs}-b{blocks}-w{wallets}"
    return stem.with_suffix(".state.json"), stem.with_suffix(".meta.json")


@contextmanager
def bench_chain(logs: int, blocks: int, wallets: int, cache_dir: Path | None) -> Iterator[tuple[Anvil, BenchChain]]:
    """A running anvil holding the benchmark chain: loaded from `cache_dir` when cached, else generated (and
    saved there on exit when `cache_dir` is given; the benchmark only reads, so the chain is unchanged)."""
    if logs < 1 or blocks < 1 or wallets < 1:
        raise DevnetError("--logs, --blocks and --wallets must be positive")
    state, meta = _cache_paths(cache_dir, logs, blocks, wallets) if cache_dir else (None, None)
    if state is not None and meta is not None and state.is_file() and meta.is_file():
        chain = BenchChain(**json.loads(meta.read_text()))
        with _patient_start(_LOAD_TIMEOUT_S):
            anvil = Anvil(CHAIN_ID, gas_limit=chain.gas_limit, extra_args=["--load-state", str(state)]).start()
        try:
            if anvil.block_number() < chain.last_block:
                raise DevnetError(f"cached state {state} ends before block {chain.last_block}; delete it")
            yield anvil, chain
        finally:
            anvil.stop()
        return
    anvil = Anvil(CHAIN_ID, gas_limit=block_gas_limit(logs, blocks),
                  extra_args=["--dump-state", str(state)] if state is not None else []).start()
    generated = None
    try:
        generated = _generate(anvil, logs, blocks, wallets)
        yield anvil, generated
    finally:
        if generated is not None and state is not None and meta is not None:
            _save(anvil, state)
            meta.write_text(json.dumps(asdict(generated)))
        anvil.stop()


@contextmanager
def _patient_start(seconds: float) -> Iterator[None]:
    """Anvil.start waits 15 s for the node to answer; loading a state of a million logs takes longer."""
    saved = anvil_module._START_TIMEOUT_S
    anvil_module._START_TIMEOUT_S = seconds
    try:
        yield
    finally:
        anvil_module._START_TIMEOUT_S = saved


def _save(anvil: Anvil, state: Path) -> None:
    """Stop anvil with SIGTERM and wait for its --dump-state to finish (Anvil.stop would SIGKILL after 5 s)."""
    print(f"saving chain state to {state} ...", flush=True)
    state.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pid = anvil.pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _DUMP_TIMEOUT_S
    while Path(f"/proc/{pid}").exists() and _state_of(pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.1)
    anvil.stop()
    print(f"saved chain state to {state} ({state.stat().st_size / 2**20:.0f} MiB, "
          f"{time.perf_counter() - started:.1f} s)", flush=True)


def _state_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def _generate(anvil: Anvil, logs: int, blocks: int, wallets: int) -> BenchChain:
    started = time.perf_counter()
    token = deploy_token(anvil, "usdc")
    batch = BatchSender.deploy(anvil)
    sender = anvil.accounts[1]
    token.mint(sender, AMOUNT_BASE * logs + logs * logs)
    token.approve(sender, batch.address, MAX_UINT256)
    recipients = deposit_addresses(wallets)
    first = anvil.block_number() + 1
    j = 0
    # Automine off, one evm_mine per block: automine may fold quickly sent transactions into one block.
    anvil.set_automine(False)
    try:
        for count in per_block_counts(logs, blocks):
            for lo in range(0, count, MAX_PER_TX):
                n = min(MAX_PER_TX, count - lo)
                to = [recipients[(j + k) % wallets] for k in range(n)]
                amounts = [AMOUNT_BASE + j + k for k in range(n)]
                data = encode_call("batchTransfer(address,address[],uint256[])", [token.address, to, amounts])
                anvil.send_tx(sender, batch.address, data, gas=TX_BASE_GAS + TX_GAS_PER_TRANSFER * n, wait=False)
                j += n
            anvil.rpc("evm_mine")
    finally:
        anvil.set_automine(True)
    anvil.mine(1)  # one block above the range, so that finality depth 1 covers all of it
    last = first + blocks - 1
    if anvil.block_number() != last + 1:
        raise DevnetError(f"expected head {last + 1} after generation, got {anvil.block_number()}")
    return BenchChain(logs=logs, blocks=blocks, wallets=wallets, token=token.address, first_block=first,
                      last_block=last, gas_limit=anvil.gas_limit or MIN_BLOCK_GAS,
                      generated_s=time.perf_counter() - started)

