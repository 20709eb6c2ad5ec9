"""The matching core: each rule with matching, mismatching and ambiguous inputs; order independence."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from app.settlement.matching import reconcile
from app.settlement.model import BreakType, Policy, RecordFact, RecordKind, RecordStatus, TransferFact

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
USDC = "0xUSDC"
DEP, DEP2, HOT, COLD = "0xDEP1", "0xDEP2", "0xHOT0", "0xCOLD"
ALICE, BOB = "0xA11CE00000000000000000000000000000001234", "0xB0B0000000000000000000000000000000005678"
OURS = {DEP, DEP2, HOT, COLD}
POLICY = Policy(dust={(1, USDC): 1_000})  # per (chain id, token)


def transfer(id: int, sender: str, recipient: str, amount: int, *, tx: str | None = None, log_index: int = 0,
             age: timedelta = timedelta(hours=2), state: str = "confirmed") -> TransferFact:
    return TransferFact(id, 1, USDC, sender, recipient, amount, tx or f"0xtx{id}", log_index, NOW - age, state,
                        sender in OURS, recipient in OURS)


def record(ext: str, kind: RecordKind, wallet: str, amount: int, *, counterparty: str | None = None,
           tx: str | None = None, log_index: int | None = None, age: timedelta = timedelta(hours=2),
           status: RecordStatus = RecordStatus.COMPLETED) -> RecordFact:
    return RecordFact("core", ext, kind, 1, USDC, amount, wallet, counterparty, tx, log_index, NOW - age, None, status)


def _summary(outcome):  # type: ignore[no-untyped-def]
    return ({(m.rule, m.transfer_ids, m.record_keys) for m in outcome.matches},
            {(b.type, b.transfer_ids, b.record_keys) for b in outcome.breaks})


def test_a_withdrawal_with_its_tx_hash_matches_and_a_wrong_amount_is_a_mismatch() -> None:
    ts = [transfer(1, HOT, BOB, 500_000, tx="0xw1"), transfer(2, HOT, BOB, 400_000, tx="0xw2")]
    rs = [record("w1", RecordKind.WITHDRAWAL, HOT, 500_000, counterparty=BOB, tx="0xw1"),
          record("w2", RecordKind.WITHDRAWAL, HOT, 450_000, counterparty=BOB, tx="0xw2"),
          record("w3", RecordKind.WITHDRAWAL, HOT, 1, counterparty=ALICE, tx="0xw2")]
    matches, breaks = _summary(reconcile(ts, rs, POLICY, NOW))
    assert matches == {("tx_hash", (1,), (("core", "w1"),))}
    assert breaks == {(BreakType.AMOUNT_MISMATCH, (2,), (("core", "w2"),)),
                      (BreakType.DETAILS_MISMATCH, (2,), (("core", "w3"),))}


def test_a_deposit_matches_by_address_amount_and_window_and_two_candidates_are_ambiguous() -> None:
    ts = [transfer(1, ALICE, DEP, 700_000), transfer(2, BOB, DEP2, 900_000), transfer(3, ALICE, DEP2, 900_000),
          transfer(4, ALICE, DEP, 700_000, age=timedelta(days=3))]  # outside the window: not a candidate
    rs = [record("d1", RecordKind.DEPOSIT, DEP, 700_000), record("d2", RecordKind.DEPOSIT, DEP2, 900_000)]
    matches, breaks = _summary(reconcile(ts, rs, POLICY, NOW))
    assert matches == {("deposit_address", (1,), (("core", "d1"),))}
    assert (BreakType.AMBIGUOUS, (2, 3), (("core", "d2"),)) in breaks  # never a silent pick
    assert (BreakType.UNMATCHED_TRANSFER, (4,), ()) in breaks


def test_two_records_claiming_one_transfer_is_a_duplicate_claim() -> None:
    ts = [transfer(1, ALICE, DEP, 5_000_000)]
    rs = [record("d1", RecordKind.DEPOSIT, DEP, 5_000_000), record("d2", RecordKind.DEPOSIT, DEP, 5_000_000)]
    _, breaks = _summary(reconcile(ts, rs, POLICY, NOW))
    assert breaks == {(BreakType.DUPLICATE_CLAIM, (1,), (("core", "d1"), ("core", "d2")))}


def test_a_split_deposit_and_a_batch_withdrawal_match_when_the_sum_is_exact_and_unique() -> None:
    ts = [transfer(1, ALICE, DEP, 300_000), transfer(2, ALICE, DEP, 200_000), transfer(3, HOT, BOB, 1_000_000)]
    rs = [record("d1", RecordKind.DEPOSIT, DEP, 500_000),
          record("w1", RecordKind.WITHDRAWAL, HOT, 600_000, counterparty=BOB),
          record("w2", RecordKind.WITHDRAWAL, HOT, 400_000, counterparty=BOB)]
    matches, breaks = _summary(reconcile(ts, rs, POLICY, NOW))
    assert matches == {("split", (1, 2), (("core", "d1"),)),
                       ("batch", (3,), (("core", "w1"), ("core", "w2")))}
    assert breaks == set()


def test_internal_sweeps_are_classified_and_noise_opens_no_break() -> None:
    poisoner = BOB[:6] + "f" * 30 + BOB[-4:]
    ts = [transfer(1, DEP, HOT, 9_000_000), transfer(2, poisoner, HOT, 0), transfer(3, ALICE, DEP, 10)]
    rs = [record("w1", RecordKind.WITHDRAWAL, HOT, 1, counterparty=BOB, status=RecordStatus.PENDING)]
    outcome = reconcile(ts, rs, POLICY, NOW)
    assert [(c.transfer_id, c.reason) for c in outcome.classifications] == [(1, "internal")]
    assert {(f.transfer_id, f.kind) for f in outcome.flags} == {(2, "zero_value"), (2, "poisoning_suspect"),
                                                                (3, "dust")}
    assert outcome.breaks == ()


def test_seen_transfers_are_pending_and_completed_records_go_missing_after_their_grace() -> None:
    ts = [transfer(1, ALICE, DEP, 700_000, state="seen")]
    rs = [record("d1", RecordKind.DEPOSIT, DEP, 700_000, age=timedelta(days=2)),
          record("d2", RecordKind.DEPOSIT, DEP2, 1, age=timedelta(minutes=5)),
          record("d3", RecordKind.DEPOSIT, DEP2, 1, age=timedelta(days=2), status=RecordStatus.CANCELLED)]
    outcome = reconcile(ts, rs, POLICY, NOW)
    assert outcome.pending == (1,)
    assert _summary(outcome)[1] == {(BreakType.MISSING_TRANSFER, (), (("core", "d1"),))}


amounts = st.sampled_from([100_000, 200_000, 300_000, 500_000, 700_000])


@st.composite
def scenarios(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(0, 12))
    ts = [transfer(i, draw(st.sampled_from([ALICE, BOB, HOT])), draw(st.sampled_from([DEP, DEP2, HOT, BOB])),
                   draw(amounts), tx=f"0xtx{draw(st.integers(0, 5))}", log_index=i,
                   age=timedelta(minutes=draw(st.integers(0, 600))))
          for i in range(1, n + 1)]
    rs = [record(f"r{i}", draw(st.sampled_from(list(RecordKind))), draw(st.sampled_from([DEP, DEP2, HOT])),
                 draw(amounts), counterparty=draw(st.sampled_from([None, BOB])),
                 tx=draw(st.sampled_from([None, "0xtx1", "0xtx2"])), age=timedelta(minutes=draw(st.integers(0, 3000))))
          for i in range(draw(st.integers(0, 10)))]
    return ts, rs


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_shuffling_the_input_never_changes_the_outcome(scenario, rnd: random.Random) -> None:  # type: ignore[no-untyped-def]
    ts, rs = scenario
    expected = reconcile(ts, rs, POLICY, NOW)
    rnd.shuffle(ts)
    rnd.shuffle(rs)
    assert reconcile(ts, rs, POLICY, NOW) == expected


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_no_transfer_or_record_is_decided_twice(scenario) -> None:  # type: ignore[no-untyped-def]
    ts, rs = scenario
    outcome = reconcile(ts, rs, POLICY, NOW)
    matched_t = [i for m in outcome.matches for i in m.transfer_ids]
    matched_r = [k for m in outcome.matches for k in m.record_keys]
    assert len(matched_t) == len(set(matched_t)) and len(matched_r) == len(set(matched_r))
    broken_t = {i for b in outcome.breaks for i in b.transfer_ids}
    assert not broken_t & set(matched_t)
    assert not {k for b in outcome.breaks for k in b.record_keys} & set(matched_r)


def test_severity_grows_with_amount_and_age_and_sets_the_sla() -> None:
    from app.settlement.severity import Severity, SeverityPolicy, due_at, severity

    p = SeverityPolicy()
    assert severity(999_999_999, 6, timedelta(0), p) is Severity.LOW  # 999.999999 USDC
    assert severity(1_000_000_000, 6, timedelta(0), p) is Severity.MEDIUM
    assert severity(10_000 * 10**18, 18, timedelta(0), p) is Severity.HIGH
    assert severity(10**11 * 10**6, 6, timedelta(0), p) is Severity.CRITICAL
    assert severity(1, 6, timedelta(hours=25), p) is Severity.HIGH
    assert severity(1, 6, timedelta(days=3), p) is Severity.CRITICAL
    assert due_at(NOW, Severity.HIGH, p) == NOW + timedelta(hours=8)


def test_an_internal_transfer_record_matches_the_sweep_and_without_it_the_sweep_is_classified() -> None:
    ts = [transfer(1, DEP, HOT, 9_000_000), transfer(2, HOT, COLD, 5_000_000)]
    rs = [record("sweep-1", RecordKind.INTERNAL, DEP, 9_000_000, counterparty=HOT)]
    outcome = reconcile(ts, rs, POLICY, NOW)
    assert _summary(outcome) == ({("internal", (1,), (("core", "sweep-1"),))}, set())
    assert [(c.transfer_id, c.reason) for c in outcome.classifications] == [(2, "internal")]
    strict = reconcile(ts, [], Policy(auto_internal=False), NOW)
    assert {(b.type, b.transfer_ids) for b in strict.breaks} == {(BreakType.UNMATCHED_TRANSFER, (1,)),
                                                                 (BreakType.UNMATCHED_TRANSFER, (2,))}


def test_rebuilding_from_scratch_in_another_order_gives_the_same_matches() -> None:
    ts = [transfer(i, ALICE, DEP if i % 2 else DEP2, 100_000 * i) for i in range(1, 40)]
    rs = [record(f"d{i}", RecordKind.DEPOSIT, DEP if i % 2 else DEP2, 100_000 * i) for i in range(1, 40, 3)]
    first = reconcile(ts, rs, POLICY, NOW)
    again = reconcile(list(reversed(ts)), list(reversed(rs)), POLICY, NOW)
    assert first == again and len(first.matches) == len(rs)
