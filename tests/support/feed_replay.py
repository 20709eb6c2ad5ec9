"""Reading the whole feed as a core-recon reader does, replaying it, and the same state read from the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence.tables import BreakRow, MatchRow, Record, Transfer


@dataclass
class FeedState:
    transfers: dict[int, tuple[str, str]] = field(default_factory=dict)  # announced: id -> (state, block hash)
    records: dict[tuple[str, str], int] = field(default_factory=dict)  # key -> version
    matches: set[int] = field(default_factory=set)  # active match ids
    breaks: dict[int, tuple[str, Any]] = field(default_factory=dict)  # id -> (open | resolved, resolution)


async def read_all(client: httpx.AsyncClient, headers: dict[str, str], *, after: int = 0, limit: int = 1000,
                   types: str | None = None) -> tuple[list[dict], int]:
    """Follow `next_after` until a page comes back short. Checks order and uniqueness on the way."""
    events: list[dict] = []
    while True:
        params: dict[str, Any] = {"after": after, "limit": limit}
        if types:
            params["types"] = types
        reply = await client.get("/v1/feed", params=params, headers=headers)
        assert reply.status_code == 200, reply.text
        page = reply.json()
        seqs = [e["seq"] for e in page["events"]]
        assert seqs == sorted(set(seqs)) and all(s > after for s in seqs), (after, seqs)
        assert page["next_after"] >= (seqs[-1] if seqs else after)
        events += page["events"]
        after = page["next_after"]
        if len(page["events"]) < limit:
            return events, after


def replay(events: list[dict]) -> FeedState:
    state = FeedState()
    for e in events:
        obj = e["object"]
        kind = e["type"]
        if kind.startswith("transfer."):
            state.transfers[obj["id"]] = (obj["state"], obj["block_hash"])
        elif kind == "record.ingested":
            state.records[(obj["source"], obj["external_id"])] = obj["version"]
        elif kind == "match.created":
            state.matches.add(obj["id"])
        elif kind == "match.removed":
            state.matches.discard(obj["id"])
        elif kind in ("break.opened", "break.resolved"):
            state.breaks[obj["id"]] = (obj["status"], obj["resolution"])
        else:
            raise AssertionError(f"unknown event type {kind}")
    return state


async def database_state(engine: AsyncEngine) -> FeedState:
    """What the feed must rebuild: announced (confirmed or finalized) transfers, current record versions, active
    matches, breaks (awaiting approval is still open to the feed: the write-off is not decided)."""
    import json

    T, R, M, B = Transfer.__table__, Record.__table__, MatchRow.__table__, BreakRow.__table__
    async with engine.connect() as conn:
        transfers = {r.id: (r.state, r.block_hash) for r in await conn.execute(
            select(T.c.id, T.c.state, T.c.block_hash).where(T.c.state.in_(["confirmed", "finalized"])))}
        records = {(r.source, r.external_id): r.version for r in await conn.execute(
            select(R.c.source, R.c.external_id, R.c.version))}
        matches = {r.id for r in await conn.execute(select(M.c.id).where(M.c.removed_at.is_(None)))}
        breaks = {r.id: ("resolved", json.loads(r.resolution)) if r.status == "resolved" else ("open", None)
                  for r in await conn.execute(select(B.c.id, B.c.status, B.c.resolution))}
    return FeedState(transfers, records, matches, breaks)


def announced(state: FeedState) -> FeedState:
    """The replayed state without transfers whose last event orphaned them (the database may hold them as seen)."""
    live = {i: v for i, v in state.transfers.items() if v[0] != "orphaned"}
    return FeedState(live, state.records, state.matches, state.breaks)
