"""The reconciler service: feeds the pure matcher with what is still unexplained, persists its decisions, keeps
breaks in step (opened, closed when explained), handles reorgs after a match, and audits everything.

Idempotent: matched and classified items are not decided again, breaks are keyed by a fingerprint, a break
an operator resolved is not reopened by the machine, and one an operator reopened is not resolved by it. An item
is in at most one open break. One transaction per pass, locks in the order `app.persistence.lock_order` keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from time import perf_counter

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.persistence import audit, feed, lock_order, locks, recon_bulk
from app.persistence import recon_repo as repo
from app.settings import Settings
from app.settlement.matching import RULE_VERSION, lookalike_shape, reconcile
from app.settlement.model import (
    Break,
    BreakType,
    Outcome,
    Policy,
    RecordFact,
    RecordKind,
    RecordStatus,
    TransferFact,
)
from app.settlement.noise import NOISE_KINDS
from app.settlement.severity import TYPE_FLOORS, Severity, SeverityPolicy, due_at, severity
from app.wallet_book import wallet_book

SYSTEM = "reconciler"
BULK_ANALYZE = 100_000  # matches written in bulk from which the planner's statistics are refreshed
RETRIES = 3  # attempts of a pass that a concurrent match made conflict


@dataclass
class PassSummary:
    matched: int = 0
    unmatched_by_reorg: int = 0
    opened: list[str] = field(default_factory=list)
    closed: int = 0
    classified: int = 0
    full: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase, for operators and the bench

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + perf_counter() - started


def fingerprint(kind: str, transfer_ids: Iterable[int], record_keys: Iterable[tuple[str, str]]) -> str:
    """A break's identity: its type and items as a canonical JSON array, unambiguous whatever a record id contains
    (`["missing_transfer",[],[["a/b","c"]]]`). The migration 9d3e7a1c5b20 converted the older joined form."""
    return repo.dumps([kind, sorted(transfer_ids), sorted([k[0], k[1]] for k in record_keys)])


def policy_for(settings: Settings, excluded: frozenset[tuple[int, tuple]] = frozenset()) -> Policy:
    """The matching policy from `[recon]`; token-unit thresholds are in base units per token (chain id, address),
    parsed and checked once, when the settings load."""
    cfg = settings.recon
    thresholds = settings.recon_thresholds
    return Policy(window=timedelta(hours=cfg.window_hours), tolerance=thresholds.tolerance,
                  dust=thresholds.dust, auto_internal=cfg.auto_internal, max_combination=cfg.max_combination,
                  unmatched_grace=timedelta(minutes=cfg.unmatched_grace_minutes),
                  missing_grace=timedelta(hours=cfg.missing_grace_hours),
                  excluded=excluded)  # type: ignore[arg-type]


_OUR_SHAPES: list[tuple[frozenset[tuple[int, str]], dict[str, set[str]]]] = []


def _our_shapes(ours: frozenset[tuple[int, str]]) -> dict[str, set[str]]:
    """Our wallet addresses by look-alike shape, built once per registry version (`ours` is the book's own set)."""
    if not _OUR_SHAPES or _OUR_SHAPES[0][0] is not ours:
        shapes: dict[str, set[str]] = {}
        for _, address in ours:
            shapes.setdefault(lookalike_shape(address), set()).add(address)
        _OUR_SHAPES[:] = [(ours, shapes)]
    return _OUR_SHAPES[0][1]


def severity_policy(settings: Settings) -> SeverityPolicy:
    cfg = settings.recon
    a, b, c = cfg.severity_amounts
    return SeverityPolicy(amounts=(a, b, c), ages=(timedelta(hours=cfg.severity_age_hours[0]),
                                                   timedelta(hours=cfg.severity_age_hours[1])),
                          sla={Severity(k): timedelta(hours=v) for k, v in cfg.sla_hours.items()})


def _sized(settings: Settings, b: dict, transfers: dict[int, dict], records: dict[tuple[str, str], dict],
           now: datetime) -> dict:
    """Add token, amount (the larger side, base units), severity and SLA due time to a break about to open."""
    sides = [sum(transfers[i]["amount"] for i in b["transfer_ids"] if i in transfers),
             sum(records[tuple(k)]["amount"] for k in b["record_keys"] if tuple(k) in records)]
    chain_id, token = next(((transfers[i]["chain_id"], transfers[i]["token"]) for i in b["transfer_ids"]
                            if i in transfers), None) or next(
        ((records[tuple(k)]["chain_id"], records[tuple(k)]["token"]) for k in b["record_keys"]
         if tuple(k) in records), (None, None))
    configured = settings.token_at(chain_id, token) if token else None
    decimals = configured.decimals if configured else 0
    times = [transfers[i]["block_time"] for i in b["transfer_ids"] if i in transfers and transfers[i]["block_time"]]
    times += [records[tuple(k)]["created_at"] for k in b["record_keys"] if tuple(k) in records]
    since = min(times, default=now)
    policy = severity_policy(settings)
    level = severity(max(sides), decimals, now - since, policy, TYPE_FLOORS.get(b["type"], Severity.LOW))
    return {**b, "chain_id": chain_id, "token": token, "amount": max(sides), "severity": level.value, "since": since,
            "due_at": due_at(now, level, policy)}


def _transfer_fact(t: dict, ours: frozenset[tuple[int, str]], finalized_only: frozenset[int] = frozenset()
                   ) -> TransferFact:
    """A chain whose policy matches only finalized transfers shows its confirmed ones as pending (`seen`)."""
    state = "seen" if t["chain_id"] in finalized_only and t["state"] == "confirmed" else t["state"]
    return TransferFact(t["id"], t["chain_id"], t["token"], t["sender"], t["recipient"], t["amount"], t["tx_hash"],
                        t["log_index"], t["block_time"] or datetime.fromtimestamp(0, UTC), state,
                        (t["chain_id"], t["sender"]) in ours, (t["chain_id"], t["recipient"]) in ours)


def _finalized_only(settings: Settings) -> frozenset[int]:
    return frozenset(c.chain_id for c in settings.chains if c.name in settings.recon.match_finalized_only)


def _record_fact(r: dict) -> RecordFact:
    return RecordFact(r["source"], r["external_id"], RecordKind(r["kind"]), r["chain_id"], r["token"], r["amount"],
                      r["wallet"], r["counterparty"], r["tx_hash"], r["log_index"], r["created_at"], r["expected_by"],
                      RecordStatus(r["status"]))


async def reconcile_once(settings: Settings, engine: AsyncEngine, *, now: datetime | None = None,
                         full: bool = False) -> PassSummary:
    """One pass, in one transaction. Incremental by default: it decides again only what changed since the last
    pass (the `recon_dirty` queue: indexed or reorged block ranges, ingested records, people's resolutions, grace
    periods ending) and the neighbourhood those items can be matched with, so it costs what changed, not the size
    of the history. A full pass (`full`, a `full` row in the queue, or more changes than `recon.incremental_limit`)
    decides every unexplained item. Both give the same result; running either twice changes nothing.

    A match that a person (or another writer) committed meanwhile for one of the same items makes the schema
    refuse this pass's (one active match per item): the pass is rolled back and decided again from what is
    there now, up to `RETRIES` times."""
    now = now or datetime.now(UTC)
    for attempt in range(RETRIES):
        try:
            return await _reconcile_attempt(settings, engine, now, full)
        except IntegrityError:
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


async def _reconcile_attempt(settings: Settings, engine: AsyncEngine, now: datetime, full: bool) -> PassSummary:
    summary = PassSummary()
    ours = (await wallet_book(settings, engine)).our_wallets()  # before the transaction: it may seed the registry
    async with locks.reconciler_lock(engine), feed.transaction(engine) as conn:  # SQLite: a lock file
        await lock_order.reconciler_pass(conn)  # one reconciler at a time
        await lock_order.recon_state(conn)  # before anything it decides from (see lock_order)
        dirty = await repo.due_dirty(conn, now)
        seeds_t = {d["transfer_id"] for d in dirty if d["kind"] == "transfer"}
        seeds_r = {(d["record_source"], d["record_external_id"]) for d in dirty if d["kind"] == "record"}
        ranges = [(d["chain_id"], d["from_block"], d["to_block"]) for d in dirty if d["kind"] == "range"]
        full = full or any(d["kind"] == "full" for d in dirty)
        if not full:
            seeds_t |= await repo.transfer_ids_in_ranges(conn, ranges)
            full = len(seeds_t) + len(seeds_r) > settings.recon.incremental_limit
        summary.full = full
        if full:
            await _full_pass(conn, settings, ours, now, summary)
        elif seeds_t or seeds_r:
            await _incremental_pass(conn, settings, ours, now, summary, seeds_t, seeds_r)
        await repo.consume_dirty(conn, [d["id"] for d in dirty])
        await _age_open_breaks(conn, settings, now)
    return summary


async def _full_pass(conn: AsyncConnection, settings: Settings, ours: frozenset[tuple[int, str]], now: datetime,
                     summary: PassSummary) -> None:
    with summary.phase("reorged"):
        await _unmatch_reorged(conn, settings, now, summary)
        excluded = await repo.pairs_unmatched_by_people(conn, SYSTEM)
    policy = policy_for(settings, excluded)
    if settings.recon.bulk_matching:
        with summary.phase("bulk_pairs"):
            batches = await recon_bulk.match_unique_pairs(
                conn, system=SYSTEM, now=now, window=policy.window, tolerance=policy.tolerance,
                finalized_only=_finalized_only(settings), foreign=await recon_bulk.foreign_record_wallets(conn, ours),
                excluded=excluded, timings=summary.timings)
        with summary.phase("bulk_audit"):
            for rule, first, last in batches:
                await audit.append_match_batch(conn, actor=SYSTEM, rule=rule, first_id=first, last_id=last, at=now)
                summary.matched += last - first + 1
        if summary.matched >= BULK_ANALYZE:
            with summary.phase("analyze"):
                await repo.refresh_statistics(conn)
    with summary.phase("load_free"):
        await _withdraw_stale_noise(conn, ours, now)
        free = {t["id"]: t for t in await repo.free_transfers(conn)}
        free_records = {(r["source"], r["external_id"]): r for r in await repo.free_records(conn)}
        known = await repo.known_counterparties(conn) | {address for _, address in ours}
        open_rows = await repo.open_breaks(conn)
    await _decide(conn, settings, ours, now, summary, free, free_records, excluded, known, open_rows, scoped=False)


async def _withdraw_stale_noise(conn: AsyncConnection, ours: frozenset[tuple[int, str]], now: datetime) -> None:
    """Noise is only ever inbound from outside (rule version 2): a zero/dust/look-alike classification the machine
    made earlier on a transfer sent by one of our wallets (a possible poisoning loss) is withdrawn, with an audit
    entry keeping what it was, so that this pass decides the transfer again. Migration 9d3e7a1c5b20 queues the
    full pass that does it."""
    stale = [c for c in await repo.classified_by(conn, SYSTEM, list(NOISE_KINDS))
             if (c["chain_id"], c["sender"]) in ours]
    if not stale:
        return
    await repo.unclassify(conn, [(c["transfer_id"], c["reason"]) for c in stale], actor=SYSTEM, at=now)
    await audit.append_many(conn, [{"actor": SYSTEM, "action": "transfer.unclassified",
                                    "entity": f"transfer:{c['transfer_id']}",
                                    "before": {"reason": c["reason"], "at": c["at"]},
                                    "after": {"reason": "noise is only inbound from outside",
                                              "rule_version": RULE_VERSION}} for c in stale], at=now)


async def _incremental_pass(conn: AsyncConnection, settings: Settings, ours: frozenset[tuple[int, str]],
                            now: datetime, summary: PassSummary, seeds_t: set[int], seeds_r: set[tuple[str, str]]
                            ) -> None:
    for t_ids, r_keys in await _unmatch_reorged(conn, settings, now, summary, sorted(seeds_t)):
        seeds_t |= set(t_ids)
        seeds_r |= set(r_keys)
    free, free_records, breaks = await _neighbourhood(conn, ours, seeds_t, seeds_r,
                                                      timedelta(hours=settings.recon.window_hours))
    excluded = await repo.pairs_unmatched_by_people_near(conn, SYSTEM, sorted(free))
    shapes = sorted({lookalike_shape(t["sender"] if (t["chain_id"], t["recipient"]) in ours else t["recipient"])
                     for t in free.values()})
    known = await repo.lookalike_counterparties(conn, shapes)
    known |= {address for shape in shapes for address in _our_shapes(ours).get(shape, ())}
    await _decide(conn, settings, ours, now, summary, free, free_records, excluded, known, breaks, scoped=True)


async def _neighbourhood(conn: AsyncConnection, ours: frozenset[tuple[int, str]], seeds_t: set[int],
                         seeds_r: set[tuple[str, str]], window: timedelta
                         ) -> tuple[dict[int, dict], dict[tuple[str, str], dict], list[dict]]:
    """The free items an incremental pass must decide: the changed ones, and everything that can be matched or
    broken together with them (sharing one of our wallets and a token, or a tx hash, or an open break), to a
    fixed point. The core decides each such component on its own, so deciding the whole components that
    changed gives what a full pass would."""
    free_t: dict[int, dict] = {}
    free_r: dict[tuple[str, str], dict] = {}
    breaks: dict[int, dict] = {}
    seen_t: set[int] = set()
    seen_r: set[tuple[str, str]] = set()
    seen_w: set[tuple[int, str]] = set()
    seen_tx: set[tuple[int, str]] = set()
    by_id, by_key = set(seeds_t), set(seeds_r)  # to fetch by identity
    wallets: set[tuple[int, str]] = set()  # to fetch by our wallet or tx hash
    txs: set[tuple[int, str]] = set()
    between: tuple[datetime, datetime] | None = None
    while by_id or by_key or wallets or txs:  # each round: one query per table and one for the breaks
        found_t = await repo.free_transfers_where(conn, ids=sorted(by_id), wallets=sorted(wallets),
                                                  txs=sorted(txs), between=between) if by_id or wallets or txs else []
        found_r = await repo.free_records_where(conn, keys=sorted(by_key), wallets=sorted(wallets),
                                                txs=sorted(txs), between=between) if by_key or wallets or txs else []
        new_t = (by_id | {t["id"] for t in found_t}) - seen_t
        new_r = (by_key | {(r["source"], r["external_id"]) for r in found_r}) - seen_r
        seen_t |= new_t
        seen_r |= new_r
        by_id, by_key, wallets, txs = set(), set(), set(), set()
        for b in await repo.open_breaks_touching(conn, sorted(new_t), sorted(new_r)) if new_t or new_r else []:
            breaks[b["id"]] = b
            by_id |= set(repo.json.loads(b["transfer_ids"])) - seen_t
            by_key |= {tuple(k) for k in repo.json.loads(b["record_keys"])} - seen_r  # type: ignore[misc]
        for t in found_t:
            free_t[t["id"]] = t
            txs.add((t["chain_id"], t["tx_hash"]))
            wallets |= {(t["chain_id"], a) for a in (t["sender"], t["recipient"]) if (t["chain_id"], a) in ours}
        for r in found_r:
            free_r[(r["source"], r["external_id"])] = r
            wallets.add((r["chain_id"], r["wallet"]))
            if r["tx_hash"]:
                txs.add((r["chain_id"], r["tx_hash"]))
        wallets -= seen_w
        txs -= seen_tx
        seen_w |= wallets
        seen_tx |= txs
        # Every rule that pairs by wallet does so inside the time window, so items on a wallet further than the
        # window from all of this round's items cannot be decided together with them (tx hashes: no window).
        times = [t["block_time"] for t in found_t if t["block_time"]] + [r["created_at"] for r in found_r]
        between = (min(times) - window, max(times) + window) if times else None
    return free_t, free_r, sorted(breaks.values(), key=lambda b: b["id"])


async def _decide(conn: AsyncConnection, settings: Settings, ours: frozenset[tuple[int, str]], now: datetime,
                  summary: PassSummary, free: dict[int, dict], free_records: dict[tuple[str, str], dict],
                  excluded: frozenset[tuple[int, tuple]], known: set[str], open_rows: list[dict], *,
                  scoped: bool) -> None:
    """Run the core over these free items (`known`: the known counterparties and our wallets that look like
    theirs), write its matches and classifications, bring the given unresolved
    breaks in step, and set deadlines for items that may break later (their grace period)."""
    with summary.phase("core"):
        finalized_only = _finalized_only(settings)
        free_t = [_transfer_fact(t, ours, finalized_only) for t in free.values()]
        free_r = [_record_fact(r) for r in free_records.values()]
        policy = replace(policy_for(settings, excluded), known_counterparties=frozenset(known))
        outcome = reconcile(free_t, free_r, policy, now)
    with summary.phase("write_matches"):
        await _write_decisions(conn, outcome, free, now, summary)
    with summary.phase("breaks"):
        await _sync_breaks(conn, outcome.breaks, open_rows, now, summary,
                           lambda b: _sized(settings, b, free, free_records, now))
    with summary.phase("deadlines"):
        await _set_deadlines(conn, outcome, policy, free_t, free_r, now, free if scoped else None,
                             free_records if scoped else None)


async def _write_decisions(conn: AsyncConnection, outcome: Outcome, free: dict[int, dict], now: datetime,
                           summary: PassSummary) -> None:
    new = [{"rule": m.rule, "rule_version": m.rule_version, "transfer_ids": m.transfer_ids,
            "record_keys": m.record_keys, "candidates": m.candidates, "facts": dict(m.facts),
            "observed": {i: free[i]["block_hash"] for i in m.transfer_ids}} for m in outcome.matches]
    ids = await repo.add_matches(conn, new, actor=SYSTEM, at=now)
    await audit.append_many(conn, [{"actor": SYSTEM, "action": "match.created", "entity": f"match:{i}",
                                    "after": {"rule": m["rule"], "transfers": m["transfer_ids"],
                                              "records": m["record_keys"]}} for i, m in zip(ids, new, strict=True)],
                            at=now)
    summary.matched += len(ids)
    classified = await repo.classify_many(conn, [(c.transfer_id, c.reason) for c in outcome.classifications]
                                          + [(f.transfer_id, f.kind) for f in outcome.flags], actor=SYSTEM, at=now)
    # a machine's classification is a decision like a person's: in the audit chain, one entry per transfer
    await audit.append_many(conn, [{"actor": SYSTEM, "action": "transfer.classified", "entity": f"transfer:{i}",
                                    "after": {"reason": reason, "rule_version": RULE_VERSION}}
                                   for i, reason in classified], at=now)
    summary.classified += len(outcome.classifications)


async def _set_deadlines(conn: AsyncConnection, outcome: Outcome, policy: Policy, free_t: list[TransferFact],
                         free_r: list[RecordFact], now: datetime, scope_t: dict | None, scope_r: dict | None) -> None:
    """Items the core left undecided because their grace period runs: the queue brings them back then."""
    decided_t = {i for m in outcome.matches for i in m.transfer_ids} | {i for b in outcome.breaks
                                                                       for i in b.transfer_ids}
    decided_t |= {c.transfer_id for c in outcome.classifications} | {f.transfer_id for f in outcome.flags}
    decided_r = {k for m in outcome.matches for k in m.record_keys} | {k for b in outcome.breaks
                                                                      for k in b.record_keys}
    grace = policy.unmatched_grace
    later_t = {t.id: t.block_time + grace for t in free_t
               if t.id not in decided_t and t.state in policy.match_states and t.block_time + grace > now}
    later_r = {r.key: r.expected_by or r.created_at + policy.missing_grace for r in free_r
               if r.key not in decided_r and r.status is RecordStatus.COMPLETED
               and (r.expected_by or r.created_at + policy.missing_grace) > now}
    await repo.set_deadlines(conn, later_t, later_r, scope_t=scope_t, scope_r=scope_r)


async def _unmatch_reorged(conn: AsyncConnection, settings: Settings, now: datetime, summary: PassSummary,
                           transfer_ids: list[int] | None = None) -> list[tuple[list[int], list[tuple]]]:
    """A matched transfer that was reorged away (orphaned, or re-mined in another block since the match: the
    block hash it was matched in is gone) loses its match; a `reorged_after_match` break says so. If it was
    re-mined, the same pass matches it again and closes that break: both steps stay in the history. Returns the
    items of the removed matches."""
    removed = []
    for match_id in await repo.reorged_match_ids(conn, transfer_ids):
        m = await repo.match(conn, match_id)
        assert m is not None
        await repo.remove_match(conn, match_id, actor=SYSTEM, reason="reorg", at=now)
        await audit.append(conn, actor=SYSTEM, action="match.removed", entity=f"match:{match_id}", at=now,
                           before={"transfers": m["transfer_ids"], "records": m["record_keys"]},
                           after={"reason": "reorg"})
        kind = BreakType.REORGED_AFTER_MATCH.value
        transfers = await repo.transfers_by_id(conn, m["transfer_ids"])
        b = _sized(settings, {"type": kind, "fingerprint": fingerprint(kind, m["transfer_ids"], m["record_keys"]),
                              "transfer_ids": m["transfer_ids"], "record_keys": m["record_keys"],
                              "facts": {"match_id": match_id}}, transfers, {}, now)
        summary.unmatched_by_reorg += 1
        removed.append((m["transfer_ids"], m["record_keys"]))
        if not await _outside_open_breaks(conn, [b]):
            continue  # an item is in an open break already (one a person reopened): that one asks about it
        (break_id,) = await repo.open_breaks_many(conn, [b], actor=SYSTEM, at=now)
        await audit.append(conn, actor=SYSTEM, action="break.opened", entity=f"break:{break_id}", at=now,
                           after={"type": kind, "match_id": match_id})
        summary.opened.append(kind)
    return removed


async def _age_open_breaks(conn: AsyncConnection, settings: Settings, now: datetime) -> None:
    """Severity grows with age: unresolved breaks past an age threshold are raised to at least high, then
    critical (the SLA due time stays the one set when the break opened). Set-based: one statement per level."""
    policy = severity_policy(settings)
    await repo.regrade_by_age(conn, [
        (now - policy.ages[0], Severity.HIGH.value, [Severity.LOW.value, Severity.MEDIUM.value]),
        (now - policy.ages[1], Severity.CRITICAL.value, [Severity.LOW.value, Severity.MEDIUM.value,
                                                          Severity.HIGH.value])])


async def _sync_breaks(conn: AsyncConnection, desired: Iterable[Break], open_rows: list[dict], now: datetime,
                       summary: PassSummary, sized: Callable[[dict], dict]) -> None:
    """Open the breaks the matcher wants that are not open yet (never reopening a person's resolution), and close
    the unresolved ones among `open_rows` it no longer wants: their items were explained since."""
    wanted = {fingerprint(b.type.value, b.transfer_ids, b.record_keys): b for b in desired}
    reopened = await repo.reopened_break_ids(conn, [row["id"] for row in open_rows if row["status"] == "open"])
    for row in open_rows:
        if row["status"] != "open" or row["id"] in reopened:
            continue  # awaiting approval, or reopened by a person: a person's decision is pending
        if row["type"] == BreakType.REORGED_AFTER_MATCH.value:
            keys = [tuple(k) for k in repo.json.loads(row["record_keys"])]
            explained = bool(keys) and set(keys) <= await repo.matched_record_keys(conn, keys)
        else:
            explained = row["fingerprint"] not in wanted
        if explained:
            if not await repo.set_break_status(conn, row["id"], "resolved", at=now, expect=row["status"],
                                               resolution={"by": SYSTEM, "reason": "explained by a later pass"}):
                continue  # a person changed it since it was read: theirs stands
            await repo.add_event(conn, row["id"], "auto_resolved", SYSTEM, now)
            await audit.append(conn, actor=SYSTEM, action="break.resolved", entity=f"break:{row['id']}", at=now,
                               after={"reason": "explained"})
            summary.closed += 1
    latest = await repo.breaks_by_fingerprint(conn, sorted(wanted))
    to_open = []
    for fp, b in sorted(wanted.items()):
        last = latest.get(fp)
        if last is not None and (last["status"] != "resolved" or _resolved_by(last) != SYSTEM):
            continue  # already open, or resolved by a person: the machine does not reopen it
        to_open.append(sized({"type": b.type.value, "fingerprint": fp, "transfer_ids": b.transfer_ids,
                              "record_keys": b.record_keys, "facts": dict(b.facts)}))
    to_open = await _outside_open_breaks(conn, to_open)
    ids = await repo.open_breaks_many(conn, to_open, actor=SYSTEM, at=now)
    await audit.append_many(conn, [{"actor": SYSTEM, "action": "break.opened", "entity": f"break:{i}",
                                    "after": {"type": b["type"], "transfers": b["transfer_ids"],
                                              "records": b["record_keys"]}} for i, b in zip(ids, to_open, strict=True)],
                            at=now)
    summary.opened += [b["type"] for b in to_open]


async def _outside_open_breaks(conn: AsyncConnection, breaks: list[dict]) -> list[dict]:
    """The breaks (in order) none of whose items is in an unresolved break already, nor in an earlier one of
    these: an item is in at most one open break (the schema refuses a second). The open one stays: it already
    asks a person about the item (a `reorged_after_match` break says more than the `missing_transfer` that the
    same record would give after its transfer was reorged away)."""
    if not breaks:
        return []
    taken_t, taken_r = await repo.items_in_open_breaks(conn, [i for b in breaks for i in b["transfer_ids"]],
                                                       [k for b in breaks for k in b["record_keys"]])
    claimed_t, claimed_r = set(taken_t), set(taken_r)
    out = []
    for b in breaks:
        ts, rs = set(b["transfer_ids"]), {tuple(k) for k in b["record_keys"]}
        if ts & claimed_t or rs & claimed_r:
            continue
        claimed_t |= ts
        claimed_r |= rs
        out.append(b)
    return out


def _resolved_by(row: dict) -> str | None:
    resolution = repo.json.loads(row["resolution"]) if row["resolution"] else {}
    return resolution.get("by") if isinstance(resolution, dict) else None
