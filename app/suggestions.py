"""Suggested counterparts for ops: for an unexplained transfer, the unexplained records on the same wallet and
token; for an unexplained record, the unexplained transfers. Closest in amount first, then in time. Pure: plain
rows in, plain dicts out (the caller fetches the pools)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

CANDIDATE_POOL = 100
"""Suggestions for an item are drawn from at most this many unexplained counterparts on its wallet and token:
the half nearest before its time and the half nearest after (`app.persistence.candidates_repo`). The break detail
and the ops queue read no more than that per item, however many free items the wallet has."""


def our_side(t: dict, ours: Collection[tuple[int, str]]) -> str:
    """The transfer's address that is one of our wallets (the recipient when both are)."""
    return t["recipient"] if (t["chain_id"], t["recipient"]) in ours else t["sender"]


def _when(t: dict) -> datetime:
    return t["block_time"] or t["seen_at"]  # type: ignore[no-any-return]


def records_for(t: dict, pool: Iterable[dict], ours: Collection[tuple[int, str]], n: int = 3) -> list[dict]:
    side, when = our_side(t, ours), _when(t)
    near = [r for r in pool if (r["chain_id"], r["wallet"], r["token"]) == (t["chain_id"], side, t["token"])]
    near.sort(key=lambda r: (abs(r["amount"] - t["amount"]), abs((r["created_at"] - when).total_seconds()),
                             r["source"], r["external_id"]))
    return [{"source": r["source"], "external_id": r["external_id"], "kind": r["kind"], "status": r["status"],
             "amount_base_units": str(r["amount"]), "amount_difference_base_units": str(r["amount"] - t["amount"]),
             "created_at": r["created_at"],
             "hours_from_block_time": round((r["created_at"] - when).total_seconds() / 3600, 2)} for r in near[:n]]


def transfers_for(r: dict, pool: Iterable[dict], n: int = 3) -> list[dict]:
    near = [t for t in pool if t["chain_id"] == r["chain_id"] and t["token"] == r["token"]
            and r["wallet"] in (t["sender"], t["recipient"])]
    near.sort(key=lambda t: (abs(t["amount"] - r["amount"]), abs((_when(t) - r["created_at"]).total_seconds()),
                             t["id"]))
    return [{"id": t["id"], "tx_hash": t["tx_hash"], "state": t["state"], "amount_base_units": str(t["amount"]),
             "amount_difference_base_units": str(t["amount"] - r["amount"]), "block_time": t["block_time"],
             "hours_from_created_at": round((_when(t) - r["created_at"]).total_seconds() / 3600, 2)}
            for t in near[:n]]
