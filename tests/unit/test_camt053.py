"""camt.053 .08 and .02 for a wallet statement: valid against the official XSDs, and parsed back to the same
amounts, references and balances; 18-decimal amounts round with an explicit rounding entry; references and
account ids fit the schema's lengths; a correction says which sequence it corrects."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from app.close import camt053
from app.settlement.statement import StatementAccount, StatementEntry, WalletStatement

XSD = Path(camt053.__file__).parent / "xsd"
DAY = date(2026, 12, 1)
PERIOD = (datetime(2026, 11, 30, 22, 0, tzinfo=UTC), datetime(2026, 12, 1, 22, 0, tzinfo=UTC))


def _schema(version: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD / f"camt.053.{version}.xsd")))


def _statement(decimals: int, amounts: list[int], opening: int, corrects: int | None = None) -> WalletStatement:
    account = StatementAccount(31_001, "devnet-a", "0x" + "Ab" * 20, "DAI" if decimals == 18 else "USDC",
                               decimals, "0x" + "12" * 20, "hot wallet")
    entries = tuple(StatementEntry(31_001, "0x" + f"{i:064x}", i % 3, amount, "0x" + "9f" * 20, DAY, 100 + i,
                                   PERIOD[0] + timedelta(minutes=i + 1)) for i, amount in enumerate(amounts))
    return WalletStatement(account, DAY, 7 if corrects is None else 8, PERIOD,
                           datetime(2026, 12, 1, 22, 5, 30, 123456, tzinfo=UTC), opening, entries, corrects)


def _parse(xml: bytes, version: str) -> dict:
    ns = {"c": camt053.NAMESPACE[version]}
    doc = etree.fromstring(xml)

    def signed(node: etree._Element) -> Decimal:
        amount = Decimal(node.findtext("c:Amt", namespaces=ns))
        return amount if node.findtext("c:CdtDbtInd", namespaces=ns) == "CRDT" else -amount

    stmt = doc.find("c:BkToCstmrStmt/c:Stmt", ns)
    balances = {b.findtext("c:Tp/c:CdOrPrtry/c:Cd", namespaces=ns): signed(b) for b in stmt.findall("c:Bal", ns)}
    entries = [(e.findtext("c:NtryRef", namespaces=ns), signed(e), e.findtext("c:AddtlNtryInf", namespaces=ns))
               for e in stmt.findall("c:Ntry", ns)]
    return {"balances": balances, "entries": entries, "id": stmt.findtext("c:Id", namespaces=ns),
            "account": stmt.findtext("c:Acct/c:Id/c:Othr/c:Id", namespaces=ns),
            "currency": {a.get("Ccy") for a in doc.iter("{*}Amt")} | {stmt.findtext("c:Acct/c:Ccy", namespaces=ns)},
            "extra": stmt.findtext("c:AddtlStmtInf", namespaces=ns)}


@pytest.mark.parametrize("version", camt053.VERSIONS)
@pytest.mark.parametrize(("decimals", "amounts", "opening"), [
    (6, [1_250_500_000, -300_000_000, 1], 10_000_000),
    (18, [333_333_333_333_333_333] * 3 + [-(10**16) - 5], 10**18 + 4_999_999_999_999_999),
])
def test_statement_validates_and_parses_back_exactly(version: str, decimals: int, amounts: list[int],
                                                      opening: int) -> None:
    statement = _statement(decimals, amounts, opening)
    xml = camt053.build(statement, version)
    schema = _schema(version)
    assert schema.validate(etree.fromstring(xml)), schema.error_log
    parsed = _parse(xml, version)
    par = statement.par
    assert parsed["balances"] == {"OPBD": Decimal(par.opening_cents).scaleb(-2),
                                  "CLBD": Decimal(par.closing_cents).scaleb(-2)}
    cents = [int(amount * 100) for _, amount, _ in parsed["entries"]]
    assert cents[: len(amounts)] == list(par.entry_cents)
    assert sum(cents) == par.closing_cents - par.opening_cents  # continuity inside the document
    refs = [ref for ref, _, _ in parsed["entries"]]
    assert refs[: len(amounts)] == [e.reference for e in statement.entries]
    assert all(len(ref) <= 35 for ref in refs) and len(set(refs)) == len(refs)
    for entry, (_, _, info) in zip(statement.entries, parsed["entries"], strict=False):
        assert entry.tx_hash in info and f"{abs(entry.amount)} base units" in info
    assert parsed["currency"] == {"USD"} and len(parsed["account"]) <= 34 and len(parsed["id"]) <= 35
    assert camt053.build(statement, version) == xml  # deterministic


def test_eighteen_decimals_add_one_rounding_entry_and_six_decimals_of_whole_cents_none() -> None:
    rounded = _parse(camt053.build(_statement(18, [333_333_333_333_333_333] * 3, 0)), "001.08")
    assert [amount for _, amount, _ in rounded["entries"]] == [Decimal("0.33")] * 3 + [Decimal("0.01")]
    assert rounded["entries"][-1][0].startswith("RND")
    exact = _parse(camt053.build(_statement(6, [1_000_000, -250_000], 0)), "001.08")
    assert len(exact["entries"]) == 2


def test_a_correction_names_the_sequence_it_corrects_and_an_unknown_version_is_refused() -> None:
    parsed = _parse(camt053.build(_statement(6, [5], 0, corrects=7), "001.02"), "001.02")
    assert parsed["extra"].startswith("correction of statement sequence 7; USDC (6 decimals, contract 0xAb")
    assert parsed["id"].endswith("-8")
    with pytest.raises(camt053.StatementFormatError):
        camt053.build(_statement(6, [5], 0), "001.06")


def test_a_negative_closing_balance_is_a_debit_balance() -> None:
    xml = camt053.build(_statement(6, [-2_000_000], 1_000_000), "001.08")
    assert _schema("001.08").validate(etree.fromstring(xml))
    assert _parse(xml, "001.08")["balances"]["CLBD"] == Decimal("-1.00")
