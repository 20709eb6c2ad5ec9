"""transfers: the event key (chain_id, tx_hash, log_index) is unique among live rows only, so that a transaction
re-mined with other content at an old log index is a new transfer beside the orphaned one (issue 9, 2.1)

Revision ID: b7c2e41f9a03
Revises: 9d3e7a1c5b20
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'b7c2e41f9a03'
down_revision = '9d3e7a1c5b20'
branch_labels = None
depends_on = None

_LIVE = sa.text("state <> 'orphaned'")
_ORPHANED = sa.text("state = 'orphaned'")


def upgrade() -> None:
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.drop_constraint('uq_transfers_event', type_='unique')
        batch_op.create_index('uq_transfers_event_live', ['chain_id', 'tx_hash', 'log_index'], unique=True,
                              sqlite_where=_LIVE, postgresql_where=_LIVE)
        batch_op.create_index('ix_transfers_orphaned_tx', ['chain_id', 'tx_hash'],
                              sqlite_where=_ORPHANED, postgresql_where=_ORPHANED)


def downgrade() -> None:
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.drop_index('ix_transfers_orphaned_tx')
        batch_op.drop_index('uq_transfers_event_live')
        batch_op.create_unique_constraint('uq_transfers_event', ['chain_id', 'tx_hash', 'log_index'])
