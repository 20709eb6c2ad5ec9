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


def _fresh(database_url: str, name: str) -> str:
    if database_url.startswith("postgresql"):
        with create_engine(sync_url(database_url)).begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        return database_url
    return database_url.replace("settle.db", name)


def test_upgrading_starts_the_feed_with_what_the_database_holds(database_url: str) -> None:
    """A database from before the feed: its history becomes the first events, so that replay from 0 rebuilds
    it (announced transfers, orphanings of announced ones, record versions, matches and removals, breaks and
    resolutions), and the head is the last of them."""
    database_url = _fresh(database_url, "before-feed.db")
    upgrade(database_url, "11792326dccd")
    engine = create_engine(sync_url(database_url))
    t = ("INSERT INTO transfers (id, chain_id, token, sender, recipient, amount, tx_hash, log_index, block_number, "
         "block_hash, state, seen_at, confirmed_at, finalized_at) VALUES ({id}, 1, '0xT', '0xA', '0xB', 5, "
         "'0x{id}', 0, {id}, '0xh{id}', '{state}', '2026-11-26 10:00:00', {c}, {f})")
    with engine.begin() as conn:
        for i, state in ((1, "finalized"), (2, "confirmed"), (3, "seen"), (4, "orphaned")):
            stamp = "'2026-11-26 10:00:00'"
            conn.execute(text(t.format(id=i, state=state, c=stamp if state != "seen" else "NULL",
                                       f=stamp if state == "finalized" else "NULL")))
        conn.execute(text("INSERT INTO reorgs (id, chain_id, depth, ancestor_number, old_head_number, "
                          "new_head_number, orphaned, deep, detected_at) VALUES (1, 1, 1, 3, 4, 4, 1, false, "
                          "'2026-11-26 11:00:00')"))
        conn.execute(text("INSERT INTO transfer_orphanings (transfer_id, reorg_id, chain_id, block_number, "
                          "block_hash, log_index, previous_state, orphaned_at) VALUES (4, 1, 1, 4, '0xh4', 0, "
                          "'confirmed', '2026-11-26 11:00:00')"))
        conn.execute(text("INSERT INTO record_versions (source, external_id, version, body, actor, ingested_at) "
                          "VALUES ('core', 'r1', 1, '{}', 'x', '2026-11-26 10:00:00')"))
        for i, removed in ((1, "NULL"), (2, "'2026-11-26 12:00:00'")):
            conn.execute(text("INSERT INTO matches (id, rule, rule_version, transfer_ids, record_keys, candidates, "
                              "facts, created_at, created_by, removed_at) VALUES "
                              f"({i}, 'tx_hash', '1', '[{i}]', '[]', '[]', '{{}}', '2026-11-26 10:00:00', 'r', "
                              f"{removed})"))
        for i, status in ((1, "open"), (2, "resolved")):
            conn.execute(text("INSERT INTO breaks (id, type, status, fingerprint, transfer_ids, record_keys, facts, "
                              "severity, opened_at, resolved_at, resolution) VALUES "
                              f"({i}, 'ambiguous', '{status}', 'f{i}', '[]', '[]', '{{}}', 'low', "
                              "'2026-11-26 10:00:00', '2026-11-26 13:00:00', '{\"by\": \"ops\"}')"))
    upgrade(database_url)
    with engine.connect() as conn:
        events = [tuple(r) for r in conn.execute(text(
            "SELECT seq, type, entity_id, state, detail FROM feed_events ORDER BY seq"))]
        head = conn.execute(text("SELECT seq FROM feed_head")).scalar()
    engine.dispose()
    assert events == [(1, "transfer.finalized", 1, "finalized", None), (2, "transfer.confirmed", 2, "confirmed", None),
                      (3, "transfer.orphaned", 4, "orphaned", None), (4, "record.ingested", 1, None, None),
                      (5, "match.created", 1, None, None), (6, "match.created", 2, None, None),
                      (7, "match.removed", 2, None, None), (8, "break.opened", 1, "open", None),
                      (9, "break.opened", 2, "open", None), (10, "break.resolved", 2, "resolved", '{"by": "ops"}')]
    assert head == 10
