"""Renderings of a close document: the XLSX opens with openpyxl and its numbers and exact texts equal the
document's; the CSV zip has one file per section with exact decimal strings and is deterministic; the HTML page
is self-contained (no script, no external resource) and shows a deficiency before anything else."""

from __future__ import annotations

import csv
import io
import zipfile
from decimal import Decimal
from html.parser import HTMLParser

import openpyxl

from app.close import render
from app.close.sheets import SECTIONS
from app.settlement.amounts import format_units

USDC = {"chain": "base", "symbol": "USDC", "decimals": 6, "token": "0x" + "ab" * 20}
DAI = {"chain": "ethereum", "symbol": "DAI", "decimals": 18, "token": "0x" + "cd" * 20}
DOCUMENT = {
    "business_day": "2026-12-01", "version": 2, "status": "final",
    "cutoff": {"local": "2026-12-01T17:00:00-05:00", "utc": "2026-12-01T22:00:00Z"},
    "alerts": ["segregation deficiency: USDC customer holdings 0.000001 below the obligation"],
    "accounts": [
        {**USDC, "wallet": "0x" + "11" * 20, "label": "hot", "kind": "hot", "segregation": "customer",
         "opening": 1_000_000, "credits": 2_500_000, "debits": 1, "closing": 3_499_999, "on_chain": 3_499_999,
         "difference": 0, "credit_count": 2, "debit_count": 1},
        {**DAI, "wallet": "0x" + "22" * 20, "label": "treasury", "kind": "treasury", "segregation": "house",
         "opening": 123_456_789_012_345_678_901, "credits": 0, "debits": 0, "closing": 123_456_789_012_345_678_901,
         "on_chain": None, "difference": None, "credit_count": 0, "debit_count": 0}],
    "totals": [{**USDC, "group": "token", "label": "all", "opening": 1_000_000, "credits": 2_500_000, "debits": 1,
                "closing": 3_499_999, "on_chain": 3_499_999, "unread": 0}],
    "segregation": [{"asset": "USDC", "decimals": 6, "customer_holdings": 3_499_999, "obligation": 3_500_000,
                     "excess": -1, "house_holdings": 0, "status": "deficiency"}],
    "breaks": [{**USDC, "type": "unmatched_transfer", "age": "1-3 d", "count": 2, "amount": 700_000}],
    "activity": [{**USDC, "figure": "matched", "count": 3, "amount": 2_499_999}],
    "gas": [{"chain": "base", "wallet": "0x" + "11" * 20, "label": "hot", "decimals": 18, "balance": 10**17,
             "change": -(10**15), "runway_days": "100"}],
    "evidence": [{"chain": "base", "chain_id": 8453, "block_number": 123, "block_hash": "0x" + "0f" * 32,
                  "block_time": "2026-12-01T21:59:59Z", "finalized": "yes"}],
}


def test_xlsx_numbers_and_exact_texts_equal_the_document() -> None:
    book = openpyxl.load_workbook(io.BytesIO(render.to_xlsx(DOCUMENT)))
    assert book.sheetnames == [key for key, _, _ in SECTIONS]
    ws = book["accounts"]
    rows = list(ws.iter_rows(values_only=True))
    header_at = next(i for i, r in enumerate(rows) if r[0] == "Chain")
    header = rows[header_at]
    body = rows[header_at + 1:]
    for doc_row, row in zip(DOCUMENT["accounts"], body, strict=True):
        cells = dict(zip(header, row, strict=True))
        for key, title in (("opening", "Opening"), ("closing", "Closing (computed)"), ("debits", "Debits")):
            exact = format_units(doc_row[key], doc_row["decimals"])
            assert cells[f"{title} (exact)"] == exact
            # a number is a double as written by XlsxWriter (16 significant digits): exact up to that precision
            assert cells[title] == float(f"{float(Decimal(exact)):.16g}")
        assert cells["Credits (n)"] == doc_row["credit_count"]
        assert cells["Wallet"] == doc_row["wallet"]
    unread = dict(zip(header, body[1], strict=True))
    assert unread["balanceOf at cut-off"] is None and unread["Difference"] is None
    assert book["segregation"].cell(2, 1).value.startswith("segregation deficiency")


def test_csv_zip_has_a_file_per_section_with_exact_amounts_and_is_deterministic() -> None:
    data = render.to_csv_zip(DOCUMENT)
    assert data == render.to_csv_zip(DOCUMENT)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert names == [f"close-2026-12-01-v2/{key}.csv" for key, _, _ in SECTIONS]
        accounts = list(csv.DictReader(io.StringIO(archive.read(names[1]).decode())))
    assert [a["Opening"] for a in accounts] == ["1", "123.456789012345678901"]
    assert [a["Debits"] for a in accounts] == ["0.000001", "0"]
    assert accounts[1]["balanceOf at cut-off"] == ""


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.external: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self.external += [v for k, v in attrs if k in ("src", "href") and v]

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


def test_html_is_self_contained_with_charts_tables_and_the_deficiency_first() -> None:
    page = _Page()
    page.feed(render.to_html(DOCUMENT))
    assert "script" not in page.tags and not page.external
    assert page.tags.count("svg") == 2 and page.tags.count("table") == len(SECTIONS)
    body = page.text[page.text.index("Daily close 2026-12-01 version 2 (final), cut-off 2026-12-01T17:00:00-05:00",
                                     1):]
    assert body[1].startswith("segregation deficiency")
    assert "123.456789012345678901" in page.text and "2.5 " in " ".join(page.text) + " "
