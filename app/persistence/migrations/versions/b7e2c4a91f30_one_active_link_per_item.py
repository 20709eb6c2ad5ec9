"""one active match link per item, one open break per item, revocable classifications, key persons

Partial unique indexes: a transfer or a record key is in at most one active match and in at most one unresolved
break (`break_links.is_open` follows its break's status). A classification is revoked (kept, with who and when), not
deleted, when a person reopens the break it resolved. An API key names the person it belongs to (existing keys:
their own name), which four-eyes compares.

A database that already holds a double match or an item in two open breaks fails this upgrade on the index: the
violation is real and needs a person (unmatch, or resolve one of the breaks) before upgrading.

Revision ID: b7e2c4a91f30
Revises: 42082c8c2646
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import app.persistence.types

revision = 'b7e2c4a91f30'
down_revision = '42082c8c2646'
branch_labels = None
depends_on = None

_ACTIVE_T = sa.text("active AND transfer_id IS NOT NULL")
_ACTIVE_R = sa.text("active AND record_source IS NOT NULL")
_OPEN_T = sa.text("is_open AND transfer_id IS NOT NULL")
_OPEN_R = sa.text("is_open AND record_source IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table('break_links') as batch:
        batch.add_column(sa.Column('is_open', sa.Boolean(), nullable=False, server_default=sa.true()))
    op.execute("UPDATE break_links SET is_open = coalesce((SELECT b.status != 'resolved' FROM breaks b "
               "WHERE b.id = break_links.break_id), true)")
    with op.batch_alter_table('transfer_classifications') as batch:
        batch.add_column(sa.Column('revoked_at', app.persistence.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('revoked_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('person', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.execute("UPDATE api_keys SET person = name")
    with op.batch_alter_table('api_keys') as batch:
        batch.alter_column('person', existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False)
    op.create_index('uq_match_links_active_transfer', 'match_links', ['transfer_id'], unique=True,
                    postgresql_where=_ACTIVE_T, sqlite_where=_ACTIVE_T)
    op.create_index('uq_match_links_active_record', 'match_links', ['record_source', 'record_external_id'],
                    unique=True, postgresql_where=_ACTIVE_R, sqlite_where=_ACTIVE_R)
    op.create_index('uq_break_links_open_transfer', 'break_links', ['transfer_id'], unique=True,
                    postgresql_where=_OPEN_T, sqlite_where=_OPEN_T)
    op.create_index('uq_break_links_open_record', 'break_links', ['record_source', 'record_external_id'],
                    unique=True, postgresql_where=_OPEN_R, sqlite_where=_OPEN_R)


def downgrade() -> None:
    for name, table in (('uq_break_links_open_record', 'break_links'), ('uq_break_links_open_transfer', 'break_links'),
                        ('uq_match_links_active_record', 'match_links'),
                        ('uq_match_links_active_transfer', 'match_links')):
        op.drop_index(name, table_name=table)
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('person')
    with op.batch_alter_table('transfer_classifications') as batch:
        batch.drop_column('revoked_by')
        batch.drop_column('revoked_at')
    with op.batch_alter_table('break_links') as batch:
        batch.drop_column('is_open')
