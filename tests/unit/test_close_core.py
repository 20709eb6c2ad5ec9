"""The pure core of the daily close: business calendar and cut-offs (DST, weekends, holidays), account
roll-forward, segregation, snapshot versions, statements at par. Seeded and property tests against oracles."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.settlement.calendar import BusinessCalendar, CalendarError
from app.settlement.par import at_par, runway_days, to_cents
from app.settlement.rollforward import AccountKey, Flow, roll_forward, totals
from app.settlement.segregation import Holding, compute
from app.settlement.snapshot import canonical, changes, content_hash

NY = BusinessCalendar.of("America/New_York", "17:00", holidays=[date(2026, 11, 26), date(2026, 12, 25)])


# ---- calendar -------------------------------------------------------------------------------------------------
def test_the_cutoff_follows_new_york_daylight_saving_on_both_2026_transitions() -> None:
    assert NY.cutoff_at(date(2026, 3, 6)) == datetime(2026, 3, 6, 22, 0, tzinfo=UTC)  # EST, Friday
    assert NY.cutoff_at(date(2026, 3, 9)) == datetime(2026, 3, 9, 21, 0, tzinfo=UTC)  # EDT, Monday
    assert NY.cutoff_at(date(2026, 10, 30)) == datetime(2026, 10, 30, 21, 0, tzinfo=UTC)
    assert NY.cutoff_at(date(2026, 11, 2)) == datetime(2026, 11, 2, 22, 0, tzinfo=UTC)
    # the weekend windows over each change are an hour shorter, then an hour longer, than 72 hours
    start, end = NY.window(date(2026, 3, 9))
    assert end - start == timedelta(hours=71)
    start, end = NY.window(date(2026, 11, 2))
    assert end - start == timedelta(hours=73)


def test_a_seven_day_calendar_has_23_and_25_hour_days_on_the_transition_days() -> None:
    every_day = BusinessCalendar.of("America/New_York", "17:00", weekend=())
    for day, hours in ((date(2026, 3, 8), 23), (date(2026, 11, 1), 25), (date(2026, 6, 1), 24)):
        start, end = every_day.window(day)
        assert end - start == timedelta(hours=hours)


def test_weekends_and_holidays_roll_into_the_next_business_day() -> None:
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    assert NY.business_day_of(saturday) == date(2026, 11, 30)
    thanksgiving = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    assert NY.business_day_of(thanksgiving) == date(2026, 11, 27)
    assert NY.previous_business_day(date(2026, 11, 27)) == date(2026, 11, 25)
    assert NY.business_day_of(datetime(2026, 12, 24, 22, 0, 1, tzinfo=UTC)) == date(2026, 12, 28)
    with pytest.raises(CalendarError):
        NY.window(date(2026, 11, 28))


def test_an_instant_at_the_cutoff_belongs_to_that_day_and_one_after_to_the_next() -> None:
    cutoff = NY.cutoff_at(date(2026, 12, 1))
    assert NY.business_day_of(cutoff) == date(2026, 12, 1)
    assert NY.business_day_of(cutoff + timedelta(microseconds=1)) == date(2026, 12, 2)
    assert NY.last_closed_day(cutoff) == date(2026, 12, 1)
    assert NY.last_closed_day(cutoff - timedelta(seconds=1)) == date(2026, 11, 30)


def test_naive_instants_and_calendars_without_business_days_are_refused() -> None:
    with pytest.raises(CalendarError):
        NY.business_day_of(datetime(2026, 12, 1, 12, 0))
    with pytest.raises(CalendarError):
        BusinessCalendar.of("UTC", weekend=range(1, 8)).next_business_day(date(2026, 1, 1))


def test_windows_tile_time_exactly_over_a_seeded_year_of_instants() -> None:
    """Every instant is in exactly one business day's window, and that is the day business_day_of names."""
    rng = random.Random(20261201)
    days = list(NY.business_days(date(2026, 1, 5), date(2027, 1, 29)))
    for a, b in zip(days, days[1:], strict=False):
        assert NY.window(b)[0] == NY.window(a)[1]
    for _ in range(2000):
        instant = datetime(2026, 1, 6, tzinfo=UTC) + timedelta(seconds=rng.randrange(360 * 86400))
        day = NY.business_day_of(instant)
        start, end = NY.window(day)
        assert start < instant <= end


# ---- roll-forward ---------------------------------------------------------------------------------------------
A = AccountKey(1, "0x" + "a" * 40, "0x" + "1" * 40)
B = AccountKey(2, "0x" + "a" * 40, "0x" + "1" * 40)  # the same token address and wallet on another chain


def test_roll_forward_keeps_accounts_on_two_chains_apart_and_shows_a_no_event_burn() -> None:
    lines = roll_forward({A: 10**18, B: 5_000_000}, [Flow(A, 250, True), Flow(A, 100, False), Flow(B, 7, True)],
                         {A: 10**18 + 150, B: 4_000_000})
    by = {line.account: line for line in lines}
    assert (by[A].closing, by[A].difference, by[A].credit_count, by[A].debit_count) == (10**18 + 150, 0, 1, 1)
    assert (by[B].closing, by[B].difference) == (5_000_007, -1_000_007)


@given(st.lists(st.tuples(st.integers(0, 2**256 - 1), st.booleans()), max_size=30), st.integers(0, 2**200))
def test_closing_is_opening_plus_credits_minus_debits_exactly(flows: list, opening: int) -> None:
    (line,) = roll_forward({A: opening}, [Flow(A, amount, credit) for amount, credit in flows], {A: None})
    assert line.closing == opening + sum(a for a, c in flows if c) - sum(a for a, c in flows if not c)
    assert line.difference is None


