"""The matching core's noise rules (inbound from outside only; an outbound look-alike is a high-severity break)
and its split/batch search (noise excluded, every candidate searched exactly, ambiguity or an over-the-limit
search is a break naming the candidates, never a pick), checked against a brute-force oracle."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.settlement.matching import reconcile
from app.settlement.model import BreakType, Policy, RecordFact, RecordKind, RecordStatus, TransferFact
from app.settlement.subsets import exact_subsets

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
USDC, DAI = "0xUSDC", "0xDAI0"
DEP, HOT = "0xDEP1", "0xHOT0"
BOB = "0xB0B0000000000000000000000000000000005678"
CAROL = "0xCA70000000000000000000000000000000009abc"
POISONER = BOB[:6] + "f" * 30 + BOB[-4:]
OURS = {DEP, HOT}
DECIMALS = {USDC: 6, DAI: 18}


def unit(token: str) -> int:
    return 10 ** DECIMALS[token]


def policy(**kw: object) -> Policy:
    return Policy(**{"dust": {(1, USDC): unit(USDC) // 2, (1, DAI): unit(DAI) // 2}, "known_counterparties":
                     frozenset({BOB, DEP, HOT}), **kw})  # type: ignore[arg-type]


def transfer(id: int, sender: str, recipient: str, amount: int, *, token: str = USDC,
             age: timedelta = timedelta(hours=2)) -> TransferFact:
    return TransferFact(id, 1, token, sender, recipient, amount, f"0xtx{id}", 0, NOW - age, "confirmed",
                        sender in OURS, recipient in OURS)


def deposit(ext: str, amount: int, *, token: str = USDC) -> RecordFact:
    return RecordFact("core", ext, RecordKind.DEPOSIT, 1, token, amount, DEP, None, None, None,
                      NOW - timedelta(hours=2), None, RecordStatus.COMPLETED)


def withdrawal(ext: str, amount: int) -> RecordFact:
    return RecordFact("core", ext, RecordKind.WITHDRAWAL, 1, USDC, amount, HOT, BOB, None, None,
                      NOW - timedelta(hours=2), None, RecordStatus.COMPLETED)


def summary(outcome):  # type: ignore[no-untyped-def]
    return ({(m.rule, m.transfer_ids, m.record_keys) for m in outcome.matches},
            {(b.type, b.transfer_ids, b.record_keys) for b in outcome.breaks},
            {(f.transfer_id, f.kind) for f in outcome.flags})


# ---- noise: inbound from outside only ----------------------------------------------------------------------------
@pytest.mark.parametrize("token", [USDC, DAI])
def test_an_outbound_payment_to_a_lookalike_of_a_known_counterparty_is_a_break_not_noise(token: str) -> None:
    ts = [transfer(1, HOT, POISONER, 50_000 * unit(token), token=token)]
    _, breaks, flags = summary(reconcile(ts, [], policy(), NOW))
    assert flags == set()
    assert breaks == {(BreakType.OUTBOUND_LOOKALIKE, (1,), ())}


def test_an_outbound_lookalike_breaks_at_once_without_waiting_for_the_unmatched_grace() -> None:
    ts = [transfer(1, HOT, POISONER, 50_000 * unit(USDC), age=timedelta(minutes=1))]
    assert summary(reconcile(ts, [], policy(), NOW))[1] == {(BreakType.OUTBOUND_LOOKALIKE, (1,), ())}


@pytest.mark.parametrize("amount", [0, 1, unit(USDC) // 10, unit(USDC) // 2 - 1])
def test_zero_and_dust_outbound_payments_with_no_record_are_breaks(amount: int) -> None:
    ts = [transfer(1, HOT, CAROL, amount), transfer(2, HOT, POISONER, amount)]
    _, breaks, flags = summary(reconcile(ts, [], policy(), NOW))
    assert flags == set()
    assert breaks == {(BreakType.UNMATCHED_TRANSFER, (1,), ()), (BreakType.OUTBOUND_LOOKALIKE, (2,), ())}


@pytest.mark.parametrize("amount", [0, 1, unit(USDC) // 2 - 1])
def test_zero_dust_and_lookalike_inbound_from_outside_stay_noise(amount: int) -> None:
    ts = [transfer(1, CAROL, DEP, amount), transfer(2, POISONER, DEP, amount),
          transfer(3, POISONER, DEP, 10 * unit(USDC))]
    _, breaks, flags = summary(reconcile(ts, [], policy(), NOW))
    small = "zero_value" if amount == 0 else "dust"
    assert flags == {(1, small), (2, small), (2, "poisoning_suspect"), (3, "poisoning_suspect")}
    assert breaks == set()


def test_dust_from_a_known_counterparty_is_not_noise() -> None:
    ts = [transfer(1, BOB, DEP, 1)]
    _, breaks, flags = summary(reconcile(ts, [], policy(), NOW))
    assert flags == set() and breaks == {(BreakType.UNMATCHED_TRANSFER, (1,), ())}


# ---- splits and batches ------------------------------------------------------------------------------------------
def test_a_split_whose_part_is_the_13th_smallest_candidate_is_found() -> None:
    """The 12 smallest candidates (10..21) have no subset of at most 5 summing to 100: {10, 90} is the answer."""
    ts = [transfer(i, CAROL, DEP, (9 + i) * unit(USDC)) for i in range(1, 13)] + [
        transfer(13, CAROL, DEP, 90 * unit(USDC))]
    matches, breaks, _ = summary(reconcile(ts, [deposit("d1", 100 * unit(USDC))], policy(), NOW))
    assert matches == {("split", (1, 13), (("core", "d1"),))}
    assert (BreakType.AMBIGUOUS, (1, 13), (("core", "d1"),)) not in breaks


def test_two_subsets_summing_to_the_record_are_ambiguous_even_beyond_the_12_smallest() -> None:
    """13 candidates: {45, 55} among the 12 smallest, {10, 90} with the 13th: never a silent pick of {45, 55}."""
    small = [10, 45, 55, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # 1..9 make more sums with 90: every part of one is named
    ts = [transfer(i + 1, CAROL, DEP, a * unit(USDC)) for i, a in enumerate(small)] + [
        transfer(13, CAROL, DEP, 90 * unit(USDC))]
    amounts = {t.id: t.amount // unit(USDC) for t in ts}
    oracle = {c for n in range(2, 6) for c in combinations(sorted(amounts), n)
              if sum(amounts[i] for i in c) == 100}
    matches, breaks, _ = summary(reconcile(ts, [deposit("d1", 100 * unit(USDC))], policy(), NOW))
    assert matches == set()
    ambiguous = {b for b in breaks if b[0] is BreakType.AMBIGUOUS}
    assert ambiguous == {(BreakType.AMBIGUOUS, tuple(sorted({i for c in oracle for i in c})), (("core", "d1"),))}
    assert {1, 2, 3, 13} <= set(next(iter(ambiguous))[1])  # 10, 45, 55 and 90 are named


@pytest.mark.parametrize("token", [USDC, DAI])
def test_twelve_dust_transfers_do_not_push_the_real_parts_out_of_a_split(token: str) -> None:
    dust = [transfer(i, CAROL, DEP, i, token=token) for i in range(1, 13)]
    parts = [transfer(20, CAROL, DEP, 60 * unit(token), token=token),
             transfer(21, BOB, DEP, 40 * unit(token), token=token)]
    matches, breaks, flags = summary(reconcile(dust + parts, [deposit("d1", 100 * unit(token), token=token)],
                                               policy(), NOW))
    assert matches == {("split", (20, 21), (("core", "d1"),))}
    assert flags == {(i, "dust") for i in range(1, 13)} and breaks == set()


def test_dust_that_would_complete_a_sum_is_not_a_part_of_it() -> None:
    ts = [transfer(1, CAROL, DEP, 100 * unit(USDC) - 1), transfer(2, CAROL, DEP, 1)]
    matches, _, flags = summary(reconcile(ts, [deposit("d1", 100 * unit(USDC))], policy(), NOW))
    assert matches == set() and (2, "dust") in flags


def test_a_split_search_over_its_limit_is_an_ambiguity_break_naming_every_candidate() -> None:
    ts = [transfer(i, CAROL, DEP, (1000 + 7 * i) * unit(USDC)) for i in range(1, 31)]
    outcome = reconcile(ts, [deposit("d1", 5 * 1000 * unit(USDC) + 7 * 80 * unit(USDC))],
                        policy(subset_search_limit=500), NOW)
    (b,) = [b for b in outcome.breaks if b.record_keys]
    assert (b.type, b.transfer_ids) == (BreakType.AMBIGUOUS, tuple(range(1, 31)))
    assert dict(b.facts)["search_limit"] == 500 and outcome.matches == ()


def test_a_batch_of_withdrawals_is_searched_over_every_record() -> None:
    records = [withdrawal(f"w{i:02}", (9 + i) * unit(USDC)) for i in range(1, 13)] + [
        withdrawal("w13", 90 * unit(USDC))]
    matches, _, _ = summary(reconcile([transfer(1, HOT, BOB, 100 * unit(USDC))], records, policy(), NOW))
    assert matches == {("batch", (1,), (("core", "w01"), ("core", "w13")))}


# ---- the search against a brute-force oracle ---------------------------------------------------------------------
def oracle(target: int, amounts: list[int], max_size: int) -> set[tuple[int, ...]]:
    return {c for n in range(2, max_size + 1) for c in combinations(range(len(amounts)), n)
            if sum(amounts[i] for i in c) == target}


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(1, 40), max_size=14), st.integers(1, 120), st.integers(2, 5))
def test_the_subset_search_finds_exactly_the_oracle_subsets(amounts: list[int], target: int, max_size: int) -> None:
    found = exact_subsets(target, amounts, max_size=max_size, limit=10**7)
    assert found.complete
    assert set(found.solutions) == oracle(target, amounts, max_size)
    assert len(found.solutions) == len(set(found.solutions))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 30), max_size=16), st.integers(1, 90), st.integers(1, 400))
def test_a_limited_search_is_complete_and_exact_or_says_it_is_not(amounts: list[int], target: int,
                                                                   limit: int) -> None:
    found = exact_subsets(target, amounts, max_size=4, limit=limit)
    expected = oracle(target, amounts, 4)
    if found.complete:
        assert set(found.solutions) == expected
    else:
        assert set(found.solutions) <= expected


@pytest.mark.parametrize("seed", range(20))
def test_splits_in_reconcile_agree_with_the_oracle_whatever_the_order(seed: int) -> None:
    rng = random.Random(seed)
    ts = [transfer(i, rng.choice([CAROL, BOB]), DEP, rng.randrange(1, 30) * unit(USDC)) for i in range(1, 18)]
    target = rng.choice([a for a in range(20, 80) if a * unit(USDC) not in {t.amount for t in ts}]) * unit(USDC)
    expected = {tuple(ts[i].id for i in c) for c in oracle(target, [t.amount for t in ts], 5)}
    outcome = reconcile(ts, [deposit("d1", target)], policy(), NOW)
    rng.shuffle(ts)
    assert reconcile(ts, [deposit("d1", target)], policy(), NOW) == outcome
    matched = {m.transfer_ids for m in outcome.matches if m.rule == "split"}
    ambiguous = {b.transfer_ids for b in outcome.breaks if b.type is BreakType.AMBIGUOUS}
    if len(expected) == 1:
        assert matched == expected and not ambiguous
    elif expected:
        assert not matched and ambiguous == {tuple(sorted({i for c in expected for i in c}))}
    else:
        assert not matched and not ambiguous


def test_an_outbound_lookalike_break_is_at_least_high_whatever_its_amount() -> None:
    from app.settlement.severity import TYPE_FLOORS, Severity, SeverityPolicy, severity

    floor = TYPE_FLOORS[BreakType.OUTBOUND_LOOKALIKE.value]
    for amount, decimals in ((0, 6), (1, 18), (50_000 * 10**6, 6)):
        assert severity(amount, decimals, timedelta(0), SeverityPolicy(), floor) is Severity.HIGH
    assert severity(10**6 * 10**6, 6, timedelta(0), SeverityPolicy(), floor) is Severity.CRITICAL
    assert severity(1, 6, timedelta(0), SeverityPolicy()) is Severity.LOW
