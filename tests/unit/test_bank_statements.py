"""Reading a bank's statement: camt.053 .02 and .08 parse to exact minor units and name the line and element of
what is wrong; BAI2 parses with its integrity checks, and a file cut short is refused at once (the library alone
would loop forever on it)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import date

import pytest

from app.close import bai2_file, camt053
from app.close.bank_statements import StatementParseError, parse_bai2, parse_camt053
from tests.unit.test_bai2_file import PERIOD, STATEMENTS
from tests.unit.test_camt053 import _statement


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    def hung(*_: object) -> None:
        raise TimeoutError("the parser did not return")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("version", camt053.VERSIONS)
def test_camt053_reads_back_exact_booked_balances(version: str) -> None:
    statement = _statement(6, [-2_000_000, 333], 1_000_000)
    (balance,) = parse_camt053(camt053.build(statement, version))
    assert (balance.account, balance.currency) == (statement.account.account_id, "USD")
    assert (balance.opening, balance.closing) == (statement.par.opening_cents, statement.par.closing_cents)
    assert (balance.closing, balance.closing_date, balance.entries) == (-100, date(2026, 12, 1), 2)


@pytest.mark.parametrize(("data", "where", "reason"), [
    (b"this is not xml", "line 1", "not XML"),
    (b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.052.001.08'/>", "line 1 element Document",
     "not a camt.053"),
])
def test_camt053_refuses_what_is_not_a_statement(data: bytes, where: str, reason: str) -> None:
    with pytest.raises(StatementParseError) as caught:
        parse_camt053(data)
    assert caught.value.where == where and caught.value.reason.startswith(reason)


def test_camt053_against_its_schema_names_the_line_and_element() -> None:
    xml = camt053.build(_statement(6, [5], 0), "001.08").decode()
    bad = xml.replace('<Ccy>USD</Ccy>', '<Ccy>USDC</Ccy>', 1)
    line = next(n for n, text in enumerate(bad.splitlines(), start=1) if "USDC</Ccy>" in text)
    with pytest.raises(StatementParseError) as caught:
        parse_camt053(bad.encode())
    assert caught.value.where == f"line {line} element Ccy"


def test_camt053_amounts_finer_than_the_currency_are_refused_not_rounded() -> None:
    xml = camt053.build(_statement(6, [5], 0), "001.02").decode()
    amount_line = next(text for text in xml.splitlines() if '<Amt Ccy="USD">' in text)
    bad = xml.replace(amount_line, amount_line.replace("</Amt>", "1</Amt>").replace(">0.00", ">0.001"), 1)
    with pytest.raises(StatementParseError) as caught:
        parse_camt053(bad.encode())
    assert "more decimals than USD has" in caught.value.reason


def test_bai2_reads_back_every_account() -> None:
    text = bai2_file.build(STATEMENTS, sender="S", receiver="R", file_id="F1", created_at=PERIOD[1])
    balances = parse_bai2(text)
    assert [(b.account, b.opening, b.closing) for b in balances] == [
        (s.account.account_id, s.par.opening_cents, s.par.closing_cents) for s in STATEMENTS]
    assert {b.statement_id for b in balances} == {"F1"}


@pytest.mark.parametrize(("mangle", "where"), [
    (lambda lines: lines[:-3], "end of file"),
    (lambda lines: lines[:2] + lines[3:], "record 3"),
    (lambda lines: ["hello"] + lines, "record 1"),
])
def test_bai2_cut_short_or_out_of_order_is_refused_naming_the_record(mangle, where: str) -> None:
    text = bai2_file.build(STATEMENTS, sender="S", receiver="R", file_id="F1", created_at=PERIOD[1])
    with pytest.raises(StatementParseError) as caught:
        parse_bai2("\n".join(mangle(text.splitlines())))
    assert caught.value.where == where


def test_bai2_with_a_wrong_control_total_is_refused() -> None:
    text = bai2_file.build(STATEMENTS, sender="S", receiver="R", file_id="F1", created_at=PERIOD[1])
    with pytest.raises(StatementParseError):
        parse_bai2(text.replace("\n99,", "\n99,1", 1))
