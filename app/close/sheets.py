"""A stored close document seen as sheets: one table per section, with typed columns, for the CSV, XLSX and HTML
renderings. Every format is drawn from this one view, so a figure reads the same in each.

An amount column carries base units (an int, exact) and the decimals of its row's token; renderers show it in
token units (a decimal string, exact) and XLSX writes it as a number formatted with those decimals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from app.settlement.amounts import format_units

Kind = Literal["text", "int", "amount"]


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    kind: Kind = "text"
    decimals_key: str = "decimals"  # for an amount: the row field holding the token's decimals


@dataclass(frozen=True, slots=True)
class Sheet:
    name: str  # at most 31 characters (an XLSX tab name)
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Mapping[str, Any], ...]

    def cell_text(self, row: Mapping[str, Any], column: Column) -> str:
        """The exact text of a cell: an amount in token units, '' for a missing value."""
        value = row.get(column.key)
        if value is None:
            return ""
        if column.kind == "amount":
            return format_units(int(value), int(row[column.decimals_key]))
        return str(value)


def _c(key: str, title: str, kind: Kind = "text", decimals_key: str = "decimals") -> Column:
    return Column(key, title, kind, decimals_key)


ACCOUNTS = (_c("chain", "Chain"), _c("symbol", "Token"), _c("token", "Contract"), _c("wallet", "Wallet"),
            _c("label", "Label"), _c("kind", "Kind"), _c("segregation", "Segregation"),
            _c("opening", "Opening", "amount"), _c("credits", "Credits", "amount"),
            _c("debits", "Debits", "amount"), _c("closing", "Closing (computed)", "amount"),
            _c("on_chain", "balanceOf at cut-off", "amount"), _c("difference", "Difference", "amount"),
            _c("credit_count", "Credits (n)", "int"), _c("debit_count", "Debits (n)", "int"))
TOTALS = (_c("group", "Grouped by"), _c("label", "Group"), _c("chain", "Chain"), _c("symbol", "Token"),
          _c("opening", "Opening", "amount"), _c("credits", "Credits", "amount"), _c("debits", "Debits", "amount"),
          _c("closing", "Closing", "amount"), _c("on_chain", "On chain", "amount"),
          _c("unread", "Unread accounts", "int"))
SEGREGATION = (_c("asset", "Asset"), _c("customer_holdings", "Customer holdings", "amount"),
               _c("obligation", "Customer obligation", "amount"), _c("excess", "Excess (deficiency)", "amount"),
               _c("house_holdings", "House holdings", "amount"), _c("status", "Status"))
BREAKS = (_c("type", "Break type"), _c("age", "Age"), _c("symbol", "Token"), _c("chain", "Chain"),
          _c("count", "Open", "int"), _c("amount", "Amount", "amount"))
ACTIVITY = (_c("figure", "Figure"), _c("count", "Count", "int"), _c("symbol", "Token"), _c("chain", "Chain"),
            _c("amount", "Amount", "amount"))
GAS = (_c("chain", "Chain"), _c("wallet", "Wallet"), _c("label", "Label"),
       _c("balance", "Native balance", "amount"), _c("change", "Change on the day", "amount"),
       _c("runway_days", "Runway (days)"))
EVIDENCE = (_c("chain", "Chain"), _c("chain_id", "Chain id", "int"), _c("block_number", "Cut-off block", "int"),
            _c("block_hash", "Block hash"), _c("block_time", "Block time (UTC)"), _c("finalized", "Finalized"))

SECTIONS: tuple[tuple[str, str, tuple[Column, ...]], ...] = (
    ("segregation", "Segregation computation", SEGREGATION),
    ("accounts", "Accounts", ACCOUNTS),
    ("totals", "Totals", TOTALS),
    ("breaks", "Open breaks by age", BREAKS),
    ("activity", "Reconciliation on the day", ACTIVITY),
    ("gas", "Native gas", GAS),
    ("evidence", "Cut-off blocks", EVIDENCE),
)


def sheets_of(document: Mapping[str, Any]) -> list[Sheet]:
    """The document's sections as sheets, in a fixed order (segregation first: a deficiency is read first)."""
    return [Sheet(key, title, columns, tuple(document.get(key, ()))) for key, title, columns in SECTIONS]


def headline(document: Mapping[str, Any]) -> list[str]:
    """What every format shows first: the close's identity, and any deficiency or difference."""
    lines = [f"Daily close {document['business_day']} version {document['version']} ({document['status']}), "
             f"cut-off {document['cutoff']['local']}"]
    lines += [str(alert) for alert in document.get("alerts", ())]
    return lines


def amount_rows(rows: Sequence[Mapping[str, Any]], key: str) -> list[tuple[str, int, int]]:
    """(label, base units, decimals) of an amount column, for charts."""
    return [(f"{r.get('chain', '')} {r.get('symbol', '')}".strip(), int(r[key] or 0), int(r["decimals"]))
            for r in rows]
