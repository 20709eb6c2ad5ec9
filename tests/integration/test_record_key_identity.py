"""Record keys whose ids contain "/" keep their identity: ("a/b", "c") and ("a", "b/c") are two records, with two
breaks, on SQLite and PostgreSQL; fingerprints stored in the old joined format are converted by the migration
(which also queues a full pass)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import recon_repo
from app.persistence.db import sync_url
from app.persistence.migrate import upgrade
from app.reconciler import fingerprint, reconcile_once
from tests.integration.test_recon_money import NOW, USDT, _settings, load, record

PREVIOUS_HEAD = "42082c8c2646"


def test_fingerprints_of_keys_that_join_alike_differ() -> None:
    for kind in ("missing_transfer", "ambiguous"):
        assert fingerprint(kind, [1], [("a/b", "c")]) != fingerprint(kind, [1], [("a", "b/c")])
        assert fingerprint(kind, [], [("a", "b"), ("c", "d")]) != fingerprint(kind, [], [("a", "b,c/d")])
        assert fingerprint(kind, [1, 2], []) != fingerprint(kind, [12], [])
        assert fingerprint(kind, [2, 1], [("s", "x"), ("s", "y")]) == fingerprint(kind, [1, 2], [("s", "y"),
                                                                                              ("s", "x")])
    assert fingerprint("a|b", [], []) != fingerprint("a", [], [("|b", "")])


async def test_two_records_whose_keys_join_alike_get_two_breaks(database_url: str, engine: AsyncEngine,
                                                                tmp_path: Path) -> None:
    await load(engine, [], [{**record("c", USDT, 5 * 10**6), "source": "a/b"},
                            {**record("b/c", USDT, 6 * 10**6), "source": "a"}])
    await reconcile_once(_settings(database_url, tmp_path), engine, now=NOW)
    async with engine.connect() as conn:
        breaks = await recon_repo.open_breaks(conn)
    assert sorted((b["type"], json.loads(b["record_keys"])) for b in breaks) == [
        ("missing_transfer", [["a", "b/c"]]), ("missing_transfer", [["a/b", "c"]])]
    assert len({b["fingerprint"] for b in breaks}) == 2
    again = await reconcile_once(_settings(database_url, tmp_path), engine, now=NOW, full=True)
    assert (again.opened, again.closed) == ([], 0)


def test_the_migration_converts_stored_fingerprints(database_url: str) -> None:
    if database_url.startswith("postgresql"):
        with create_engine(sync_url(database_url)).begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        database_url = database_url.replace("settle.db", "old.db")
    upgrade(database_url, PREVIOUS_HEAD)
    engine = create_engine(sync_url(database_url))
    old = [(1, "missing_transfer", "[]", '[["a/b","c"]]', "missing_transfer||a/b/c"),
           (2, "ambiguous", "[7,8]", '[["core","r1"],["core","r2"]]', "ambiguous|7,8|core/r1,core/r2")]
    with engine.begin() as conn:
        for i, kind, t_ids, r_keys, fp in old:
            conn.execute(text("INSERT INTO breaks (id, type, status, fingerprint, transfer_ids, record_keys, facts, "
                              "severity, opened_at) VALUES (:i, :k, 'open', :fp, :t, :r, '{}', 'low', "
                              "'2026-11-26 10:00:00')"), {"i": i, "k": kind, "fp": fp, "t": t_ids, "r": r_keys})
        conn.execute(text("DELETE FROM recon_dirty"))  # an earlier migration's full pass, done since
    upgrade(database_url)
    with engine.connect() as conn:
        converted = dict(conn.execute(text("SELECT id, fingerprint FROM breaks")).all())
        full_after = conn.execute(text("SELECT count(*) FROM recon_dirty WHERE kind = 'full'")).scalar()
    engine.dispose()
    assert converted[1] != "missing_transfer||a/b/c"
    assert full_after == 1  # the noise rules changed: the next pass decides everything again
    assert converted == {1: fingerprint("missing_transfer", [], [("a/b", "c")]),
                         2: fingerprint("ambiguous", [7, 8], [("core", "r1"), ("core", "r2")])}
