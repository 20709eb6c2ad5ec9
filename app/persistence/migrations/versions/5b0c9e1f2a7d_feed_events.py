"""feed events and head, with the events of what is already there

Revision ID: 5b0c9e1f2a7d
Revises: 11792326dccd
Create Date: 2026-11-27 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

import app.persistence.types

revision = '5b0c9e1f2a7d'
down_revision = '11792326dccd'
branch_labels = None
depends_on = None

# What a database already holds becomes the start of its feed, so that a reader replaying from 0 rebuilds the
# current state: announced transfers, orphanings of announced transfers, record versions, matches and their
# removals, breaks and their resolutions. Each group is numbered after the previous one.
_BACKFILL = [
    ("SELECT CASE WHEN state = 'finalized' THEN 'transfer.finalized' ELSE 'transfer.confirmed' END, id, block_time, "
     "coalesce(finalized_at, confirmed_at, seen_at), state, block_number, block_hash, NULL FROM transfers "
     "WHERE state IN ('confirmed', 'finalized')", "block_number, log_index, id"),
    ("SELECT 'transfer.orphaned', transfer_id, orphaned_at, orphaned_at, 'orphaned', block_number, block_hash, NULL "
     "FROM transfer_orphanings WHERE previous_state IN ('confirmed', 'finalized')", "id"),
    ("SELECT 'record.ingested', id, (SELECT r.created_at FROM records r WHERE r.source = record_versions.source "
     "AND r.external_id = record_versions.external_id), ingested_at, NULL, NULL, NULL, NULL FROM record_versions",
     "id"),
    ("SELECT 'match.created', id, created_at, created_at, NULL, NULL, NULL, NULL FROM matches", "id"),
    ("SELECT 'match.removed', id, removed_at, removed_at, NULL, NULL, NULL, NULL FROM matches "
     "WHERE removed_at IS NOT NULL", "id"),
    ("SELECT 'break.opened', id, opened_at, opened_at, 'open', NULL, NULL, NULL FROM breaks", "id"),
    ("SELECT 'break.resolved', id, resolved_at, resolved_at, 'resolved', NULL, NULL, resolution FROM breaks "
     "WHERE status = 'resolved'", "id"),
]


def upgrade() -> None:
    op.create_table('feed_events',
    sa.Column('seq', app.persistence.types.BigInt(), autoincrement=False, nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('entity_id', app.persistence.types.BigInt(), nullable=False),
    sa.Column('occurred_at', app.persistence.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('recorded_at', app.persistence.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('block_number', app.persistence.types.BigInt(), nullable=True),
    sa.Column('block_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_table('feed_head',
    sa.Column('id', app.persistence.types.BigInt(), autoincrement=False, nullable=False),
    sa.Column('seq', app.persistence.types.BigInt(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    columns = "seq, type, entity_id, occurred_at, recorded_at, state, block_number, block_hash, detail"
    for query, order in _BACKFILL:
        select_list, source = query.removeprefix("SELECT ").split(" FROM ", 1)
        op.execute(f"INSERT INTO feed_events ({columns}) SELECT (SELECT coalesce(max(seq), 0) FROM feed_events) "
                   f"+ row_number() OVER (ORDER BY {order}), {select_list} FROM {source}")
    op.execute("INSERT INTO feed_head (id, seq) SELECT 1, coalesce(max(seq), 0) FROM feed_events")


def downgrade() -> None:
    op.drop_table('feed_head')
    op.drop_table('feed_events')
