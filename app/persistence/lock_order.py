"""The one order in which writers of reconciliation state take their locks (PostgreSQL; SQLite has one writer).

Every transaction that changes matches, match links, breaks, break links or classifications (a reconciler pass,
a person's resolution, match or unmatch, a record ingest that re-decides a match) takes, in this order:

1. the reconciler's advisory lock (`pg_advisory_xact_lock`, a pass only: one pass at a time);
2. the audit log's table lock (`recon_state`, below), before its first read that it will decide from and before
   its first write: writers of reconciliation state are serialized here, so none of them holds a row lock
   another one waits for while waiting for the audit lock itself;
3. row locks: break rows (`get_break(for_update=True)`), match links, classifications, as it writes them;
4. the feed head (`feed.flush`, the transaction's last statement).

Taking them in another order can deadlock (a resolution locking a break row and then waiting for the audit
log, while a pass holding the audit log waits for that break row). Besides, the machine's break updates are
conditional on the status it read (`set_break_status(expect=...)`): a status a person set is never overwritten.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

RECONCILER_LOCK = 6106700001  # the advisory lock key of a reconciler pass


async def reconciler_pass(conn: AsyncConnection) -> None:
    """Lock 1: one reconciler pass at a time (held to the end of the transaction)."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({RECONCILER_LOCK})")


async def recon_state(conn: AsyncConnection) -> None:
    """Lock 2: the audit log's table lock, the same one `audit.append` takes (idempotent within a transaction)."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
