"""Reading a bank's or custodian's statement for the cash position: camt.053 (001.02 and 001.08) validated
against the official XSD and bound with the ISO 20022 classes (xsdata), and BAI2 with the `bai2` library and its
integrity checks. Amounts stay exact: the bindings give Decimals, which become integer minor units of the
currency; a value with more decimals than the currency has is refused, never rounded.

A bad file is refused whole with where it went wrong: the line and element (camt.053) or the record (BAI2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path

from bai2 import bai2 as bai2_library
from bai2.exceptions import IntegrityException, NotSupportedYetException, ParsingException
from lxml import etree
from xsdata.exceptions import ParserError
from xsdata.formats.dataclass.parsers import XmlParser

from app.close.camt053 import NAMESPACE, VERSIONS, document_class

XSD_DIR = Path(__file__).parent / "xsd"
# ISO 4217 minor units where they are not 2
MINOR_UNITS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "BHD": 3, "JOD": 3, "KWD": 3, "OMR": 3, "TND": 3}
MAX_BYTES = 50 * 1024 * 1024


class StatementParseError(ValueError):
    """`where`: the line and element, or the record, that is wrong."""

    def __init__(self, reason: str, where: str | None = None) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason = reason
        self.where = where


@dataclass(frozen=True, slots=True)
class BankBalance:
    """One account's booked balances on one statement, in minor units of `currency` (signed)."""

    account: str
    currency: str
    opening: int | None
    closing: int
    closing_date: date
    entries: int
    statement_id: str


def minor_units(currency: str, amount: Decimal, where: str) -> int:
    exponent = MINOR_UNITS.get(currency, 2)
    scaled = amount.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise StatementParseError(f"amount {amount} has more decimals than {currency} has ({exponent})", where)
    return int(scaled)


@cache
def _schema(version: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_DIR / f"camt.053.{version}.xsd")))


def parse_camt053(data: bytes) -> list[BankBalance]:
    """Every statement of a camt.053 document. Raises StatementParseError: not XML, not camt.053, a version
    other than 001.02 and 001.08, invalid against its XSD (first error's line and element), or a statement with
    no closing booked balance."""
    if len(data) > MAX_BYTES:
        raise StatementParseError(f"larger than {MAX_BYTES} bytes")
    try:
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False))
    except etree.XMLSyntaxError as exc:
        raise StatementParseError(f"not XML: {exc.msg}", f"line {exc.lineno}") from None
    namespace = etree.QName(root).namespace
    version = next((v for v in VERSIONS if NAMESPACE[v] == namespace), None)
    if version is None:
        raise StatementParseError(f"not a camt.053 001.02 or 001.08 document (namespace {namespace!r})",
                                  f"line {root.sourceline} element {etree.QName(root).localname}")
    schema = _schema(version)
    if not schema.validate(root):
        error = schema.error_log[0]
        found = root.getroottree().xpath(error.path) if error.path else []
        element = etree.QName(found[0]).localname if found else "?"
        raise StatementParseError(error.message, f"line {error.line} element {element}")
    try:
        document = XmlParser().from_bytes(data, document_class(version))
    except ParserError as exc:  # valid against the XSD, so not expected; refused all the same
        raise StatementParseError(str(exc)) from None
    return [_balance(stmt, version) for stmt in document.bk_to_cstmr_stmt.stmt]


def _balance(stmt: object, version: str) -> BankBalance:
    acct = stmt.acct  # type: ignore[attr-defined]
    account = acct.id.iban or (acct.id.othr.id if acct.id.othr else None)
    where = f"statement {stmt.id}"  # type: ignore[attr-defined]
    booked: dict[str, tuple[int, date]] = {}
    currency = acct.ccy
    for bal in stmt.bal:  # type: ignore[attr-defined]
        code = bal.tp.cd_or_prtry.cd
        code = code.value if hasattr(code, "value") else code
        currency = currency or bal.amt.ccy
        if bal.amt.ccy != currency:
            raise StatementParseError(f"balance in {bal.amt.ccy}, account in {currency}", where)
        amount = minor_units(bal.amt.ccy, bal.amt.value, where)
        sign = -1 if bal.cdt_dbt_ind.value == "DBIT" else 1
        day = bal.dt.dt.to_date() if bal.dt.dt is not None else bal.dt.dt_tm.to_datetime().date()
        booked[code] = (sign * amount, day)
    if "CLBD" not in booked:
        raise StatementParseError("no closing booked balance (CLBD)", where)
    return BankBalance(account or "", currency or "", booked.get("OPBD", (None, None))[0], booked["CLBD"][0],
                       booked["CLBD"][1], len(stmt.ntry), stmt.id)  # type: ignore[attr-defined]


def parse_bai2(text: str) -> list[BankBalance]:
    """Every account of a BAI2 file, with its 010 (opening ledger) and 015 (closing ledger) balances. Control
    totals and record counts are checked. Raises StatementParseError naming the record."""
    _check_bai2_structure(text)
    try:
        parsed = bai2_library.parse_from_string(text, check_integrity=True)
    except (ParsingException, NotSupportedYetException, IntegrityException, ValueError, IndexError, KeyError,
            InvalidOperation) as exc:
        raise StatementParseError(f"not a valid BAI2 file: {exc}") from None
    out = []
    for group in parsed.children:
        for account in group.children:
            currency = account.header.currency or group.header.currency or "USD"
            items = {s.type_code.code: s.amount for s in account.header.summary_items if s.type_code}
            where = f"account {account.header.customer_account_number}"
            if "015" not in items:
                raise StatementParseError("no closing ledger balance (type code 015)", where)
            out.append(BankBalance(account.header.customer_account_number, currency, items.get("010"),
                                   int(items["015"]), group.header.as_of_date, len(account.children),
                                   parsed.header.file_id or ""))
    return out


def _check_bai2_structure(text: str) -> None:
    """Record codes and nesting (01 (02 (03 16/88... 49)... 98)... 99), checked before the library parses:
    the library loops forever on a file cut short, so a truncated upload must never reach it."""
    if len(text) > MAX_BYTES:
        raise StatementParseError(f"larger than {MAX_BYTES} bytes")
    expected = {"01": {"02", "99"}, "02": {"03", "98"}, "03": {"16", "49", "88"}, "16": {"16", "49", "88"},
                "49": {"03", "98"}, "98": {"02", "99"}, "99": set()}
    allowed, previous = {"01"}, None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        code = line.strip()[:2]
        if code not in allowed:
            wanted = " or ".join(sorted(allowed)) or "nothing after the file trailer (99)"
            raise StatementParseError(f"record type {code!r} where {wanted} was expected", f"record {number}")
        if code == "88":
            allowed = expected[previous] if previous else set()  # a continuation continues its record
            continue
        previous, allowed = code, expected[code]
    if previous != "99":
        raise StatementParseError("the file ends before its trailer (99)", "end of file")
