"""breaks name their token's chain: a token is (chain, address), and one address can be two tokens

Existing breaks take the chain of their first transfer, else of their first record.

Revision ID: a7c3e1d09b55
Revises: a7d1e0c4b9f3
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.persistence.types

revision = 'a7c3e1d09b55'
down_revision = 'a7d1e0c4b9f3'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('breaks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain_id', app.persistence.types.BigInt(), nullable=True))
    op.execute("""
        UPDATE breaks SET chain_id = coalesce(
            (SELECT t.chain_id FROM break_links l JOIN transfers t ON t.id = l.transfer_id
             WHERE l.break_id = breaks.id ORDER BY l.id LIMIT 1),
            (SELECT r.chain_id FROM break_links l JOIN records r
               ON r.source = l.record_source AND r.external_id = l.record_external_id
             WHERE l.break_id = breaks.id ORDER BY l.id LIMIT 1))
        WHERE token IS NOT NULL""")


def downgrade() -> None:
    with op.batch_alter_table('breaks', schema=None) as batch_op:
        batch_op.drop_column('chain_id')
