"""Races between a person and the reconciler on PostgreSQL, with two real connections: one holds its
transaction open while the other runs. A transfer ends in exactly one active match (the schema refuses a
second: a 409 for a person, a re-decided pass for the machine); a resolution and a pass never deadlock, and the
machine never overwrites a status a person set after it read it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import resolutions
from app.persistence import audit, feed
from app.persistence import recon_repo as repo
from app.persistence.db import make_engine
from app.persistence.tables import MatchLink, Record, Transfer
from app.reconciler import reconcile_once
from app.records import ingest
from app.settings import Settings
from tests.support.harness import address_for
from tests.support.recon_rows import USDC, WHEN, ReconRows

DEP = address_for("race-dep")
CUSTOMER = address_for("race-customer")
LATER = WHEN + timedelta(days=4)
ML = MatchLink.__table__


@pytest.fixture
def pg(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("a race between two connections: PostgreSQL (SQLite has one writer at a time)")
    return database_url


ROWS = ReconRows(DEP, CUSTOMER)
_settings, _transfer, _record = ROWS.settings, ROWS.transfer, ROWS.record


def _deposit(ext: str) -> dict:
    return {"source": "core", "external_id": ext, "kind": "deposit", "chain": "eth", "token": USDC,
            "amount_base_units": 5_000_000, "wallet": DEP, "segregation": "customer", "status": "completed",
            "created_at": WHEN.isoformat()}


async def _until_blocked(engine: AsyncEngine, task: asyncio.Task, waiting: int = 1) -> None:
    """Return once `task` is done or `waiting` backends of this database wait for a lock (polled; no timing
    is asserted: a task that never blocks is simply done)."""
    for _ in range(2000):
        if task.done():
            return
        async with engine.connect() as conn:
            n = await conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                       "AND wait_event_type = 'Lock'"))
        if n >= waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the task neither finished nor blocked")


async def _active_links_of_transfer(engine: AsyncEngine, transfer_id: int) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(ML.c.match_id).where(ML.c.transfer_id == transfer_id,
                                                                    ML.c.active.is_(True)))).scalars())


async def _hold_a_match(url: str, record: str) -> tuple[AsyncEngine, Any]:
    """Another writer (its own engine and connection) that matched transfer 1 to `record` and has not
    committed yet; the pass and the person cannot see its match. It takes the feed head only when it commits
    (`_commit`), so the only lock the others can meet is on the match links themselves."""
    other = make_engine(url)
    conn = await other.connect()
    await conn.begin()
    await repo.add_match(conn, rule="manual", rule_version="1", transfer_ids=[1], record_keys=[("core", record)],
                         candidates=[], facts={}, actor="ops-elsewhere", at=datetime.now(UTC),
                         observed={1: "0x" + f"{1:064x}"})
    return other, conn


async def _commit(conn: Any) -> None:
    await feed.flush(conn)
    await conn.commit()


async def _setup(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(Transfer.__table__.insert(), [_transfer(1, 5_000_000)])
        await conn.execute(Record.__table__.insert(), [_record("late", 5_000_000, WHEN + timedelta(days=2)),
                                                       _record("late-2", 5_000_000, WHEN + timedelta(days=2))])


async def test_a_manual_match_racing_another_writer_is_a_conflict(pg: str, engine: AsyncEngine,
                                                                  tmp_path: Path) -> None:
    settings = _settings(tmp_path, pg)
    await _setup(engine)
    other, held = await _hold_a_match(pg, "late-2")
    try:
        person = asyncio.create_task(resolutions.manual_match(
            settings, engine, transfer_ids=[1], record_keys=[("core", "late")], actor="ann"))
        await _until_blocked(engine, person)
        await _commit(held)
        with pytest.raises(resolutions.Conflict):
            await person
    finally:
        await held.close()
        await other.dispose()
    assert len(await _active_links_of_transfer(engine, 1)) == 1


@pytest.mark.parametrize(("full", "bulk"), [(False, False), (True, False), (True, True)],
                         ids=["incremental", "full", "full-bulk"])
async def test_a_pass_racing_a_manual_match_decides_again_and_keeps_one_match(
        full: bool, bulk: bool, pg: str, engine: AsyncEngine, tmp_path: Path) -> None:
    settings = _settings(tmp_path, pg)
    settings = settings.model_copy(update={"recon": settings.recon.model_copy(update={"bulk_matching": bulk})})
    await _setup(engine)
    await reconcile_once(settings, engine, now=LATER)  # the queued first full pass: transfer 1 is a break now
    await ingest(settings, engine, [_deposit("dep")], actor="core-feed")  # would match transfer 1
    other, held = await _hold_a_match(pg, "late")
    try:
        machine = asyncio.create_task(reconcile_once(settings, engine, now=LATER, full=full))
        await _until_blocked(engine, machine)
        await _commit(held)
        await machine
    finally:
        await held.close()
        await other.dispose()
    (match_id,) = await _active_links_of_transfer(engine, 1)
    async with engine.connect() as conn:
        match = await repo.match(conn, match_id)
        open_breaks = [(b["type"], b["record_keys"]) for b in await repo.open_breaks(conn)]
        assert (await audit.verify(conn))[1] is None
    assert match is not None and match["created_by"] == "ops-elsewhere"
    assert ("missing_transfer", '[["core","dep"]]') in open_breaks  # decided again without transfer 1


def _pause_the_machine(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """The reconciler stops just before it updates a break's status (after reading it), until `go` is set."""
    paused, go = asyncio.Event(), asyncio.Event()
    original: Callable[..., Awaitable[Any]] = repo.set_break_status

    async def set_break_status(conn: Any, break_id: int, status: str, **kwargs: Any) -> Any:
        if (kwargs.get("resolution") or {}).get("by") == "reconciler" and not go.is_set():
            paused.set()
            await go.wait()
        return await original(conn, break_id, status, **kwargs)

    monkeypatch.setattr(repo, "set_break_status", set_break_status)
    return paused, go


