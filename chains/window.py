"""The stored block window, read against a node: a reorg's common ancestor (block by block through the window),
a deep reorg's fork point (from every hash we hold below it, capped), and a node's headers checked against it.

The window holds (number, hash, parent_hash) of the unfinalized blocks, plus one checkpoint every
`CHECKPOINT_EVERY` blocks below finality and the start anchor; the blocks of our live transfers carry hashes too.
"""

from __future__ import annotations

import asyncio
import logging

from chains.errors import ChainError, InconsistentReply
from chains.logs import HEADER_BATCH, MAX_REASKS, LogSource
from chains.store import WatcherStore
from chains.types import BlockHeader, Cursor

log = logging.getLogger(__name__)

NODE_BEHIND = Cursor(-1, None)
"""`window_ancestor`'s answer when the node does not have a block of the window yet: wait for it."""


async def window_ancestor(store: WatcherStore, source: LogSource, chain_id: int, old: Cursor
                          ) -> tuple[Cursor | None, int]:
    """Walk down from the cursor through the window to the highest block whose stored hash is canonical.
    Returns (ancestor or None, the last number looked at: the first one below the window when none was found);
    (NODE_BEHIND, n) when the node does not have block n."""
    number = old.number
    while number > 0:
        number -= 1
        stored = await store.window_hash(chain_id, number)
        if stored is None:
            return None, number
        canonical = await source.header(number)
        if canonical is None:
            return NODE_BEHIND, number
        if canonical.hash == stored:
            return Cursor(number, stored), number
    return None, number


async def deep_fork_point(store: WatcherStore, source: LogSource, chain_id: int, old: Cursor, below: int,
                          max_walk: int) -> Cursor | None:
    """The highest block at or below `below` whose hash we hold (window checkpoints, the start anchor, blocks of
    our live transfers) and which is canonical: every block under it is too (hashes chain), and we hold nothing
    between it and the first block that is not, so rolling back to it orphans exactly what was reorged away.
    Looks no deeper than `max_walk` blocks below the cursor; None if nothing matches there."""
    floor = max(0, old.number - max_walk)
    if below < floor:
        return None
    candidates = await store.stored_hashes(chain_id, floor, below)
    for i in range(0, len(candidates), HEADER_BATCH):
        chunk = candidates[i:i + HEADER_BATCH]
        headers = await source.headers(sorted({n for n, _ in chunk}))
        for number, stored in chunk:
            header = headers.get(number)
            if header is None:
                raise ChainError(f"the node does not have block {number} below our cursor: retried later")
            if header.hash == stored:
                return Cursor(number, stored)
    return None


async def headers_as_stored(source: LogSource, lo: int, hi: int, window: dict[int, str], *, chain: str
                            ) -> dict[int, BlockHeader]:
    """The node's headers of lo..hi, which must be the stored window's (`window`: number -> hash; a block we hold
    no hash of is taken as the node has it). Asked again a few times (a node behind, or load-balanced onto one on
    another fork), then InconsistentReply: never believed."""
    numbers = list(range(lo, hi + 1))
    differ: list[int] = []
    for attempt in range(MAX_REASKS):
        headers = await source.headers(numbers)
        differ = [n for n in numbers if n not in headers or headers[n].hash != window.get(n, headers[n].hash)]
        if not differ:
            return headers
        log.warning("chain %s: blocks %s differ from the stored window; asking again", chain, differ[:5])
        await asyncio.sleep(source.rpc.backoff.delay(attempt))
    raise InconsistentReply(f"blocks {differ[:5]} of the node differ from the stored block window (a fork that "
                            f"lost, or a reorg not yet handled): not indexed, retried at the next step")
