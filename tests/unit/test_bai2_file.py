"""BAI2 for a day's wallet statements: parsed back by the `bai2` library (which checks control totals and record
counts) to the same balances, entries and references; a group per chain; rounding entries for 18 decimals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from bai2 import bai2 as library
from bai2.exceptions import IntegrityException

from app.close import bai2_file
from app.settlement.statement import StatementAccount, StatementEntry, WalletStatement

DAY = date(2026, 12, 1)
PERIOD = (datetime(2026, 11, 30, 22, 0, tzinfo=UTC), datetime(2026, 12, 1, 22, 0, tzinfo=UTC))


def _statement(chain_id: int, decimals: int, amounts: list[int], opening: int, wallet: str = "12",
               corrects: int | None = None) -> WalletStatement:
    account = StatementAccount(chain_id, f"chain-{chain_id}", "0x" + "Ab" * 20, "DAI" if decimals == 18 else "USDC",
                               decimals, "0x" + wallet * 20, "hot")
    entries = tuple(StatementEntry(chain_id, "0x" + f"{chain_id:08x}{i:056x}", i, amount, "0x" + "9f" * 20, DAY,
                                   10 + i, PERIOD[0] + timedelta(minutes=i)) for i, amount in enumerate(amounts))
    return WalletStatement(account, DAY, 3, PERIOD, datetime(2026, 12, 1, 22, 7, tzinfo=UTC), opening, entries,
                           corrects)


STATEMENTS = [
    _statement(1, 6, [1_250_500_000, -300_000_000, 7_000_000], 10_000_000),
    _statement(1, 6, [], 5_000_000, wallet="34"),
    _statement(8453, 18, [333_333_333_333_333_333] * 3 + [-(10**16)], 2 * 10**18),
    _statement(8453, 6, [-20_000_000], 10_000_000, wallet="56"),  # closes negative: a debit balance
]


def test_bai2_parses_back_with_its_totals_and_the_same_amounts_and_references() -> None:
    text = bai2_file.build(STATEMENTS, sender="SETTLE", receiver="CORE", file_id="20261201-1",
                           created_at=datetime(2026, 12, 1, 22, 7, 42, tzinfo=UTC))
    parsed = library.parse_from_string(text, check_integrity=True)
    assert [int(g.header.originator_id) for g in parsed.children] == [1, 8453]
    accounts = [a for g in parsed.children for a in g.children]
    assert [a.header.customer_account_number for a in accounts] == [s.account.account_id for s in STATEMENTS]
    for statement, account in zip(STATEMENTS, accounts, strict=True):
        par = statement.par
        items = {s.type_code.code: s for s in account.header.summary_items}
        assert (items["010"].amount, items["015"].amount) == (par.opening_cents, par.closing_cents)
        signed = [d.amount if d.type_code.code in ("195", "399") else -d.amount for d in account.children]
        expected = list(par.entry_cents) + ([par.rounding_cents] if par.rounding_cents else [])
        assert signed == expected
        assert par.opening_cents + sum(signed) == par.closing_cents
        assert items["100"].amount == sum(c for c in signed if c > 0)
        assert items["400"].amount == -sum(c for c in signed if c < 0)
        refs = [d.bank_reference for d in account.children]
        assert refs[: len(statement.entries)] == [e.reference for e in statement.entries]
        for entry, detail in zip(statement.entries, account.children, strict=False):
            assert entry.tx_hash in detail.text and f"{abs(entry.amount)} base units" in detail.text
    assert [d.type_code.code for d in accounts[2].children] == ["195", "195", "195", "495", "399"]


def test_the_parser_checks_what_we_write_a_wrong_control_total_is_refused() -> None:
    text = bai2_file.build(STATEMENTS[3:], sender="S", receiver="R", file_id="1", created_at=PERIOD[1])
    trailer = next(line for line in text.splitlines() if line.startswith("49,"))
    total = int(trailer.split(",")[1])
    with pytest.raises(IntegrityException):
        library.parse_from_string(text.replace(trailer, f"49,{total + 1},{trailer.split(',')[2]}"),
                                  check_integrity=True)


def test_a_file_holds_one_business_day_and_at_least_one_statement() -> None:
    other = _statement(1, 6, [1], 0)
    other = WalletStatement(other.account, date(2026, 12, 2), 1, PERIOD, other.created_at, 0, ())
    with pytest.raises(bai2_file.Bai2Error):
        bai2_file.build([STATEMENTS[0], other], sender="S", receiver="R", file_id="1", created_at=PERIOD[1])
    with pytest.raises(bai2_file.Bai2Error):
        bai2_file.build([], sender="S", receiver="R", file_id="1", created_at=PERIOD[1])


def test_a_correction_marks_its_group_as_a_correction() -> None:
    text = bai2_file.build([_statement(1, 6, [5], 0, corrects=2)], sender="S", receiver="R", file_id="2",
                           created_at=PERIOD[1])
    assert library.parse_from_string(text, check_integrity=True).children[0].header.group_status.value == "3"
