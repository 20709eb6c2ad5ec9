"""camt.053 (BankToCustomerStatement) for a wallet statement, built with the schema-bound classes of the ISO
20022 bindings (xsdata), never a string template: 001.08 by default (SWIFT CBPR+), 001.02 on request (SAP's and
Oracle's automatic import).

The schema's limits shape the document: the currency is `USD` at par with 2 decimals; the token and the exact
base units are in the account name and each entry's additional information; references are at most 35
characters (deterministic digests); the sub-cent remainder is one explicit rounding entry, so opening +
entries = closing holds in the document itself. A correction is a new statement with the next sequence number
and says whose sequence it corrects in AddtlStmtInf.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

from pyiso20022.camt.camt_053_001_02 import camt_053_001_02 as v02
from pyiso20022.camt.camt_053_001_08 import camt_053_001_08 as v08
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig
from xsdata.models.datatype import XmlDate, XmlDateTime

from app.settlement.statement import WalletStatement

CURRENCY = "USD"
VERSIONS = ("001.08", "001.02")
NAMESPACE = {"001.08": "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08",
             "001.02": "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"}


@dataclass(frozen=True)
class _Shape:
    """Where the two versions' classes differ."""

    module: ModuleType
    message: Any
    header: Any
    statement: Any
    account: Any
    balance: Any
    balance_type: Any
    balance_choice: Any
    entry: Any
    date_choice: Any
    period: Any


_SHAPES = {
    "001.08": _Shape(v08, v08.BankToCustomerStatementV08, v08.GroupHeader81, v08.AccountStatement9,
                     v08.CashAccount39, v08.CashBalance8, v08.BalanceType13, v08.BalanceType10Choice,
                     v08.ReportEntry10, v08.DateAndDateTime2Choice, v08.DateTimePeriod1),
    "001.02": _Shape(v02, v02.BankToCustomerStatementV02, v02.GroupHeader42, v02.AccountStatement2,
                     v02.CashAccount20, v02.CashBalance3, v02.BalanceType12, v02.BalanceType5Choice,
                     v02.ReportEntry2, v02.DateAndDateTimeChoice, v02.DateTimePeriodDetails),
}


def document_class(version: str) -> Any:
    """The bound `Document` class of a version, for reading one."""
    return _SHAPES[version].module.Document


class StatementFormatError(ValueError):
    """An unknown camt.053 version."""


def build(statement: WalletStatement, version: str = "001.08") -> bytes:
    """The camt.053 document, UTF-8 XML, deterministic for the same statement."""
    if version not in _SHAPES:
        raise StatementFormatError(f"camt.053 version must be one of {', '.join(VERSIONS)}, not {version!r}")
    s = _SHAPES[version]
    par = statement.par
    entries = [_entry(s, version, e.reference, cents, e.booked_on, e.information(statement.account))
               for e, cents in zip(statement.entries, par.entry_cents, strict=True)]
    if par.rounding_cents:
        entries.append(_entry(s, version, statement.rounding_reference, par.rounding_cents, statement.business_day,
                              "rounding to the cent of this statement's entries (at par, half to even)",
                              rounding=True))
    extra = statement.account.description
    if statement.corrects is not None:
        extra = f"correction of statement sequence {statement.corrects}; {extra}"[:500]
    stmt = s.statement(
        id=statement.statement_id, elctrnc_seq_nb=Decimal(statement.sequence),
        cre_dt_tm=_datetime(statement.created_at),
        fr_to_dt=s.period(fr_dt_tm=_datetime(statement.period[0]), to_dt_tm=_datetime(statement.period[1])),
        acct=_account(s, version, statement),
        bal=[_balance(s, version, "OPBD", par.opening_cents, statement.business_day),
             _balance(s, version, "CLBD", par.closing_cents, statement.business_day)],
        ntry=entries, addtl_stmt_inf=extra)
    header = s.header(msg_id=statement.statement_id, cre_dt_tm=_datetime(statement.created_at))
    document = s.module.Document(bk_to_cstmr_stmt=s.message(grp_hdr=header, stmt=[stmt]))
    config = SerializerConfig(indent="  ", xml_declaration=True, encoding="UTF-8")
    xml = XmlSerializer(config=config).render(document, ns_map={None: NAMESPACE[version]})
    return xml.encode()


def _account(s: _Shape, version: str, statement: WalletStatement) -> Any:
    a = statement.account
    ident = s.module.AccountIdentification4Choice(othr=s.module.GenericAccountIdentification1(id=a.account_id))
    if version == "001.08":
        proxy = v08.ProxyAccountIdentification1(tp=v08.ProxyAccountType1Choice(prtry="EVM"), id=a.wallet)
        return s.account(id=ident, ccy=CURRENCY, nm=a.name, prxy=proxy)
    return s.account(id=ident, ccy=CURRENCY, nm=a.name)


def _balance(s: _Shape, version: str, code: str, cents: int, day: date) -> Any:
    kind = s.balance_choice(cd=code if version == "001.08" else v02.BalanceType12Code(code))
    return s.balance(tp=s.balance_type(cd_or_prtry=kind), amt=_amount(s, cents), cdt_dbt_ind=_side(s, cents),
                     dt=s.date_choice(dt=XmlDate.from_date(day)))


def _entry(s: _Shape, version: str, reference: str, cents: int, day: date, info: str, *, rounding: bool = False
           ) -> Any:
    booked = s.date_choice(dt=XmlDate.from_date(day))
    status = v08.EntryStatus1Choice(cd="BOOK") if version == "001.08" else v02.EntryStatus2Code.BOOK
    # ISO bank transaction codes: received / issued credit transfers; miscellaneous credit / debit operations
    family = ("MCOP" if cents >= 0 else "MDOP") if rounding else ("RCDT" if cents >= 0 else "ICDT")
    domain = "ACMT" if rounding else "PMNT"
    code = s.module.BankTransactionCodeStructure4(domn=s.module.BankTransactionCodeStructure5(
        cd=domain, fmly=s.module.BankTransactionCodeStructure6(cd=family, sub_fmly_cd="OTHR")))
    return s.entry(ntry_ref=reference, amt=_amount(s, cents), cdt_dbt_ind=_side(s, cents), sts=status,
                   bookg_dt=booked, val_dt=s.date_choice(dt=XmlDate.from_date(day)), acct_svcr_ref=reference,
                   bk_tx_cd=code, addtl_ntry_inf=info)


def _amount(s: _Shape, cents: int) -> Any:
    return s.module.ActiveOrHistoricCurrencyAndAmount(value=Decimal(abs(cents)).scaleb(-2), ccy=CURRENCY)


def _side(s: _Shape, cents: int) -> Any:
    return s.module.CreditDebitCode.CRDT if cents >= 0 else s.module.CreditDebitCode.DBIT


def _datetime(at: datetime) -> XmlDateTime:
    return XmlDateTime.from_datetime(at.astimezone(UTC).replace(microsecond=0))

