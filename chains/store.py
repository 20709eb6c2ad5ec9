"""What a chain watcher needs from persistence. The app implements it over SQL; tests may fake it.

Every method that writes is one database transaction: the batch's transfers, its block window and the cursor are
committed together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chains.types import BlockHeader, ChainState, Cursor, Marks, ReorgRecord, Target, TransferLog


class WatcherStore(Protocol):
    async def load_cursor(self, chain_id: int) -> Cursor | None: ...

    async def load_state(self, chain_id: int) -> tuple[ChainState, bool]:
        """The chain's state and whether an operator allowed the next reorg to go below finality."""
        ...

    async def load_targets(self, chain_id: int) -> list[Target]: ...

    async def save_targets(self, chain_id: int, targets: Sequence[Target]) -> None: ...

    async def window_hash(self, chain_id: int, number: int) -> str | None:
        """The stored hash of block `number`, if it is in the block window."""
        ...

    async def window_hashes(self, chain_id: int, first: int, last: int) -> dict[int, str]:
        """The stored hashes of the blocks numbered first..last that are in the block window."""
        ...

    async def stored_hashes(self, chain_id: int, first: int, last: int) -> list[tuple[int, str]]:
        """(number, hash) of every block numbered first..last that we hold a hash of: the window, its kept
        checkpoints, and the blocks of live transfers. Highest first. Finds a deep reorg's fork point."""
        ...

    async def commit_batch(
        self,
        chain_id: int,
        transfers: Sequence[TransferLog],
        blocks: Sequence[BlockHeader],
        cursor: Cursor | None,
        marks: Marks,
        targets: Sequence[Target] = (),
    ) -> int:
        """Insert transfers (idempotent on (chain_id, tx_hash, log_index); an orphaned one re-mined is revived),
        add `blocks` to the window, move the cursor (None: leave it), save target progress, and promote states
        by `marks`, all in one transaction. Returns the number of new or revived transfers."""
        ...

    async def rollback(self, chain_id: int, reorg: ReorgRecord) -> int:
        """Orphan transfers above the ancestor, drop the window above it, move the cursor to it and record the
        reorg, in one transaction. Returns the number of transfers orphaned."""
        ...

    async def promote(self, chain_id: int, marks: Marks, cursor: Cursor) -> None:
        """seen -> confirmed up to min(safe, cursor); -> finalized up to min(finalized, cursor); prune window."""
        ...

    async def set_alert(self, chain_id: int, detail: str) -> None: ...

    async def record_status(
        self, chain_id: int, *, marks: Marks | None, state: ChainState | None, error: str | None,
        endpoints: list[dict] | None = None,
    ) -> None: ...
