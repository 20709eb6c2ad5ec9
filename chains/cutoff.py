"""The cut-off block of a chain: the last block whose timestamp is at or before an instant, found by binary search
over headers (O(log n) header reads). Block timestamps never decrease along a chain (several L2 blocks can share
one), which is all the search needs.

The caller stores the result with its hash and pins every later read (balanceOf, EIP-1898) to that hash, so a
reorg across the cut-off is noticed rather than read through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from chains.errors import ChainError
from chains.types import BlockHeader

HeaderAt = Callable[[int], Awaitable[BlockHeader | None]]


class CutoffNotReached(ChainError):
    """The chain's head is still before the instant: the cut-off block is not known yet."""


async def cutoff_block(header_at: HeaderAt, instant: int, *, low: int, high: int) -> BlockHeader | None:
    """The last block in [low, high] with timestamp <= `instant` (unix seconds); None when block `low` is already
    after it (the instant is before the data). Raises CutoffNotReached when block `high` is still at or before the
    instant and may have successors within it: pass the head as `high` and call again later. `low` is a block
    known to exist (the chain's start block, or a previous day's cut-off block, which narrows the search)."""
    if low > high:
        raise ValueError(f"empty block range [{low}, {high}]")
    first = await _must(header_at, low)
    if first.timestamp > instant:
        return None
    last = await _must(header_at, high)
    if last.timestamp <= instant:
        raise CutoffNotReached(f"block {high} (time {last.timestamp}) is not yet after the cut-off {instant}")
    best = first  # invariant: best.timestamp <= instant < timestamp of block `high`
    lo, hi = low + 1, high - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        header = await _must(header_at, mid)
        if header.timestamp <= instant:
            best, lo = header, mid + 1
        else:
            hi = mid - 1
    return best


async def _must(header_at: HeaderAt, number: int) -> BlockHeader:
    header = await header_at(number)
    if header is None:
        raise ChainError(f"the node has no block {number}")
    return header
