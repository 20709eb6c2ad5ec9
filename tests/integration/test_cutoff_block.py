"""The cut-off block: the last block at or before an instant, by binary search over headers. Seeded against a
linear oracle (with runs of equal timestamps, as on L2s), and on anvil with blocks mined at chosen times, with
the cut-off between two blocks and exactly on one."""

from __future__ import annotations

import math
import random

import pytest

from chains.cutoff import CutoffNotReached, cutoff_block
from chains.logs import LogSource
from chains.rpc import RpcClient
from chains.types import BlockHeader
from tests.support.harness import Devnet


def _fake_chain(timestamps: list[int]):
    calls: list[int] = []

    async def header_at(n: int) -> BlockHeader | None:
        calls.append(n)
        return BlockHeader(n, f"0x{n:064x}", f"0x{max(n - 1, 0):064x}", timestamps[n]) if n < len(timestamps) else None

    return header_at, calls


async def test_binary_search_agrees_with_a_linear_scan_in_log_n_reads() -> None:
    rng = random.Random(1701)
    for _ in range(300):
        n = rng.randrange(2, 3000)
        times, t = [], rng.randrange(10**9)
        for _ in range(n):
            t += rng.choice([0, 0, 1, 2, 12, 250])  # equal timestamps happen on L2s
            times.append(t)
        low = rng.randrange(n - 1)
        instant = rng.randrange(times[low] - 5, times[-1])
        header_at, calls = _fake_chain(times)
        found = await cutoff_block(header_at, instant, low=low, high=n - 1)
        expected = max((i for i in range(low, n) if times[i] <= instant), default=None)
        assert (found.number if found else None) == expected
        assert len(calls) <= 2 + math.ceil(math.log2(n)) + 1


async def test_before_the_data_is_none_and_a_head_still_before_the_cutoff_is_not_reached() -> None:
    header_at, _ = _fake_chain([100, 200, 300])
    assert await cutoff_block(header_at, 99, low=0, high=2) is None
    with pytest.raises(CutoffNotReached):
        await cutoff_block(header_at, 300, low=0, high=2)


async def test_cutoff_block_on_anvil_between_blocks_and_exactly_on_one(chain_a: Devnet) -> None:
    anvil = chain_a.anvil
    start = anvil.block_number()
    base = int(anvil.get_block("latest")["timestamp"], 16) + 10_000
    for i in range(40):
        anvil.rpc("evm_setNextBlockTimestamp", [hex(base + 100 * i)])
        anvil.rpc("evm_mine", [])
    head = anvil.block_number()
    source = LogSource(RpcClient([anvil.url]), max_range=100)
    try:
        between = await cutoff_block(source.header, base + 100 * 17 + 50, low=start, high=head)
        exact = await cutoff_block(source.header, base + 100 * 23, low=start, high=head)
    finally:
        await source.rpc.close()
    assert between is not None and exact is not None
    assert (between.number, between.timestamp) == (start + 18, base + 1700)
    assert (exact.number, exact.timestamp) == (start + 24, base + 2300)
    assert between.hash == anvil.get_block(start + 18)["hash"]