async def _a_break_the_next_pass_resolves(settings: Settings, engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        await conn.execute(Transfer.__table__.insert(), [_transfer(1, 5_000_000)])
    await reconcile_once(settings, engine, now=LATER)
    async with engine.connect() as conn:
        (b,) = await repo.open_breaks(conn)
    await ingest(settings, engine, [_deposit("dep")], actor="core-feed")  # explains it: the pass will match
    return int(b["id"])


async def test_a_resolution_during_a_pass_neither_deadlocks_nor_is_lost(
        pg: str, engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, pg)
    break_id = await _a_break_the_next_pass_resolves(settings, engine)
    paused, go = _pause_the_machine(monkeypatch)
    machine = asyncio.create_task(reconcile_once(settings, engine, now=LATER))
    await paused.wait()
    person = asyncio.create_task(resolutions.classify(engine, break_id, reason=resolutions.ReasonCode.SPAM,
                                                      note="dust", actor="ann"))
    await _until_blocked(engine, person)
    go.set()
    summary = await machine  # a deadlock would abort one of the two here
    with pytest.raises(resolutions.Conflict):  # it reads the break the pass resolved, after the pass
        await person
    assert summary.closed == 1
    async with engine.connect() as conn:
        row = await repo.get_break(conn, break_id)
        assert (await audit.verify(conn))[1] is None
    assert row is not None and row["status"] == "resolved"
    assert repo.json.loads(row["resolution"])["by"] == "reconciler"


async def test_the_machine_does_not_overwrite_a_status_set_after_it_read_it(
        pg: str, engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, pg)
    break_id = await _a_break_the_next_pass_resolves(settings, engine)
    paused, go = _pause_the_machine(monkeypatch)
    machine = asyncio.create_task(reconcile_once(settings, engine, now=LATER))
    await paused.wait()
    other = make_engine(pg)  # a writer that takes no lock the pass holds: it commits while the pass waits
    try:
        async with other.begin() as conn:
            await conn.execute(text("UPDATE breaks SET status = 'awaiting_approval', resolution = :r WHERE id = :i"),
                               {"r": '{"by":"ann","reason":"write_off"}', "i": break_id})
    finally:
        await other.dispose()
    go.set()
    await machine
    async with engine.connect() as conn:
        row = await repo.get_break(conn, break_id)
    assert row is not None and row["status"] == "awaiting_approval"
    assert repo.json.loads(row["resolution"]) == {"by": "ann", "reason": "write_off"}
