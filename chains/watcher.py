"""The chain watcher: backfill from the start block, follow the head, survive reorgs and restarts.

Blocks at or below the finalized mark are backfilled with eth_getLogs over adaptive ranges (no headers needed but
one per range for the cursor). Above it, every header is fetched and linked by parent hash before its logs are
accepted, and the (number, hash, parent_hash) window is stored, so a reorg is found either by a parent-hash
mismatch or by the cursor's hash no longer being canonical (also after a restart). On a reorg the watcher walks
back to the common ancestor, orphans the transfers above it and re-indexes. A reorg below finality puts the chain
in `alert` and stops it until an operator allows the rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from chains.errors import ChainError, ReorgTooDeep
from chains.logs import LogFilter, LogSource
from chains.replies import decoded, quantity
from chains.rpc import RpcClient
from chains.store import WatcherStore
from chains.types import (
    BlockHeader,
    ChainSpec,
    ChainState,
    Cursor,
    Marks,
    ReorgRecord,
    Target,
    TokenSpec,
    TransferLog,
    WalletSpec,
)
from chains.window import NODE_BEHIND, deep_fork_point, headers_as_stored, window_ancestor
from wallets import Address

log = logging.getLogger(__name__)
ERROR_BACKOFF_MAX = 60.0  # seconds: the longest pause after chain errors in a row

Progress = Callable[[str, int, int], None]
WalletUpdates = Callable[[], Awaitable[Sequence[WalletSpec] | None]]
"""Asked before each step of `run_forever`: the wallets to follow now, or None when they did not change."""


class ChainWatcher:
    """Indexes Transfers of `tokens` touching `wallets` on one chain into `store`."""

    def __init__(
        self,
        spec: ChainSpec,
        tokens: Sequence[TokenSpec],
        wallets: Sequence[WalletSpec],
        rpc: RpcClient,
        store: WatcherStore,
        *,
        on_progress: Progress | None = None,
    ) -> None:
        self.spec = spec
        self.rpc = rpc
        self.store = store
        self.source = LogSource(rpc, max_range=spec.max_range)
        self.on_progress = on_progress
        self._token_start = {t.address.lower(): max(t.start_block, spec.start_block) for t in tokens}
        self._tokens = {t.address.lower(): t for t in tokens}
        self._wallet_start: dict[str, int] = {}
        self._wallets: dict[str, WalletSpec] = {}
        self._use_wallets(wallets)
        self._targets: dict[tuple[str, str], Target] = {}
        self.cursor: Cursor | None = None
        self.marks: Marks | None = None
        self._finalized_high = -1
        self.reorgs = 0

    # ---- public -----------------------------------------------------------------------------------------
    async def run_until_caught_up(self) -> Cursor:
        """Index until the cursor reaches the head seen at the last step (`settle index --once`)."""
        await self.prepare()
        while await self.step():
            pass
        state, allow_deep = await self.store.load_state(self.spec.chain_id)
        if state is ChainState.ALERT and not allow_deep:
            raise ReorgTooDeep(f"chain {self.spec.name} is in alert and does not advance: a reorg reached below "
                               f"finality (see `settle chains`; `settle chains allow-deep-reorg {self.spec.name}`)")
        assert self.cursor is not None
        return self.cursor

    async def run_forever(self, stop: asyncio.Event, *, wallets: WalletUpdates | None = None) -> None:
        """Follow the head until `stop` is set. Errors are recorded on the chain and retried after a pause.
        `wallets`, if given, is asked before each step for a changed wallet list (see `set_wallets`)."""
        prepared = False
        failures = 0  # in a row: the pause after a failure doubles (with jitter) up to ERROR_BACKOFF_MAX
        while not stop.is_set():
            try:
                if not prepared:
                    await self.prepare()
                    prepared = True
                elif wallets is not None and (changed := await wallets()) is not None:
                    await self.set_wallets(changed)
                more = await self.step()
                failures = 0
            except ChainError as exc:
                failures += 1
                log.warning("chain %s: %s (%d in a row)", self.spec.name, exc, failures)
                await self.store.record_status(self.spec.chain_id, marks=None, state=None, error=str(exc)[:500])
                more = False
            if not more:
                pause = self.spec.poll_interval
                if failures:
                    pause = min(pause * 2 ** min(failures - 1, 20), max(pause, ERROR_BACKOFF_MAX))
                    pause *= random.uniform(0.75, 1.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)

    async def prepare(self) -> None:
        """Load the cursor and targets; register newly configured tokens and wallets for their own backfill."""
        cid = self.spec.chain_id
        self.cursor = await self.store.load_cursor(cid)
        if self.cursor is None:
            configured = self._configured()
            first = min([self.spec.start_block] + [s for _, _, s in configured])
            # the block before the first (the genesis when starting at 0) anchors a deep reorg's fork point
            anchor = await self.source.header(max(first - 1, 0))
            self.cursor = Cursor(first - 1, anchor.hash if anchor and first > 0 else None)
            targets = [Target(k, a, s, self.cursor.number, True) for k, a, s in configured]
            await self.store.commit_batch(cid, [], [anchor] if anchor else [], self.cursor, await self._marks(),
                                          targets)
        await self._sync_targets()

    async def set_wallets(self, wallets: Sequence[WalletSpec]) -> None:
        """Follow these wallets from now on (between steps). A new one is backfilled from its start block, then
        joins, as in `prepare`; one left out stops being indexed at the cursor, and is backfilled from there if it
        comes back."""
        self._use_wallets(wallets)
        if self.cursor is not None:
            await self._sync_targets()

    def _configured(self) -> list[tuple[str, Address, int]]:
        """(kind, address, start block) of every token and wallet to follow."""
        out = [("token", t.address, self._token_start[a]) for a, t in self._tokens.items()]
        return out + [("wallet", w.address, self._wallet_start[a]) for a, w in self._wallets.items()]

    def _use_wallets(self, wallets: Sequence[WalletSpec]) -> None:
        self._wallet_start = {w.address.lower(): max(w.start_block, self.spec.start_block) for w in wallets}
        self._wallets = {w.address.lower(): w for w in wallets}

    async def _sync_targets(self) -> None:
        """Register the configured tokens and wallets that have no target yet, park the joined targets no longer
        configured at the cursor (indexed up to there: unjoined, so a return backfills only the gap), and follow
        the configured ones."""
        cid = self.spec.chain_id
        assert self.cursor is not None
        stored = {(t.kind, t.address.lower()): t for t in await self.store.load_targets(cid)}
        configured = self._configured()
        wanted = {(k, a.lower()) for k, a, _ in configured}
        new = [Target(k, a, s, s - 1, False) for k, a, s in configured if (k, a.lower()) not in stored]
        parked = [replace(t, synced_to=self.cursor.number, joined=False) for key, t in stored.items()
                  if t.joined and key not in wanted]
        if new or parked:
            await self.store.save_targets(cid, new + parked)
        every = {**stored, **{(t.kind, t.address.lower()): t for t in new}}
        self._targets = {k: v for k, v in every.items() if k in wanted}

    async def step(self) -> bool:
        """One unit of work. Returns True while there is more to do right away."""
        state, allow_deep = await self.store.load_state(self.spec.chain_id)
        if state is ChainState.ALERT and not allow_deep:
            return False
        marks = self.marks = await self._marks()
        cursor = self.cursor
        assert cursor is not None, "prepare() first"
        if cursor.hash is not None:
            canonical = await self.source.header(cursor.number)
            if canonical is None:  # a node behind our cursor (e.g. after failover): wait for it
                return False
            if canonical.hash != cursor.hash:
                await self._handle_reorg(marks, allow_deep)
                return True
        if any(not t.joined for t in self._targets.values()):
            await self._catch_up_targets(marks)
        if cursor.number >= marks.head:
            await self.store.promote(self.spec.chain_id, marks, cursor)
            await self.store.record_status(self.spec.chain_id, marks=marks, state=ChainState.LIVE, error=None,
                                           endpoints=self.rpc.health())
            return False
        if cursor.number < marks.finalized:
            await self._backfill(cursor.number + 1, marks.finalized, marks)
        else:
            await self._follow(marks)
        behind = self.cursor is not None and self.cursor.number < marks.head
        await self.store.record_status(self.spec.chain_id, marks=marks,
                                       state=ChainState.SYNCING if behind else ChainState.LIVE, error=None,
                                       endpoints=self.rpc.health())
        return behind

    # ---- marks --------------------------------------------------------------------------------------------
    async def _marks(self) -> Marks:
        head = await self.rpc.call("eth_blockNumber", [], expect=quantity) - self.rpc.head_lag
        if self.spec.confirmations == "safe":
            safe_header = await self.source.header("safe")
            safe = safe_header.number if safe_header else -1
        else:
            safe = head - int(self.spec.confirmations)
        if self.spec.finality == "tag":
            fin_header = await self.source.header("finalized")
            finalized = fin_header.number if fin_header else -1
        else:
            finalized = head - int(self.spec.finality)
        safe, finalized = min(safe, head), min(finalized, head)
        self._finalized_high = max(self._finalized_high, finalized)
        return Marks(head=head, safe=max(safe, finalized), finalized=finalized)

    # ---- selection ----------------------------------------------------------------------------------------
    def _filter(self, *, only: Target | None = None) -> LogFilter:
        joined = [t for t in self._targets.values() if t.joined]
        tokens = [t.address for t in joined if t.kind == "token"]
        wallets = [t.address for t in joined if t.kind == "wallet"]
        if only is not None and only.kind == "token":
            tokens = [only.address]
            wallets = list(self._wallets)
        elif only is not None:
            tokens, wallets = [t.address for t in self._tokens.values()], [only.address]
        scan = self.spec.mode == "scan" or (self.spec.mode == "auto" and len(wallets) > self.spec.scan_threshold)
        return LogFilter(tokens=tuple(sorted(tokens)), wallets=None if scan else tuple(sorted(wallets)))

    def _select(self, logs: list[dict]) -> list[TransferLog]:
        """Keep Transfers of our tokens that touch one of our wallets at or after that pair's start block."""
        kept = []
        for t in decoded(logs, self.spec.chain_id):
            token_start = self._token_start.get(t.token.lower())
            if token_start is None:
                continue
            s = self._wallet_start.get(t.sender.lower())
            r = self._wallet_start.get(t.recipient.lower())
            if (s is not None and t.block_number >= max(s, token_start)) or (
                r is not None and t.block_number >= max(r, token_start)
            ):
                kept.append(t)
        return kept

    # ---- backfill (at or below finality) ------------------------------------------------------------------
    async def _backfill(self, start: int, end: int, marks: Marks, *, target: Target | None = None) -> None:
        """Fetch, check and decode ranges in a producer task while the previous range commits: the database
        and the node (and our decoding) overlap instead of taking turns. A target's backfill runs up to the
        cursor: its blocks above finality are checked against the stored window instead (`_backfill_window`)."""
        if target is not None:
            trusted = min(end, max(self._finalized_high, marks.finalized))
            if start <= trusted:
                await self._backfill_ranges(start, trusted, marks, target)
            if max(start, trusted + 1) <= end:
                await self._backfill_window(max(start, trusted + 1), end, marks, target)
            return
        await self._backfill_ranges(start, end, marks, None)

    async def _backfill_ranges(self, start: int, end: int, marks: Marks, target: Target | None) -> None:
        flt = self._filter(only=target)
        queue: asyncio.Queue[tuple[int, list[TransferLog], BlockHeader] | None] = asyncio.Queue(maxsize=2)

        async def produce() -> None:
            try:
                async for _, hi, logs in self.source.ranges(start, end, flt):
                    transfers = await self._with_times(self._select(logs))
                    del logs
                    end_header = await self.source.header(hi)
                    if end_header is None:
                        raise ChainError(f"block {hi} vanished during backfill")
                    await queue.put((hi, transfers, end_header))
            finally:
                await queue.put(None)

        producer = asyncio.create_task(produce())
        try:
            while (chunk := await queue.get()) is not None:
                await self._commit_backfill_chunk(*chunk, marks=marks, target=target)
        finally:
            if not producer.done():
                producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        if not producer.cancelled() and producer.exception() is not None:
            raise producer.exception()  # type: ignore[misc]

    async def _backfill_window(self, start: int, end: int, marks: Marks, target: Target) -> None:
        """A target's backfill above finality, where the stored window says which blocks we indexed: headers are
        those of the window (a node that answers another hash at a height is on a fork that lost, or we are and
        the next step finds the reorg: retried, never believed), and logs are checked against them as when
        following the head (re-asked by the stored hash when they disagree)."""
        window = await self.store.window_hashes(self.spec.chain_id, start, end)
        flt = self._filter(only=target)
        for lo in range(start, end + 1, self.spec.live_batch):
            hi = min(end, lo + self.spec.live_batch - 1)
            headers = await headers_as_stored(self.source, lo, hi, window, chain=self.spec.name)
            logs: list[dict] = []
            async for _, _, chunk in self.source.ranges(lo, hi, flt, headers):
                logs.extend(chunk)
            checked = await self.source.checked_against_headers(logs, headers, flt)
            transfers = [t if t.block_time is not None else replace(t, block_time=headers[t.block_number].timestamp)
                         for t in self._select(checked)]
            await self._commit_backfill_chunk(hi, transfers, headers[hi], marks=marks, target=target)

    async def _commit_backfill_chunk(
        self, hi: int, transfers: list[TransferLog], end_header: BlockHeader, *, marks: Marks,
        target: Target | None,
    ) -> None:
        cid = self.spec.chain_id
        if target is None:
            self.cursor = Cursor(hi, end_header.hash)
            await self.store.commit_batch(cid, transfers, [end_header], self.cursor, marks)
        else:
            target = replace(self._targets[(target.kind, target.address.lower())], synced_to=hi)
            self._targets[(target.kind, target.address.lower())] = target
            await self.store.commit_batch(cid, transfers, [], None, marks, [target])
        if self.on_progress:
            self.on_progress(self.spec.name, hi, marks.head)

    async def _with_times(self, transfers: list[TransferLog]) -> list[TransferLog]:
        missing = sorted({t.block_number for t in transfers if t.block_time is None})
        if not missing:
            return transfers
        headers = await self.source.headers(missing)
        return [t if t.block_time is not None else replace(t, block_time=headers[t.block_number].timestamp)
                for t in transfers]

    async def _catch_up_targets(self, marks: Marks) -> None:
        assert self.cursor is not None
        for key, target in list(self._targets.items()):
            if target.joined:
                continue
            if target.synced_to < self.cursor.number:
                log.info("backfilling new %s %s from block %d", target.kind, target.address, target.start_block)
                await self._backfill(target.synced_to + 1, self.cursor.number, marks, target=target)
            joined = replace(self._targets[key], synced_to=self.cursor.number, joined=True)
            self._targets[key] = joined
            await self.store.save_targets(self.spec.chain_id, [joined])

    # ---- following the head (above finality) --------------------------------------------------------------
    async def _follow(self, marks: Marks) -> None:
        cursor = self.cursor
        assert cursor is not None
        end = min(marks.head, cursor.number + self.spec.live_batch)
        fetched = await self.source.headers(list(range(cursor.number + 1, end + 1)))
        linked: dict[int, BlockHeader] = {}
        parent = cursor.hash
        for number in range(cursor.number + 1, end + 1):
            header = fetched.get(number)
            if header is None or (parent is not None and header.parent_hash != parent):
                break  # not there yet, or the chain moved under us: the next step re-checks the cursor
            linked[number] = header
            parent = header.hash
        if not linked:
            return
        last = max(linked)
        flt = self._filter()
        logs: list[dict] = []
        async for _, _, chunk in self.source.ranges(cursor.number + 1, last, flt, linked):
            logs.extend(chunk)
        checked = await self.source.checked_against_headers(logs, linked, flt)
        transfers = self._select(checked)
        times = {n: h.timestamp for n, h in linked.items()}
        transfers = [t if t.block_time is not None else replace(t, block_time=times[t.block_number])
                     for t in transfers]
        self.cursor = Cursor(last, linked[last].hash)
        await self.store.commit_batch(self.spec.chain_id, transfers, list(linked.values()), self.cursor, marks)
        if self.on_progress:
            self.on_progress(self.spec.name, last, marks.head)

    # ---- reorgs -------------------------------------------------------------------------------------------
    async def _handle_reorg(self, marks: Marks, allow_deep: bool) -> None:
        old = self.cursor
        assert old is not None and old.hash is not None
        cid = self.spec.chain_id
        ancestor, number = await window_ancestor(self.store, self.source, cid, old)
        if ancestor is NODE_BEHIND:
            return  # the node is behind: wait
        deep = ancestor is None or ancestor.number < self._finalized_high
        if deep and not allow_deep:
            detail = (f"reorg below finality: cursor {old.number} {old.hash} is no longer canonical and no "
                      f"common ancestor was found above the finalized block {self._finalized_high}")
            await self._alert(detail)
        if ancestor is None:
            ancestor = await deep_fork_point(self.store, self.source, cid, old, number, self.spec.max_reorg_walk)
        if ancestor is None:
            await self._alert(
                f"deep reorg: none of the block hashes we hold within {self.spec.max_reorg_walk} blocks below the "
                f"cursor {old.number} {old.hash} is canonical; nothing was rolled back (if the node is wrong, "
                f"`settle chains acknowledge {self.spec.name}` once it agrees with the cursor again)")
        assert ancestor is not None
        head = await self.source.header(marks.head)
        new_head = Cursor(head.number, head.hash) if head else Cursor(marks.head, None)
        record = ReorgRecord(cid, old.number - ancestor.number, ancestor, old, new_head, deep=deep)
        orphaned = await self.store.rollback(cid, record)
        self.cursor = ancestor
        self.reorgs += 1
        for key, target in self._targets.items():
            if not target.joined and target.synced_to > ancestor.number:
                self._targets[key] = replace(target, synced_to=ancestor.number)
        log.warning("chain %s: reorg of depth %d at %d; %d transfers orphaned",
                    self.spec.name, record.depth, ancestor.number, orphaned)

    async def _alert(self, detail: str) -> None:
        await self.store.set_alert(self.spec.chain_id, detail)
        log.error("chain %s: %s", self.spec.name, detail)
        raise ReorgTooDeep(detail)
