"""Fetching Transfer logs with adaptive ranges and reply checks.

A reply is rejected and re-asked by block hash when: a log's block hash differs from the header's (or from other
logs of the same block), a (block, logIndex) pair repeats, or a block's logsBloom says it has matching logs but
none came back. In the backfill, headers are fetched in JSON-RPC batches: those of the blocks that have logs (hash
check), and of every block of a range where a reply came back empty (bloom check); above finality the watcher
already holds every header. Range errors shrink the range: to the provider's suggestion when it gives one, else
to its stated maximum, else by half; the largest range that worked is remembered per URL.

Successful replies size the next range by their log count: ranges start small (INITIAL_RANGE blocks), grow while
replies stay sparse, and shrink or stop growing so that one reply holds about `target_logs` logs. That keeps the
memory a chunk takes (and the commit it becomes) the same however dense the chain is.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from chains.bloom import bloom_contains
from chains.decoding import TRANSFER_TOPIC
from chains.errors import InconsistentReply, MalformedReply, RangeTooLarge
from chains.replies import header_numbered, header_or_none, log_list
from chains.rpc import RpcClient
from chains.types import BlockHeader
from wallets import address_to_topic

log = logging.getLogger(__name__)

HEADER_BATCH = 100
MAX_REASKS = 4
INITIAL_RANGE = 20
"""Blocks in the first getLogs range: dense chains carry hundreds of Transfers per block."""
TARGET_LOGS = 10_000
"""Logs per getLogs reply that the range sizing aims at (also the common provider cap on results)."""
FAST_GROWTH = 8
"""Growth factor of the range per sparse reply while no provider has refused a range."""


@dataclass(frozen=True)
class LogFilter:
    """Tokens to watch and, in wallet mode, the wallet addresses (None: token-wide scan, filtered locally)."""

    tokens: tuple[str, ...]
    wallets: tuple[str, ...] | None

    def queries(self) -> list[dict[str, Any]]:
        base: dict[str, Any] = {"address": list(self.tokens)}
        if self.wallets is None:
            return [{**base, "topics": [TRANSFER_TOPIC]}]
        topics = [address_to_topic(w) for w in self.wallets]
        return [{**base, "topics": [TRANSFER_TOPIC, topics]}, {**base, "topics": [TRANSFER_TOPIC, None, topics]}]

    def bloom_says_maybe(self, bloom: str) -> bool:
        if not bloom or not bloom_contains(bloom, TRANSFER_TOPIC):
            return False
        if not any(bloom_contains(bloom, t) for t in self.tokens):
            return False
        if self.wallets is None:
            return True
        return any(bloom_contains(bloom, address_to_topic(w)) for w in self.wallets)


def _in_log_index_order(entries: list[dict]) -> list[dict]:
    """One block's logs by logIndex (nodes answer in that order, so this rarely sorts)."""
    indexes = [int(e["logIndex"], 16) for e in entries]
    if all(a < b for a, b in zip(indexes, indexes[1:], strict=False)):
        return entries
    return [e for _, e in sorted(zip(indexes, entries, strict=True), key=lambda pair: pair[0])]