def test_totals_group_by_chain_token_and_label_never_mixing_tokens() -> None:
    lines = roll_forward({A: 3, B: 4}, [], {A: 3, B: None})
    assert totals(lines, {A: "customer"}) == {
        (1, A.token, "customer"): {"opening": 3, "credits": 0, "debits": 0, "closing": 3, "on_chain": 3,
                                   "unread": 0},
        (2, B.token, "unclassified"): {"opening": 4, "credits": 0, "debits": 0, "closing": 4, "on_chain": 0,
                                       "unread": 1}}


def test_a_negative_flow_is_refused() -> None:
    with pytest.raises(ValueError):
        roll_forward({}, [Flow(A, -1, True)], {})


# ---- segregation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("obligation", "status", "excess"), [
    ((1_500_000_000_000_000_000, 18), "excess", 10**12), ((1_500_001, 6), "exact", 0),
    ((1_500_002, 6), "deficiency", -(10**12)), (None, "no_obligation", None)])
def test_segregation_excess_exact_cover_and_deficiency_across_decimals(obligation, status, excess) -> None:
    holdings = [Holding("USDC", 1_000_000, 6, True), Holding("USDC", 500_001 * 10**12, 18, True),
                Holding("USDC", 9, 6, False)]
    (line,) = compute(holdings, {"USDC": obligation} if obligation else {})
    assert (line.decimals, line.customer_holdings, line.house_holdings) == (18, 1_500_001 * 10**12, 9 * 10**12)
    assert (line.status, line.excess, line.is_deficient) == (status, excess, status == "deficiency")


def test_an_obligation_without_holdings_is_a_full_deficiency() -> None:
    (line,) = compute([], {"PYUSD": (5, 6)})
    assert (line.customer_holdings, line.excess, line.status) == (0, -5, "deficiency")


# ---- snapshot versions ----------------------------------------------------------------------------------------
def test_content_hash_is_canonical_and_refuses_floats() -> None:
    assert content_hash({"b": 1, "a": [1, "x"]}) == content_hash({"a": [1, "x"], "b": 1})
    assert canonical({"a": 1}) == b'{"a":1}'
    with pytest.raises(TypeError):
        content_hash({"a": [0.1]})


def test_changes_list_accounts_and_figures_row_by_row() -> None:
    v1 = {"accounts": [{"chain_id": 1, "wallet": "w", "closing": "10"}, {"chain_id": 2, "wallet": "w",
                                                                          "closing": "5"}],
          "matched": 3}
    v2 = {"accounts": [{"chain_id": 1, "wallet": "w", "closing": "12"}, {"chain_id": 3, "wallet": "w",
                                                                          "closing": "1"}],
          "matched": 4}
    assert changes(v1, v2, keyed={"accounts": ("chain_id", "wallet")}) == [
        {"section": "accounts", "key": [1, "w"], "field": "closing", "before": "10", "after": "12"},
        {"section": "accounts", "key": [2, "w"], "field": None, "before": v1["accounts"][1], "after": None},
        {"section": "accounts", "key": [3, "w"], "field": None, "before": None, "after": v2["accounts"][1]},
        {"section": "matched", "key": None, "field": None, "before": 3, "after": 4}]
    assert changes(v1, v1, keyed={"accounts": ("chain_id", "wallet")}) == []


# ---- statements at par ----------------------------------------------------------------------------------------
def _oracle_cents(base: int, decimals: int) -> int:
    with localcontext() as ctx:
        ctx.prec = 200
        exact = Decimal(base).scaleb(-decimals)
        return int((exact * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@given(st.integers(-(2**256), 2**256), st.sampled_from([0, 2, 6, 18]))
def test_to_cents_rounds_half_to_even_like_decimal(base: int, decimals: int) -> None:
    assert to_cents(base, decimals) == _oracle_cents(base, decimals)


@given(st.integers(-(10**40), 10**40), st.sampled_from([3, 6, 18]))
def test_exact_half_cents_round_to_the_even_cent(cents: int, decimals: int) -> None:
    half_cent = 5 * 10 ** (decimals - 3)
    base = cents * 10 ** (decimals - 2) + (half_cent if cents >= 0 else -half_cent)
    assert to_cents(base, decimals) == _oracle_cents(base, decimals)
    assert to_cents(base, decimals) % 2 == 0


def test_half_cent_examples() -> None:
    assert [to_cents(b, 6) for b in (1_005_000, 1_015_000, -1_005_000, -1_015_000, 1_005_001)] == [
        100, 102, -100, -102, 101]


@given(st.integers(0, 10**30), st.lists(st.integers(-(10**24), 10**24), max_size=40), st.sampled_from([6, 18]))
def test_opening_plus_entries_plus_rounding_is_closing_in_cents(opening: int, entries: list, decimals: int) -> None:
    s = at_par(opening, entries, decimals)
    assert s.opening_cents + sum(s.entry_cents) + s.rounding_cents == s.closing_cents
    assert s.closing_cents == to_cents(opening + sum(entries), decimals)


def test_eighteen_decimal_entries_need_an_explicit_rounding_entry() -> None:
    third = 333_333_333_333_333_333  # 0.333... DAI, three times
    s = at_par(0, [third, third, third], 18)
    assert (s.entry_cents, s.rounding_cents, s.closing_cents) == ((33, 33, 33), 1, 100)


def test_runway_is_an_exact_fraction_of_days_or_none_without_burn() -> None:
    assert runway_days(10**18, [10**17] * 7) == (10, 1)
    assert runway_days(10, [3, 0, 0]) == (10, 1)
    assert runway_days(5, [0, 0]) is None
