"""Matching on-chain transfers to internal records: a pure function of plain data (no database, no RPC).

`reconcile(transfers, records, policy, now)` returns matches, breaks, classifications and noise flags. Rules, in
priority order, each decision carrying the rule, its version, the candidates considered and the facts compared:

1. `tx_hash`: a record naming a transaction (and log index) matches a log of it that agrees on token, our wallet,
   counterparty and amount; candidates that disagree give `amount_mismatch` or `details_mismatch`.
2. `deposit_address`: a deposit without a tx hash matches a transfer into its address, same token, amount within
   the token's tolerance, block time inside the window around `created_at`.
3. `split` / `batch`: one record settled by up to `max_combination` transfers summing exactly, or several records
   settled by one transfer. Every candidate is searched (exact subset sum, `app.settlement.subsets`); noise is
   never a part. One combination matches; several, or a search over `policy.subset_search_limit`, is an
   `ambiguous` break naming the candidates (never a pick).
4. `internal`: a transfer between two of our wallets matches an internal-transfer record, else is classified
   `internal` when the policy allows, else breaks.
5. noise: zero-value, dust from unknown senders, and address-poisoning look-alikes *inbound from outside* are
   flagged, not broken; an outbound transfer to a look-alike of a known address is an `outbound_lookalike` break
   at once (`app.settlement.noise`).

Pairs are only ever made when they are unique on both sides (never a silent pick), and every step iterates in a
canonical order, so the outcome does not depend on the order in which transfers and records arrive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from app.settlement.model import (
    Break,
    BreakType,
    Classification,
    Flag,
    Match,
    Outcome,
    Policy,
    RecordFact,
    RecordKind,
    RecordStatus,
    TransferFact,
)
from app.settlement.noise import (
    Lookalikes,
    counterparty_of,
    is_outbound_lookalike,
    lookalike_shape,
    noise_kinds,
)
from app.settlement.subsets import exact_subsets

__all__ = ["RULE_VERSION", "Rule", "counterparty_of", "lookalike_shape", "reconcile"]

RULE_VERSION = "2"  # 2: noise only inbound from outside; outbound look-alikes break; exact split search


class Rule(StrEnum):
    TX_HASH = "tx_hash"
    DEPOSIT_ADDRESS = "deposit_address"
    SPLIT = "split"
    BATCH = "batch"
    INTERNAL = "internal"


@dataclass
class _State:
    transfers: list[TransferFact]
    records: list[RecordFact]
    policy: Policy
    matched_t: set[int] = field(default_factory=set)
    matched_r: set[tuple[str, str]] = field(default_factory=set)
    matches: list[Match] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    broken_t: set[int] = field(default_factory=set)
    broken_r: set[tuple[str, str]] = field(default_factory=set)
    noise: dict[int, tuple[str, ...]] = field(default_factory=dict)  # transfer id -> its noise flags
    lookalikes: Lookalikes | None = None

    def free_t(self) -> list[TransferFact]:
        return [t for t in self.transfers if t.id not in self.matched_t and t.id not in self.broken_t]

    def free_r(self) -> list[RecordFact]:
        return [r for r in self.records if r.key not in self.matched_r and r.key not in self.broken_r]

    def match(self, rule: Rule, ts: Sequence[TransferFact], rs: Sequence[RecordFact], candidates: Iterable[int],
              facts: Mapping[str, object]) -> None:
        self.matched_t |= {t.id for t in ts}
        self.matched_r |= {r.key for r in rs}
        self.matches.append(Match(rule.value, RULE_VERSION, tuple(sorted(t.id for t in ts)),
                                  tuple(sorted(r.key for r in rs)), tuple(sorted(set(candidates))),
                                  tuple(sorted(facts.items()))))

    def open_break(self, kind: BreakType, ts: Iterable[TransferFact], rs: Iterable[RecordFact],
                   facts: Mapping[str, object]) -> None:
        t_ids, r_keys = tuple(sorted({t.id for t in ts})), tuple(sorted({r.key for r in rs}))
        self.broken_t |= set(t_ids)
        self.broken_r |= set(r_keys)
        self.breaks.append(Break(kind, t_ids, r_keys, tuple(sorted(facts.items()))))


def reconcile(transfers: Iterable[TransferFact], records: Iterable[RecordFact], policy: Policy,
              now: datetime) -> Outcome:
    """Decide every transfer and record. Only transfers in `policy.match_states` are matched (the rest are
    returned as pending); cancelled records take no part. Pure and deterministic."""
    live = sorted(transfers, key=lambda t: t.id)
    pending = tuple(t.id for t in live if t.state not in policy.match_states)
    st = _State([t for t in live if t.state in policy.match_states],
                sorted((r for r in records if r.status is not RecordStatus.CANCELLED), key=lambda r: r.key), policy)
    # noise is a property of the transfer alone (and the known addresses), decided before any combination
    known = set(policy.known_counterparties) | {r.counterparty for r in st.records if r.counterparty}
    st.lookalikes = Lookalikes(known, st.transfers)
    st.noise = {t.id: kinds for t in st.transfers if (kinds := noise_kinds(t, st.lookalikes, policy.dust))}
    _by_tx_hash(st)
    _pairs(st, Rule.DEPOSIT_ADDRESS, _deposit_candidates(st),
           lambda r: r.kind is RecordKind.DEPOSIT and r.tx_hash is None)
    _pairs(st, Rule.INTERNAL, _internal_candidates(st),
           lambda r: r.kind is RecordKind.INTERNAL and r.tx_hash is None)
    _split(st)
    _batch(st)
    classifications = _internal(st)
    flags = [Flag(t.id, kind) for t in st.free_t() for kind in st.noise.get(t.id, ())]
    flagged = {f.transfer_id for f in flags}
    for t in st.free_t():
        if is_outbound_lookalike(t, st.lookalikes):
            st.open_break(BreakType.OUTBOUND_LOOKALIKE, [t], [], {"recipient": t.recipient,
                                                                  "imitates": st.lookalikes.imitated(t.recipient)})
    for t in st.free_t():
        if t.id not in flagged and now - t.block_time >= policy.unmatched_grace:
            st.open_break(BreakType.UNMATCHED_TRANSFER, [t], [], {"age_s": int((now - t.block_time).total_seconds())})
    for r in st.free_r():
        due = r.expected_by or r.created_at + policy.missing_grace
        if r.status is RecordStatus.COMPLETED and now >= due:
            st.open_break(BreakType.MISSING_TRANSFER, [], [r], {"due": due.isoformat()})
    return Outcome(tuple(sorted(st.matches, key=lambda m: (m.transfer_ids, m.record_keys, m.rule))),
                   tuple(sorted(st.breaks, key=lambda b: (b.type.value, b.transfer_ids, b.record_keys))),
                   tuple(sorted(classifications)), tuple(sorted(flags)), pending)


# ---- agreement ---------------------------------------------------------------------------------------------------
def _side_ok(t: TransferFact, r: RecordFact) -> bool:
    if r.kind is RecordKind.DEPOSIT:
        return t.recipient == r.wallet and t.recipient_is_ours
    if r.kind is RecordKind.WITHDRAWAL:
        return t.sender == r.wallet and t.sender_is_ours
    return t.sender == r.wallet and t.sender_is_ours and t.recipient_is_ours


def _amount_ok(t: TransferFact, r: RecordFact, policy: Policy) -> bool:
    return abs(t.amount - r.amount) <= policy.tolerance.get((r.chain_id, r.token), 0)


def _details_ok(t: TransferFact, r: RecordFact) -> bool:
    counterparty = t.recipient if r.kind is not RecordKind.DEPOSIT else t.sender
    return (t.chain_id == r.chain_id and t.token == r.token and _side_ok(t, r)
            and (r.counterparty is None or counterparty == r.counterparty))


def _in_window(t: TransferFact, r: RecordFact, policy: Policy) -> bool:
    return abs(t.block_time - r.created_at) <= policy.window


def _facts(t: TransferFact, r: RecordFact) -> dict[str, object]:
    return {"transfer": (t.token, t.sender, t.recipient, str(t.amount), t.tx_hash, t.log_index),
            "record": (r.token, r.wallet, r.counterparty, str(r.amount), r.tx_hash, r.log_index)}


# ---- rule 1: transaction hash ------------------------------------------------------------------------------------
def _by_tx_hash(st: _State) -> None:
    by_tx: dict[tuple[int, str], list[TransferFact]] = defaultdict(list)
    for t in st.transfers:
        by_tx[(t.chain_id, t.tx_hash.lower())].append(t)

    def candidates(r: RecordFact) -> list[TransferFact]:
        if r.tx_hash is None:
            return []
        logs = by_tx.get((r.chain_id, r.tx_hash.lower()), [])
        return [t for t in logs if r.log_index is None or t.log_index == r.log_index]

    def agreeing(r: RecordFact) -> list[TransferFact]:
        return [t for t in candidates(r) if _agrees(t, r, st)]

    claimed = _pairs(st, Rule.TX_HASH, agreeing, lambda r: r.tx_hash is not None)
    for r in st.free_r():
        cands = [t for t in candidates(r) if t.id not in st.matched_t]
        if r.tx_hash is None or not cands or r.key in claimed:
            continue
        near = [t for t in cands if _details_ok(t, r)]
        kind = BreakType.AMOUNT_MISMATCH if near else BreakType.DETAILS_MISMATCH
        shown = near or cands
        st.open_break(kind, shown, [r], {"compared": tuple(tuple(sorted(_facts(t, r).items())) for t in shown)})


def _agrees(t: TransferFact, r: RecordFact, st: _State) -> bool:
    return _details_ok(t, r) and _amount_ok(t, r, st.policy) and (t.id, r.key) not in st.policy.excluded


# ---- unique pairing (rules 1 and 2) ------------------------------------------------------------------------------
Candidates = Callable[[RecordFact], list[TransferFact]]


def _index(items: Iterable[TransferFact], side: str) -> dict[tuple[int, str, str], list[TransferFact]]:
    """Transfers by (chain, token, our wallet on `side`): every rule looks candidates up here, never scans."""
    out: dict[tuple[int, str, str], list[TransferFact]] = defaultdict(list)
    for t in items:
        out[(t.chain_id, t.token, t.recipient if side == "in" else t.sender)].append(t)
    return out


def _deposit_candidates(st: _State) -> Candidates:
    incoming = _index(st.free_t(), "in")

    def candidates(r: RecordFact) -> list[TransferFact]:
        return [t for t in incoming.get((r.chain_id, r.token, r.wallet), ())
                if _agrees(t, r, st) and _in_window(t, r, st.policy)]
    return candidates


def _internal_candidates(st: _State) -> Candidates:
    """An internal-transfer record without a tx hash: from its wallet to its counterparty (both ours), same token
    and amount, inside the window."""
    outgoing = _index(st.free_t(), "out")

    def candidates(r: RecordFact) -> list[TransferFact]:
        return [t for t in outgoing.get((r.chain_id, r.token, r.wallet), ())
                if _agrees(t, r, st) and _in_window(t, r, st.policy)]
    return candidates


def _pairs(st: _State, rule: Rule, cands: Candidates, only: Callable[[RecordFact], bool]) -> set[tuple[str, str]]:
    """Match record-transfer pairs that are each other's only candidate; repeat until nothing changes (the
    result is order-free). Components left with several candidates become one `ambiguous` break, or
    `duplicate_claim` when several records claim one transfer. Returns the records that had candidates."""
    records = [r for r in st.free_r() if only(r)]
    free = {t.id for t in st.free_t()}
    edges = {r.key: {t.id for t in cands(r) if t.id in free} for r in records}
    had = {k for k, v in edges.items() if v}
    by_t: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for k, ids in edges.items():
        for i in ids:
            by_t[i].add(k)
    t_of = {t.id: t for t in st.transfers}
    r_of = {r.key: r for r in records}
    changed = True
    while changed:
        changed = False
        for k in sorted(edges):
            ids = edges[k]
            if len(ids) == 1 and len(by_t[next(iter(ids))]) == 1:
                (i,) = ids
                t, r = t_of[i], r_of[k]
                st.match(rule, [t], [r], [i], _facts(t, r))
                del edges[k]
                by_t.pop(i)
                changed = True
    for component_t, component_r in _components(edges, by_t):
        ts, rs = [t_of[i] for i in sorted(component_t)], [r_of[k] for k in sorted(component_r)]
        kind = BreakType.DUPLICATE_CLAIM if len(ts) == 1 else BreakType.AMBIGUOUS
        st.open_break(kind, ts, rs, {"rule": rule.value, "transfers": len(ts), "records": len(rs)})
    return had


def _components(edges: dict[tuple[str, str], set[int]], by_t: dict[int, set[tuple[str, str]]]
                ) -> list[tuple[set[int], set[tuple[str, str]]]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for start in sorted(k for k, v in edges.items() if v):
        if start in seen:
            continue
        ts: set[int] = set()
        rs = {start}
        stack = [start]
        while stack:
            k = stack.pop()
            for i in edges.get(k, ()):
                if i not in ts:
                    ts.add(i)
                    for other in by_t.get(i, ()):
                        if other not in rs:
                            rs.add(other)
                            stack.append(other)
        seen |= rs
        out.append((ts, rs))
    return out


# ---- rule 3: split and batch ---------------------------------------------------------------------------------------
def _combine(st: _State, rule: Rule, amount: int, pool: list, value: Callable[[object], int],
             decide: Callable[[tuple, list], None]) -> None:
    """Search `pool` (in canonical order) for the combinations summing to `amount`: one is matched (`decide`),
    several or an unfinished search open one `ambiguous` break (`decide` with None)."""
    found = exact_subsets(amount, [value(x) for x in pool], max_size=st.policy.max_combination,
                          limit=st.policy.subset_search_limit)
    if not found.complete:
        decide((), pool)  # the candidates, all of them: which ones settle it is not known
        return
    subsets = [tuple(pool[i] for i in s) for s in found.solutions]
    if len(subsets) == 1:
        decide(subsets[0], [])
    elif subsets:
        decide((), [x for i, x in enumerate(pool) if any(i in s for s in found.solutions)])


def _split(st: _State) -> None:
    """One deposit record settled by several transfers into its address (same token, window), summing exactly.
    Noise and zero amounts are never parts."""
    incoming = _index(st.free_t(), "in")
    for r in st.free_r():
        if r.kind is not RecordKind.DEPOSIT or r.tx_hash is not None:
            continue
        pool = sorted((t for t in incoming.get((r.chain_id, r.token, r.wallet), ()) if t.id not in st.matched_t
                       and t.id not in st.broken_t and t.id not in st.noise and t.amount > 0 and _details_ok(t, r)
                       and _in_window(t, r, st.policy) and (t.id, r.key) not in st.policy.excluded),
                      key=lambda t: (t.amount, t.id))

        def decide(subset: tuple, ambiguous: list, r: RecordFact = r, pool: list = pool) -> None:
            if subset:
                st.match(Rule.SPLIT, subset, [r], [t.id for t in pool], {"parts": len(subset)})
            elif ambiguous:
                st.open_break(BreakType.AMBIGUOUS, ambiguous, [r], _ambiguity(Rule.SPLIT, st, pool, ambiguous))
        _combine(st, Rule.SPLIT, r.amount, pool, lambda t: t.amount, decide)


def _ambiguity(rule: Rule, st: _State, pool: list, named: list) -> dict[str, object]:
    facts: dict[str, object] = {"rule": rule.value, "candidates": len(pool)}
    if named is pool:
        facts["search_limit"] = st.policy.subset_search_limit
    else:
        facts["named"] = len(named)
    return facts


def _batch(st: _State) -> None:
    """Several records settled by one transfer (e.g. withdrawals paid out together), summing exactly. A noise
    transfer settles nothing."""
    by_wallet: dict[tuple[int, str, str], list[RecordFact]] = defaultdict(list)
    for r in st.free_r():
        by_wallet[(r.chain_id, r.token, r.wallet)].append(r)
    for t in st.free_t():
        if t.id in st.noise:
            continue
        near = {r.key: r for side in (t.sender, t.recipient) for r in by_wallet.get((t.chain_id, t.token, side), ())}
        pool = sorted((r for r in near.values() if r.key not in st.matched_r and r.key not in st.broken_r
                       and r.amount > 0 and _details_ok(t, r) and (r.tx_hash is None or r.tx_hash.lower()
                       == t.tx_hash.lower()) and (r.tx_hash is not None or _in_window(t, r, st.policy))
                       and (t.id, r.key) not in st.policy.excluded), key=lambda r: (r.amount, r.key))

        def decide(subset: tuple, ambiguous: list, t: TransferFact = t, pool: list = pool) -> None:
            if subset:
                st.match(Rule.BATCH, [t], subset, [t.id], {"parts": len(subset)})
            elif ambiguous:
                st.open_break(BreakType.AMBIGUOUS, [t], ambiguous, _ambiguity(Rule.BATCH, st, pool, ambiguous))
        _combine(st, Rule.BATCH, t.amount, pool, lambda r: r.amount, decide)


# ---- rule 4: internal transfers ------------------------------------------------------------------------------------
def _internal(st: _State) -> list[Classification]:
    out = []
    for t in st.free_t():
        if not (t.sender_is_ours and t.recipient_is_ours):
            continue
        if st.policy.auto_internal:
            out.append(Classification(t.id, "internal", RULE_VERSION))
            st.matched_t.add(t.id)
        else:
            st.open_break(BreakType.UNMATCHED_TRANSFER, [t], [], {"internal": True})
    return out
