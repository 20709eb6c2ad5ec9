"""What ops do with breaks: manual match, unmatch, classify (write-offs, refunds and "other" need a second
person by default), approve, reopen. Every action is appended to the break's history and to the audit log with
who and when. Locks are taken in the order `app.persistence.lock_order` documents."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import BadRequest, NotFound, SettleError
from app.persistence import audit, feed, lock_order, records_repo
from app.persistence import recon_repo as repo
from app.settings import Settings


class ReasonCode(StrEnum):
    INTERNAL = "internal"
    GAS_TOP_UP = "gas_top_up"
    REFUND = "refund"
    CUSTOMER_ERROR = "customer_error"
    SPAM = "spam"
    WRITE_OFF = "write_off"
    OTHER = "other"


class FourEyes(SettleError):
    status_code = 403
    title = "Four-eyes rule"


class Conflict(SettleError):
    status_code = 409
    title = "Conflict"


APPROVAL_REASONS = frozenset({ReasonCode.WRITE_OFF, ReasonCode.REFUND, ReasonCode.OTHER})  # the default


async def _open_break(conn: AsyncConnection, break_id: int) -> dict:
    """The break, locked for this transaction, after the reconciliation-state lock (see `lock_order`)."""
    await lock_order.recon_state(conn)
    row = await repo.get_break(conn, break_id, for_update=True)
    if row is None:
        raise NotFound(f"break {break_id} not found")
    return row


async def _still_open(conn: AsyncConnection, break_id: int) -> dict:
    """The break, which must be open: 404 if there is none, 409 if it is resolved or awaiting approval."""
    row = await _open_break(conn, break_id)
    if row["status"] != "open":
        raise Conflict(f"break {break_id} is {row['status']}")
    return row


async def _none_matched(conn: AsyncConnection, row: dict) -> None:
    """409 if an item of the break was matched since it opened: a match explains it, a classification may not."""
    keys = [tuple(k) for k in repo.json.loads(row["record_keys"])]
    if await repo.matched_transfer_ids(conn, repo.json.loads(row["transfer_ids"])) or \
            await repo.matched_record_keys(conn, keys):
        raise Conflict(f"an item of break {row['id']} was matched meanwhile; reopen or unmatch first")


async def classify(engine: AsyncEngine, break_id: int, *, reason: ReasonCode, note: str, actor: str,
                   person: str | None = None, approval_reasons: Collection[str] = APPROVAL_REASONS) -> dict:
    """Explain a break with a reason code and a note. A reason in `approval_reasons` waits for a second person's
    approval (`person`: who holds the key, compared by four-eyes; the key's name if not given)."""
    if not note.strip():
        raise BadRequest("note", "a note is required")
    now = datetime.now(UTC)
    async with feed.transaction(engine) as conn:
        row = await _still_open(conn, break_id)
        resolution = {"by": actor, "person": person or actor, "action": "classify", "reason": reason.value,
                      "note": note}
        status = "awaiting_approval" if reason.value in approval_reasons else "resolved"
        await repo.set_break_status(conn, break_id, status, at=now, resolution=resolution)
        if status == "resolved":
            for transfer_id in repo.json.loads(row["transfer_ids"]):
                await repo.classify(conn, transfer_id, reason.value, actor=actor, at=now, note=note)
        await repo.add_event(conn, break_id, "classified", actor, now, resolution)
        await _mark(conn, row)
        await audit.append(conn, actor=actor, action="break.resolution", entity=f"break:{break_id}", at=now,
                           before={"status": row["status"]}, after={"status": status, **resolution})
    return {"id": break_id, "status": status}


async def approve(engine: AsyncEngine, break_id: int, *, actor: str, person: str | None = None) -> dict:
    """Second-person approval of a proposed resolution: not by the person who proposed it (whatever key they
    use), and only while no item of the break was matched meanwhile (409)."""
    now = datetime.now(UTC)
    async with feed.transaction(engine) as conn:
        row = await _open_break(conn, break_id)
        if row["status"] != "awaiting_approval":
            raise Conflict(f"break {break_id} is {row['status']}, not awaiting approval")
        resolution = repo.json.loads(row["resolution"])
        if resolution.get("person", resolution.get("by")) == (person or actor):
            raise FourEyes(f"{person or actor} proposed this resolution and cannot approve it")
        await _none_matched(conn, row)
        resolution |= {"approved_by": actor, "approved_person": person or actor, "approved_at": now.isoformat()}
        await repo.set_break_status(conn, break_id, "resolved", at=now, resolution=resolution)
        for transfer_id in repo.json.loads(row["transfer_ids"]):
            await repo.classify(conn, transfer_id, resolution.get("reason", ReasonCode.WRITE_OFF.value), actor=actor,
                                at=now, note=resolution.get("note"))
        await repo.add_event(conn, break_id, "approved", actor, now)
        await _mark(conn, row)
        await audit.append(conn, actor=actor, action="break.approved", entity=f"break:{break_id}", at=now,
                           before={"status": "awaiting_approval"}, after={"status": "resolved"})
    return {"id": break_id, "status": "resolved"}


async def reopen(engine: AsyncEngine, break_id: int, *, reason: str, actor: str) -> dict:
    """Open a resolved break again, undoing what its resolution did (its classifications are revoked, the match
    a manual match made is removed), so its items are unexplained again. The machine never resolves a break a
    person reopened. 409 if an item is in another open break meanwhile."""
    now = datetime.now(UTC)
    async with feed.transaction(engine) as conn:
        row = await _open_break(conn, break_id)
        if row["status"] == "open":
            raise Conflict(f"break {break_id} is already open")
        undone = await _undo_resolution(conn, row, actor=actor, reason=reason, at=now)
        try:  # the transaction is rolled back on the conflict: nothing of the above stays
            await repo.set_break_status(conn, break_id, "open", at=now)
        except IntegrityError:
            raise Conflict(f"an item of break {break_id} is in another open break; resolve that one first") from None
        await repo.add_event(conn, break_id, "reopened", actor, now, {"reason": reason, **undone})
        await _mark(conn, row)
        await audit.append(conn, actor=actor, action="break.reopened", entity=f"break:{break_id}", at=now,
                           before={"status": row["status"]}, after={"status": "open", "reason": reason, **undone})
    return {"id": break_id, "status": "open"}


async def _undo_resolution(conn: AsyncConnection, row: dict, *, actor: str, reason: str, at: datetime
                           ) -> dict[str, object]:
    """Deactivate what the break's resolution did; returns what was undone, for the history and the audit log."""
    resolution = repo.json.loads(row["resolution"]) if row["resolution"] else {}
    undone: dict[str, object] = {}
    if resolution.get("action") == "classify" and row["status"] == "resolved":
        revoked = await repo.revoke_classifications(conn, repo.json.loads(row["transfer_ids"]),
                                                    resolution["reason"], actor=actor, at=at)
        undone["revoked_classifications"] = {"reason": resolution["reason"], "transfers": revoked}
    elif resolution.get("action") == "manual_match":
        match = await repo.match(conn, int(resolution["match_id"]))
        if match is not None and match["removed_at"] is None:
            why = f"break {row['id']} reopened: {reason}"
            await repo.remove_match(conn, match["id"], actor=actor, reason=why, at=at)
            await repo.mark_items(conn, transfer_ids=match["transfer_ids"], record_keys=match["record_keys"])
            await audit.append(conn, actor=actor, action="match.removed", entity=f"match:{match['id']}", at=at,
                               before={"transfers": match["transfer_ids"], "records": match["record_keys"]},
                               after={"reason": why})
            undone["removed_match"] = match["id"]
    return undone


async def manual_match(settings: Settings, engine: AsyncEngine, *, transfer_ids: Sequence[int],
                       record_keys: Sequence[tuple[str, str]], actor: str, break_id: int | None = None) -> int:
    """Match transfers to records by hand, validated like an automatic match: same chain and token, our side
    agrees with each record's wallet, and the amounts sum exactly. Nothing already matched may be reused."""
    if not transfer_ids or not record_keys:
        raise BadRequest("transfer_ids" if not transfer_ids else "record_keys", "at least one is required")
    for field, items in (("transfer_ids", list(transfer_ids)), ("record_keys", [tuple(k) for k in record_keys])):
        if len(set(items)) != len(items):
            raise BadRequest(field, "an item appears twice")
    now = datetime.now(UTC)
    async with feed.transaction(engine) as conn:
        await lock_order.recon_state(conn)
        resolved = await _still_open(conn, break_id) if break_id is not None else None  # before any write
        if resolved is not None:
            named = set(repo.json.loads(resolved["transfer_ids"])) & set(transfer_ids) or \
                {tuple(k) for k in repo.json.loads(resolved["record_keys"])} & {tuple(k) for k in record_keys}
            if not named:
                raise BadRequest("break_id", f"break {break_id} names none of these transfers or records")
        transfers = await repo.transfers_by_id(conn, list(transfer_ids))
        records = await records_repo.current_by_key(conn, [tuple(k) for k in record_keys])  # type: ignore[misc]
        used_t = await repo.matched_transfer_ids(conn, list(transfer_ids))
        used_r = await repo.matched_record_keys(conn, record_keys)
        ts = [_known(transfers, i, "transfer_ids") for i in transfer_ids]
        rs = [_known(records, tuple(k), "record_keys") for k in record_keys]
        if used_t & set(transfer_ids) or used_r & {tuple(k) for k in record_keys}:
            raise Conflict("a transfer or record is already matched; unmatch it first")
        if any(t["state"] == repo.ORPHANED for t in ts):
            raise BadRequest("transfer_ids", "an orphaned transfer cannot be matched")
        if len({(x["chain_id"], x["token"]) for x in ts + rs}) != 1:
            raise BadRequest("record_keys", "chain and token must be the same on every side")
        ours = {t["sender"] for t in ts} | {t["recipient"] for t in ts}
        if any(r["wallet"] not in ours for r in rs):
            raise BadRequest("record_keys", "a record's wallet is on neither side of the transfers")
        if sum(t["amount"] for t in ts) != sum(r["amount"] for r in rs):
            raise BadRequest("record_keys", "amounts differ: transfers and records must sum exactly")
        try:  # the schema has the last word (one active match per item); the conflict rolls everything back
            match_id = await repo.add_match(conn, rule="manual", rule_version="1", transfer_ids=transfer_ids,
                                            record_keys=record_keys, candidates=[], facts={}, actor=actor, at=now,
                                            observed={t["id"]: t["block_hash"] for t in ts})
        except IntegrityError:
            raise Conflict("a transfer or record was matched meanwhile; unmatch it first") from None
        await audit.append(conn, actor=actor, action="match.created", entity=f"match:{match_id}", at=now,
                           after={"rule": "manual", "transfers": sorted(transfer_ids), "records": sorted(record_keys)})
        if resolved is not None:
            await repo.set_break_status(conn, resolved["id"], "resolved", at=now,
                                        resolution={"by": actor, "action": "manual_match", "match_id": match_id})
            await repo.add_event(conn, resolved["id"], "matched", actor, now, {"match_id": match_id})
            await _mark(conn, resolved)  # its items: the status changed, not the items
        await repo.mark_items(conn, transfer_ids=transfer_ids, record_keys=record_keys)
    return match_id


async def unmatch(engine: AsyncEngine, match_id: int, *, reason: str, actor: str) -> None:
    if not reason.strip():
        raise BadRequest("reason", "a reason is required")
    now = datetime.now(UTC)
    async with feed.transaction(engine) as conn:
        await lock_order.recon_state(conn)
        match = await repo.match(conn, match_id)
        if match is None or match["removed_at"] is not None:
            raise NotFound(f"active match {match_id} not found")
        await repo.remove_match(conn, match_id, actor=actor, reason=reason, at=now)
        await repo.mark_items(conn, transfer_ids=match["transfer_ids"], record_keys=match["record_keys"])
        await audit.append(conn, actor=actor, action="match.removed", entity=f"match:{match_id}", at=now,
                           before={"transfers": match["transfer_ids"], "records": match["record_keys"]},
                           after={"reason": reason})


async def _mark(conn: AsyncConnection, row: dict) -> None:
    """The break's items need deciding again: the next reconciler pass looks at them and their neighbours."""
    await repo.mark_items(conn, transfer_ids=repo.json.loads(row["transfer_ids"]),
                          record_keys=repo.json.loads(row["record_keys"]))


def _known(items: dict, key: object, field: str) -> dict:
    if key not in items:
        raise BadRequest(field, f"unknown {key}")
    return items[key]  # type: ignore[no-any-return]