class LogSource:
    """Headers and verified logs for one chain, over an RpcClient."""

    def __init__(self, rpc: RpcClient, *, max_range: int, target_logs: int = TARGET_LOGS) -> None:
        self.rpc = rpc
        self.max_range = max_range
        self.target_logs = target_logs
        self._range = min(max_range, INITIAL_RANGE)
        self.range_errors = 0
        self.reasks = 0

    # ---- headers --------------------------------------------------------------------------------------------
    async def header(self, block: int | str) -> BlockHeader | None:
        tag = hex(block) if isinstance(block, int) else block
        header: BlockHeader | None = await self.rpc.call(
            "eth_getBlockByNumber", [tag, False],
            expect=header_numbered(block) if isinstance(block, int) else header_or_none)
        return header

    async def headers(self, numbers: Sequence[int]) -> dict[int, BlockHeader]:
        """Headers by number; a number the node does not have yet is absent from the result."""
        out: dict[int, BlockHeader] = {}
        for i in range(0, len(numbers), HEADER_BATCH):
            chunk = numbers[i : i + HEADER_BATCH]
            replies = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in chunk],
                                           expect=header_or_none)
            for asked, header in zip(chunk, replies, strict=True):
                if header is not None:
                    if header.number != asked:  # the ids matched, yet another block: the node is broken
                        raise MalformedReply(f"asked for block {asked}, got block {header.number}")
                    out[header.number] = header
        return out

    # ---- logs -----------------------------------------------------------------------------------------------
    async def ranges(
        self, start: int, end: int, flt: LogFilter, headers: dict[int, BlockHeader] | None = None
    ) -> AsyncIterator[tuple[int, int, list[dict]]]:
        """Yield (from, to, logs) chunks covering [start, end] in order, sizing each chunk adaptively.
        `headers`, when the caller already has them, spare the header fetch that verifies an empty reply."""
        cursor = start
        while cursor <= end:
            size = min(self._range, self._cap(), end - cursor + 1)
            to = cursor + size - 1
            try:
                logs = await self._range_logs(cursor, to, flt, headers)
            except RangeTooLarge as exc:
                self._shrink(exc, cursor, to)
                continue
            self._learn(size, len(logs))
            yield cursor, to, logs
            cursor = to + 1

    async def _range_logs(
        self, start: int, end: int, flt: LogFilter, headers: dict[int, BlockHeader] | None = None
    ) -> list[dict]:
        """Logs of [start, end] for every query of `flt`, merged, each reply checked on its own (duplicates, mixed
        hashes). Without `headers` (the backfill) they are also checked against the headers: of the blocks that
        have logs (hash), and, when a reply came back empty, of every block (logsBloom). With `headers` (above
        finality) the caller checks them with `checked_against_headers`."""
        queries = flt.queries()
        replies: list[list[dict]] = []
        any_empty = False
        for query in queries:
            reply = await self.rpc.call("eth_getLogs", [{**query, "fromBlock": hex(start), "toBlock": hex(end)}],
                                        expect=log_list)
            any_empty = any_empty or not reply
            replies.append(await self._consistent(reply, flt, query))
        if len(replies) == 1:  # one checked reply holds each (block, logIndex) once and in order
            merged = replies[0]
        else:
            unique = {(e["blockHash"], e["logIndex"]): e for reply in replies for e in reply}
            merged = sorted(unique.values(), key=lambda e: (int(e["blockNumber"], 16), int(e["logIndex"], 16)))
        if headers is not None:
            return merged
        numbers = range(start, end + 1) if any_empty else sorted({int(e["blockNumber"], 16) for e in merged})
        return await self.checked_against_headers(merged, await self.headers(list(numbers)), flt)

    async def _consistent(self, reply: list[dict], flt: LogFilter, query: dict[str, Any]) -> list[dict]:
        """Drop and re-ask (by block hash) the blocks whose logs fail the per-reply checks. Returns the logs in
        (block number, logIndex) order."""
        by_block: dict[int, list[dict]] = defaultdict(list)
        for entry in reply:
            by_block[int(entry["blockNumber"], 16)].append(entry)
        good: list[dict] = []
        for number in sorted(by_block):
            entries = by_block[number]
            hashes = {e["blockHash"] for e in entries}
            indexes = [e["logIndex"] for e in entries]
            if len(hashes) == 1 and len(set(indexes)) == len(indexes):
                good.extend(_in_log_index_order(entries))
                continue
            header = await self.header(number)
            if header is None:
                raise InconsistentReply(f"block {number} vanished while its logs were re-asked")
            good.extend(_in_log_index_order(await self.by_hash(header, flt, query)))
        return good

    async def by_hash(self, header: BlockHeader, flt: LogFilter, query: dict[str, Any]) -> list[dict]:
        """Logs of one block asked by its hash; checked again; raises InconsistentReply if it stays bad."""
        for _ in range(MAX_REASKS):
            self.reasks += 1
            reply = await self.rpc.call("eth_getLogs", [{**query, "blockHash": header.hash}], expect=log_list)
            indexes = [e["logIndex"] for e in reply]
            if all(e["blockHash"] == header.hash for e in reply) and len(set(indexes)) == len(indexes):
                return list(reply)
        raise InconsistentReply(f"logs of block {header.number} ({header.hash}) stay inconsistent")

    async def checked_against_headers(
        self, logs: list[dict], headers: dict[int, BlockHeader], flt: LogFilter
    ) -> list[dict]:
        """Check logs against known headers: hash equality and logsBloom presence. Re-ask bad blocks by hash."""
        by_block: dict[int, list[dict]] = defaultdict(list)
        for entry in logs:
            by_block[int(entry["blockNumber"], 16)].append(entry)
        out: list[dict] = []
        for number in sorted(headers):
            header = headers[number]
            entries = by_block.pop(number, [])
            hash_ok = all(e["blockHash"] == header.hash for e in entries)
            if hash_ok and (entries or not flt.bloom_says_maybe(header.logs_bloom)):
                out.extend(entries)
                continue
            log.warning("re-asking logs of block %d by hash (hash_ok=%s, empty=%s)", number, hash_ok, not entries)
            # a bloom has false positives, so an empty answer may be true; but this node just answered an empty
            # list where the bloom matches, so one empty answer by hash is not believed: ask twice
            out.extend(await self._all_by_hash(header, flt) or await self._all_by_hash(header, flt))
        if by_block:
            raise InconsistentReply(f"logs returned for blocks outside the asked range: {sorted(by_block)[:5]}")
        return out

    async def _all_by_hash(self, header: BlockHeader, flt: LogFilter) -> list[dict]:
        merged: dict[str, dict] = {}
        for query in flt.queries():
            for entry in await self.by_hash(header, flt, query):
                merged[entry["logIndex"]] = entry
        return sorted(merged.values(), key=lambda e: int(e["logIndex"], 16))

    # ---- adaptive range -------------------------------------------------------------------------------------
    def _cap(self) -> int:
        cap = self.rpc.current.range_cap
        return cap if cap else self.max_range

    def _learn(self, size: int, count: int) -> None:
        """After `size` blocks answered with `count` logs: grow (by up to FAST_GROWTH times until a provider has
        refused a range, then by doubling as before), but never past the size that would bring about
        `target_logs` logs; shrink to that size when the reply had more."""
        ep = self.rpc.current
        ep.max_ok_range = max(ep.max_ok_range, size)
        if size >= self._range and self._range < self.max_range:
            step = 2 if self.range_errors else FAST_GROWTH
            self._range = min(self.max_range, self._range * step, ep.range_cap or self.max_range)
        if count:
            self._range = max(1, min(self._range, size * self.target_logs // count))

    def _shrink(self, exc: RangeTooLarge, start: int, end: int) -> None:
        self.range_errors += 1
        size = end - start + 1
        ep = next((e for e in self.rpc.endpoints if e.redacted == exc.url), self.rpc.current)
        if exc.suggested and exc.suggested[0] <= start <= exc.suggested[1] < end:
            new = exc.suggested[1] - start + 1
        elif exc.max_range and exc.max_range < size:
            new = exc.max_range
            ep.range_cap = exc.max_range
        else:
            new = max(1, size // 2)
        if size == 1:
            raise exc
        self._range = max(1, new)
        log.info("getLogs range %d too large on %s; next %d", size, ep.redacted, self._range)
