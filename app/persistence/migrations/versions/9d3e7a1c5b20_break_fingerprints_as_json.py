"""break fingerprints as canonical JSON arrays: the joined form ("type|1,2|source/id,...") let record keys whose
ids contain "/" or "," collide (("a/b", "c") and ("a", "b/c")). Every stored fingerprint is recomputed from the
break's own type, transfer ids and record keys. Noise rules changed too (only inbound transfers from outside are
noise), so the next pass is a full one: it withdraws the machine's noise classifications of outbound transfers.

Revision ID: 9d3e7a1c5b20
Revises: a7c3e1d09b55
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = '9d3e7a1c5b20'
down_revision = 'a7c3e1d09b55'
branch_labels = None
depends_on = None


def _json(kind: str, transfer_ids: list, record_keys: list) -> str:
    """As app.reconciler.fingerprint computes it (frozen here: a migration must not change with the app)."""
    return json.dumps([kind, sorted(transfer_ids), sorted([k[0], k[1]] for k in record_keys)], sort_keys=True,
                      separators=(",", ":"), default=str)


def _joined(kind: str, transfer_ids: list, record_keys: list) -> str:
    refs = ",".join(sorted(f"{k[0]}/{k[1]}" for k in record_keys))
    return f"{kind}|{','.join(map(str, sorted(transfer_ids)))}|{refs}"


def _convert(encode) -> None:  # type: ignore[no-untyped-def]
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, type, transfer_ids, record_keys FROM breaks ORDER BY id")).all()
    updates = [{"i": i, "fp": encode(kind, json.loads(t_ids), json.loads(r_keys))} for i, kind, t_ids, r_keys in rows]
    for j in range(0, len(updates), 10_000):
        conn.execute(sa.text("UPDATE breaks SET fingerprint = :fp WHERE id = :i"), updates[j:j + 10_000])


def upgrade() -> None:
    _convert(_json)
    op.get_bind().execute(sa.text("INSERT INTO recon_dirty (kind) SELECT 'full' WHERE NOT EXISTS "
                                  "(SELECT 1 FROM recon_dirty WHERE kind = 'full')"))


def downgrade() -> None:
    _convert(_joined)
