"""audit head: the log's (sequence, hash) kept outside it, started from what the log holds

Revision ID: a7d1e0c4b9f3
Revises: b7e2c4a91f30
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

import app.persistence.types

revision = 'a7d1e0c4b9f3'
down_revision = 'b7e2c4a91f30'
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table('audit_head',
    sa.Column('id', app.persistence.types.BigInt(), autoincrement=False, nullable=False),
    sa.Column('seq', app.persistence.types.BigInt(), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('entry_id', app.persistence.types.BigInt(), nullable=True),
    sa.Column('at', app.persistence.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    # The head starts where the log ends today (its count and last entry), or at the genesis hash.
    op.execute(sa.text(
        "INSERT INTO audit_head (id, seq, hash, entry_id, at) "
        "SELECT 1, (SELECT count(*) FROM audit_log), "
        f"coalesce((SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1), '{GENESIS}'), "
        "(SELECT max(id) FROM audit_log), (SELECT at FROM audit_log ORDER BY id DESC LIMIT 1)"))


def downgrade() -> None:
    op.drop_table('audit_head')
