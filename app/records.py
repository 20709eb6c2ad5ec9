"""Internal records: validation (all or nothing, errors naming index, field and reason) and versioned ingest.

A record is identified by (source, external_id). Sending it again with new mutable fields (status, tx hash, log
index, amount, wallet, counterparty, reference, expected_by) makes a new version; the old versions are kept. A
change to an immutable field (kind, chain, token) is refused as a conflict naming the fields. Sending the same
record twice changes nothing.

A new version of a matched record that changes what matching looks at (`REDECIDE`: a cancellation, a corrected
amount, tx hash, log index, wallet or counterparty) removes its match in the same transaction (audited, by the
reconciler, so the machine may make it again) and queues its items: the next pass re-matches what still agrees
(or now agrees with another transfer) and opens breaks for what does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import SettleError
from app.persistence import audit, feed, lock_order, recon_repo
from app.persistence import records_repo as repo
from app.settings import Settings
from app.settlement.amounts import MAX_UINT256, is_digits, parse_units
from app.settlement.model import RecordKind, RecordStatus
from app.wallet_book import wallet_book
from wallets import InvalidAddress, Segregation, to_checksum

MAX_BATCH = 10_000
IMMUTABLE = ("kind", "chain_id", "token")
MUTABLE = ("status", "tx_hash", "log_index", "amount", "wallet", "counterparty", "reference", "expected_by",
           "segregation", "created_at")
REDECIDE = ("status", "tx_hash", "log_index", "amount", "wallet", "counterparty")
MATCHER = "reconciler"  # who removes a match its record no longer supports (app.reconciler.SYSTEM)
_TX = re.compile(r"^0x[0-9a-fA-F]{64}$")
_ID = re.compile(r"^[\w.:/@#-]{1,128}$")


@dataclass(frozen=True)
class ItemError:
    index: int
    field: str
    reason: str


class RecordsRejected(SettleError):
    """Validation failed; nothing was written. `errors` name the item index, the field and the reason."""

    status_code = 422
    title = "Invalid records"

    def __init__(self, errors: list[ItemError], status_code: int = 422, title: str = "Invalid records") -> None:
        super().__init__(f"{len(errors)} invalid item(s); first: items[{errors[0].index}].{errors[0].field}: "
                         f"{errors[0].reason}")
        self.errors = errors
        self.status_code = status_code
        self.title = title


def _field(item: dict[str, Any], name: str, errors: list[ItemError], i: int, *, required: bool = True) -> Any:
    value = item.get(name)
    if value is None and required:
        errors.append(ItemError(i, name, "is required"))
    return value


def _time(value: Any, name: str, errors: list[ItemError], i: int) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        errors.append(ItemError(i, name, "not an RFC 3339 time"))
        return None
    if parsed.tzinfo is None:
        errors.append(ItemError(i, name, "has no time zone offset"))
        return None
    return parsed.astimezone(UTC)


def _address(value: Any, name: str, errors: list[ItemError], i: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(ItemError(i, name, "a 0x-prefixed 20-byte hex address (a string)"))
        return None
    try:
        return to_checksum(value)
    except InvalidAddress as exc:
        errors.append(ItemError(i, name, str(exc)))
        return None


def validate(settings: Settings, items: list[Any],
             registered: Callable[[int, str], bool] | None = None) -> list[dict[str, Any]]:
    """Normalize every item or raise RecordsRejected listing every problem (nothing is written).
    `registered(chain id, address)`: whether the wallet is one of ours on that chain (the registry)."""
    if len(items) > MAX_BATCH:
        raise RecordsRejected([ItemError(-1, "records", f"{len(items)} items; at most {MAX_BATCH} per request")],
                              413, "Too many records")
    errors: list[ItemError] = []
    out: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], int] = {}
    chains = {c.name: c for c in settings.chains}
    for i, item in enumerate(items):
        before = len(errors)
        if not isinstance(item, dict):
            errors.append(ItemError(i, "", "must be an object"))
            continue
        unknown = set(item) - {"source", "external_id", "kind", "chain", "token", "amount", "amount_base_units",
                               "wallet", "counterparty", "tx_hash", "log_index", "reference", "segregation",
                               "status", "created_at", "expected_by"}
        errors += [ItemError(i, name, "unknown field") for name in sorted(unknown)]
        source, external_id = _field(item, "source", errors, i), _field(item, "external_id", errors, i)
        for name, value in (("source", source), ("external_id", external_id)):
            if value is not None and (not isinstance(value, str) or not _ID.match(value)):
                errors.append(ItemError(i, name, "1-128 characters of letters, digits and . : / @ # - _"))
        if isinstance(source, str) and isinstance(external_id, str):
            if (source, external_id) in seen:
                errors.append(ItemError(i, "external_id", f"duplicates items[{seen[(source, external_id)]}]"))
            seen[(source, external_id)] = i
        kind = _enum(item, "kind", RecordKind, errors, i)
        status = _enum(item, "status", RecordStatus, errors, i)
        segregation = _enum(item, "segregation", Segregation, errors, i)
        chain = chains.get(item.get("chain")) if isinstance(item.get("chain"), str) else None
        if _field(item, "chain", errors, i) is not None and chain is None:
            errors.append(ItemError(i, "chain", f"unknown chain (configured: {sorted(chains)})"))
        token = _address(_field(item, "token", errors, i), "token", errors, i)
        token_cfg = settings.token_at(chain.chain_id, token) if chain else None
        if token and chain and token_cfg is None:
            errors.append(ItemError(i, "token", f"not a registered token on {chain.name}"))
        amount = _amount(item, token_cfg.decimals if token_cfg else None, errors, i)
        wallet = _address(_field(item, "wallet", errors, i), "wallet", errors, i)
        if wallet and chain and registered is not None and not registered(chain.chain_id, wallet):
            errors.append(ItemError(i, "wallet", f"not a registered wallet on {chain.name}"))
        counterparty = _address(item.get("counterparty"), "counterparty", errors, i)
        tx_hash = item.get("tx_hash")
        if tx_hash is not None and (not isinstance(tx_hash, str) or not _TX.match(tx_hash)):
            errors.append(ItemError(i, "tx_hash", "not a 0x-prefixed 32-byte hex hash"))
        log_index = item.get("log_index")
        if log_index is not None and (type(log_index) is not int or log_index < 0):
            errors.append(ItemError(i, "log_index", "must be a non-negative integer"))
        if log_index is not None and tx_hash is None:
            errors.append(ItemError(i, "log_index", "given without tx_hash"))
        created_at = _time(_field(item, "created_at", errors, i), "created_at", errors, i)
        expected_by = _time(item.get("expected_by"), "expected_by", errors, i)
        reference = item.get("reference")
        if reference is not None and (not isinstance(reference, str) or len(reference) > 200):
            errors.append(ItemError(i, "reference", "a string of at most 200 characters"))
        if len(errors) == before:
            out.append({"source": source, "external_id": external_id, "kind": kind, "chain_id": chain.chain_id,
                        "token": token, "amount": amount, "wallet": wallet, "counterparty": counterparty,
                        "tx_hash": tx_hash.lower() if tx_hash else None, "log_index": log_index,
                        "reference": reference, "segregation": segregation, "status": status,
                        "created_at": created_at, "expected_by": expected_by})
    if errors:
        raise RecordsRejected(errors)
    return out


def _enum(item: dict[str, Any], name: str, enum: Any, errors: list[ItemError], i: int) -> str | None:
    value = _field(item, name, errors, i)
    if value is None:
        return None
    if not isinstance(value, str) or value not in {e.value for e in enum}:
        errors.append(ItemError(i, name, f"one of {sorted(e.value for e in enum)}"))
        return None
    return str(value)


def _amount(item: dict[str, Any], decimals: int | None, errors: list[ItemError], i: int) -> int | None:
    text, base = item.get("amount"), item.get("amount_base_units")
    if (text is None) == (base is None):
        errors.append(ItemError(i, "amount", "give exactly one of amount (decimal string) or amount_base_units"))
        return None
    if base is not None:
        value = base if type(base) is int else int(base) if is_digits(base) else None
        if value is None or value < 0 or value > MAX_UINT256:
            errors.append(ItemError(i, "amount_base_units", "an integer in [0, 2**256-1] (number or digit string)"))
        return value
    if not isinstance(text, str):
        errors.append(ItemError(i, "amount", "must be a decimal string such as \"12.5\" (not a JSON number)"))
        return None
    if decimals is None:
        return None  # the token error is already reported
    try:
        return parse_units(text, decimals)
    except ValueError as exc:
        errors.append(ItemError(i, "amount", str(exc)))
        return None


async def ingest(settings: Settings, engine: AsyncEngine, items: list[Any], *, actor: str) -> dict[str, int]:
    """Validate, then write all or nothing. Returns counts: created, updated (new version), unchanged."""
    book = await wallet_book(settings, engine)
    records = validate(settings, items, registered=lambda chain_id, address: book.find(chain_id, address)
                       is not None)
    now = datetime.now(UTC)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    async with feed.transaction(engine) as conn:
        await lock_order.recon_state(conn)  # it may remove matches: the order every such writer keeps
        current = await repo.current_by_key(conn, [(r["source"], r["external_id"]) for r in records])
        conflicts: list[ItemError] = []
        writes: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for i, rec in enumerate(records):
            old = current.get((rec["source"], rec["external_id"]))
            if old is None:
                writes.append((rec, None))
                continue
            changed = [f for f in IMMUTABLE if old[f] != rec[f]]
            if changed:
                conflicts += [ItemError(i, f, "immutable: differs from the recorded value") for f in changed]
            elif any(old[f] != rec[f] for f in MUTABLE):
                writes.append((rec, old))
            else:
                counts["unchanged"] += 1
        if conflicts:
            raise RecordsRejected(conflicts, 409, "Conflicting record")
        entries = []
        for rec, old in writes:
            version = 1 if old is None else old["version"] + 1
            await repo.save_version(conn, rec, version, actor, now)
            entries.append({"actor": actor, "action": "record.ingested",
                            "entity": f"record:{recon_repo.record_ref((rec['source'], rec['external_id']))}",
                            "before": _plain(old),
                            "after": _plain({**rec, "version": version})})
            counts["created" if old is None else "updated"] += 1
        await audit.append_many(conn, entries, at=now)
        await repo.add_counterparties(conn, [rec["counterparty"] for rec, _ in writes if rec["counterparty"]])
        await recon_repo.mark_items(conn, record_keys=[(rec["source"], rec["external_id"]) for rec, _ in writes])
        await _unmatch_changed(conn, writes, now)
    return counts


async def _unmatch_changed(conn: AsyncConnection, writes: list[tuple[dict[str, Any], dict[str, Any] | None]],
                           now: datetime) -> None:
    """Remove the active matches of records whose new version changed a field matching decides on."""
    changed = {(rec["source"], rec["external_id"]): [f for f in REDECIDE if old[f] != rec[f]]
               for rec, old in writes if old is not None and any(old[f] != rec[f] for f in REDECIDE)}
    for match_id in await recon_repo.active_match_ids_of_records(conn, sorted(changed)):
        m = await recon_repo.match(conn, match_id)
        assert m is not None
        fields = sorted({f for k in m["record_keys"] for f in changed.get(tuple(k), [])})
        reason = f"record changed: {', '.join(fields)}"
        await recon_repo.remove_match(conn, match_id, actor=MATCHER, reason=reason, at=now)
        await recon_repo.mark_items(conn, transfer_ids=m["transfer_ids"], record_keys=m["record_keys"])
        await audit.append(conn, actor=MATCHER, action="match.removed", entity=f"match:{match_id}", at=now,
                           before={"transfers": m["transfer_ids"], "records": m["record_keys"]},
                           after={"reason": reason})


def _plain(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {k: (str(v) if k == "amount" else v) for k, v in rec.items() if k not in ("id", "ingested_at")}
