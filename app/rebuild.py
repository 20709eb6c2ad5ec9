"""`settle recon --check-rebuild`: decide everything again from scratch (a dry run) and compare it with the
machine's current decisions: its active matches, its classifications and the open breaks. A difference means the
passes that built the current state (incremental ones, the bulk SQL step) did not decide as one full pass of the
pure core would: a defect to report, never to hide.

What people decided is left out on both sides: their matches (and the items in them), the transfers they
classified, and the pairs they unmatched (excluded from the rebuild as from every pass). A break a person resolved
is not reopened by the machine, so scratch wanting it is no difference; `reorged_after_match` breaks come from
history (a match that was reorged away), not from the current facts, so they and their items are not compared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.persistence import recon_repo as repo
from app.persistence import records_repo
from app.reconciler import SYSTEM, _finalized_only, _record_fact, _resolved_by, _transfer_fact, policy_for
from app.settings import Settings
from app.settlement.matching import reconcile
from app.settlement.model import BreakType
from app.wallet_book import wallet_book

Side = tuple[set, set]  # (only in the current state, only from scratch)


@dataclass(frozen=True)
class RebuildDifferences:
    """Each a pair (only now, only from scratch). Matches: (transfer ids, record keys). Classifications:
    (transfer id, reason). Breaks: (type, transfer ids, record keys)."""

    matches: Side
    classifications: Side
    breaks: Side

    @property
    def count(self) -> int:
        return sum(len(a) + len(b) for a, b in (self.matches, self.classifications, self.breaks))


def _break_key(kind: str, transfer_ids: object, record_keys: object) -> tuple:
    return (kind, tuple(sorted(transfer_ids)),  # type: ignore[call-overload]
            tuple(sorted(tuple(k) for k in record_keys)))  # type: ignore[attr-defined]


async def rebuild_differences(settings: Settings, engine: AsyncEngine, *, now: datetime | None = None
                              ) -> RebuildDifferences:
    """Decide every live transfer and current record from scratch (people's decisions left out) as a full pass
    would at `now`, and compare with the machine's active matches, classifications and unresolved breaks."""
    now = now or datetime.now(UTC)
    ours = (await wallet_book(settings, engine)).our_wallets()
    async with engine.connect() as conn:
        matches = await repo.active_matches(conn)
        machine = [m for m in matches if m["created_by"] == SYSTEM]
        people = [m for m in matches if m["created_by"] != SYSTEM]
        classified = await repo.classifications(conn)
        manual_t = {i for m in people for i in m["transfer_ids"]} | {i for i, _, actor in classified
                                                                      if actor != SYSTEM}
        manual_r = {tuple(k) for m in people for k in m["record_keys"]}
        transfers = await repo.live_transfers(conn)
        records = [r for r in await records_repo.all_current(conn) if (r["source"], r["external_id"]) not in manual_r
                   and r["status"] != "cancelled"]
        excluded = await repo.pairs_unmatched_by_people(conn, SYSTEM)
        known = await repo.known_counterparties(conn) | {address for _, address in ours}
        breaks = await repo.all_breaks(conn)
    facts = [_transfer_fact(t, ours, _finalized_only(settings)) for t in transfers if t["id"] not in manual_t]
    policy = replace(policy_for(settings, excluded), known_counterparties=frozenset(known))
    outcome = reconcile(facts, [_record_fact(r) for r in records], policy, now)

    now_m = {(tuple(sorted(m["transfer_ids"])), tuple(sorted(tuple(k) for k in m["record_keys"]))) for m in machine}
    scratch_m = {(m.transfer_ids, m.record_keys) for m in outcome.matches}
    now_c = {(i, reason) for i, reason, actor in classified if actor == SYSTEM}
    scratch_c = {(c.transfer_id, c.reason) for c in outcome.classifications} | {
        (f.transfer_id, f.kind) for f in outcome.flags}

    latest: dict[tuple, dict] = {}
    for b in breaks:  # in id order: the last break of each identity wins
        latest[_break_key(b["type"], json.loads(b["transfer_ids"]), json.loads(b["record_keys"]))] = b
    reorged = [k for k, b in latest.items() if k[0] == BreakType.REORGED_AFTER_MATCH.value
               and b["status"] != "resolved"]
    history_t = {i for k in reorged for i in k[1]}
    history_r = {r for k in reorged for r in k[2]}

    def compared(key: tuple) -> bool:
        return key[0] != BreakType.REORGED_AFTER_MATCH.value and not (set(key[1]) & history_t or
                                                                       set(key[2]) & history_r)

    now_b = {k for k, b in latest.items() if b["status"] != "resolved" and compared(k)}
    by_people = {k for k, b in latest.items() if b["status"] == "resolved" and _resolved_by(b) != SYSTEM}
    scratch_b = {k for k in (_break_key(b.type.value, b.transfer_ids, b.record_keys) for b in outcome.breaks)
                 if compared(k)}
    return RebuildDifferences((now_m - scratch_m, scratch_m - now_m), (now_c - scratch_c, scratch_c - now_c),
                              (now_b - scratch_b, scratch_b - now_b - by_people))
