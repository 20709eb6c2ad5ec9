"""Upgrading a database from the schema that landed before the incremental reconciler: its breaks get their
links, its counterparties their shapes, ageing breaks a `since`, and the next pass is a full one."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from app.persistence.db import sync_url
from app.persistence.migrate import upgrade

BEFORE = "4676082b4d2d"  # matches, breaks, classifications (landed with issue 2)


def test_upgrading_from_the_landed_schema_backfills_what_the_incremental_reconciler_needs(database_url: str) -> None:
    if database_url.startswith("postgresql"):  # the fixture upgraded to head: start again from scratch
        with create_engine(sync_url(database_url)).begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        database_url = database_url.replace("settle.db", "old.db")
    upgrade(database_url, BEFORE)
    engine = create_engine(sync_url(database_url))
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO breaks (id, type, status, fingerprint, transfer_ids, record_keys, facts, severity, "
            "opened_at) VALUES (1, 'ambiguous', 'open', 'f', '[7,8]', '[[\"core\",\"r1\"]]', '{}', 'low', "
            "'2026-11-26 10:00:00')"))
        conn.execute(text(
            "INSERT INTO records (source, external_id, version, kind, chain_id, token, amount, wallet, counterparty, "
            "segregation, status, created_at, ingested_at) VALUES ('core', 'r1', 1, 'withdrawal', 1, '0xT', '5', "
            "'0xW', '0xAbCd000000000000000000000000000000001234', 'customer', 'completed', '2026-11-26 10:00:00', "
            "'2026-11-26 10:00:00')"))
    upgrade(database_url)
    with engine.connect() as conn:
        links = conn.execute(text("SELECT break_id, transfer_id, record_source, record_external_id FROM break_links "
                                  "ORDER BY id")).all()
        shapes = conn.execute(text("SELECT address, shape FROM counterparties")).all()
        queued = conn.execute(text("SELECT kind FROM recon_dirty")).scalars().all()
        since = conn.execute(text("SELECT since FROM breaks WHERE id = 1")).scalar()
    engine.dispose()
    assert [tuple(r) for r in links] == [(1, 7, None, None), (1, 8, None, None), (1, None, "core", "r1")]
    assert [tuple(r) for r in shapes] == [("0xAbCd000000000000000000000000000000001234", "abcd1234")]
    assert queued == ["full"] and since is not None
