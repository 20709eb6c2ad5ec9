"""BAI2 for a business day's wallet statements, written with the `bai2` library: one file, a group per chain,
an account per (wallet, token), in USD cents at par. Status codes 010/015 (opening and closing ledger), summary
codes 100/400 (total credits and debits, with counts), detail 195/495 (incoming and outgoing money transfer) per
finalized transfer and 399/699 (miscellaneous credit and debit) for the rounding entry; each detail's bank
reference is the entry's short reference and its text the full chain, tx hash, log index and base units.
Record counts and control totals are computed by the writer from what it writes, so the trailers agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bai2.constants import CONTINUATION_CODE, AsOfDateModifier, FundsType, GroupStatus, TypeCodes
from bai2.models import (
    Account,
    AccountIdentifier,
    Bai2File,
    Bai2FileHeader,
    Group,
    GroupHeader,
    Summary,
    TransactionDetail,
)
from bai2.writers import (
    AccountIdentifierWriter,
    AccountWriter,
    Bai2FileWriter,
    GroupWriter,
    TransactionDetailWriter,
)

from app.settlement.statement import WalletStatement

CURRENCY = "USD"
# Variable-length records (the file header's physical record length is blank): a 66-character tx hash stays on
# one record, because readers (the library's parser among them) join continued text with a space.
RECORD_LENGTH = 400


class Bai2Error(ValueError):
    """Statements that cannot share one file (different business days), or none."""


def build(statements: Sequence[WalletStatement], *, sender: str, receiver: str, file_id: str,
          created_at: datetime) -> str:
    """One BAI2 file for `statements` of one business day; groups by chain id, accounts in the given order."""
    if not statements:
        raise Bai2Error("no statements to write")
    days = {s.business_day for s in statements}
    if len(days) != 1:
        raise Bai2Error(f"statements of several business days: {sorted(d.isoformat() for d in days)}")
    (day,) = days
    created = created_at.astimezone(UTC)
    groups = []
    for chain_id in sorted({s.account.chain_id for s in statements}):
        accounts = [_account(s) for s in statements if s.account.chain_id == chain_id]
        group = Group(header=GroupHeader(ultimate_receiver_id=receiver, originator_id=str(chain_id),
                                         group_status=GroupStatus.correction if any(
                                             s.corrects is not None for s in statements
                                             if s.account.chain_id == chain_id) else GroupStatus.update,
                                         as_of_date=day, as_of_time=None, currency=CURRENCY,
                                         as_of_date_modifier=AsOfDateModifier.final_previous_day),
                      children=accounts)
        groups.append(group)
    document = Bai2File(header=Bai2FileHeader(sender_id=sender, receiver_id=receiver, creation_date=created.date(),
                                              creation_time=created.time().replace(second=0, microsecond=0),
                                              file_id=file_id, physical_record_length=None, block_size=None,
                                              version_number=2),
                        children=groups)
    return "\n".join(_FileWriter(document).write()) + "\n"


def _account(statement: WalletStatement) -> Account:
    par = statement.par
    credits = [c for c in par.entry_cents if c >= 0]
    debits = [-c for c in par.entry_cents if c < 0]
    details = [_detail("195" if c >= 0 else "495", abs(c), e.reference, e.information(statement.account))
               for e, c in zip(statement.entries, par.entry_cents, strict=True)]
    if par.rounding_cents:
        details.append(_detail("399" if par.rounding_cents > 0 else "699", abs(par.rounding_cents),
                               statement.rounding_reference, "rounding to the cent (at par, half to even)"))
        (credits if par.rounding_cents > 0 else debits).append(abs(par.rounding_cents))
    header = AccountIdentifier(customer_account_number=statement.account.account_id, currency=CURRENCY,
                               summary_items=[
                                   Summary(type_code=TypeCodes["010"], amount=par.opening_cents),
                                   Summary(type_code=TypeCodes["015"], amount=par.closing_cents),
                                   Summary(type_code=TypeCodes["100"], amount=sum(credits), item_count=len(credits),
                                           funds_type=FundsType.immediate_availability),
                                   Summary(type_code=TypeCodes["400"], amount=sum(debits), item_count=len(debits),
                                           funds_type=FundsType.immediate_availability)])
    return Account(header=header, children=details)


def _detail(code: str, cents: int, reference: str, text: str) -> TransactionDetail:
    # BAI2 text runs to the end of the record; a slash would end it early for some readers
    return TransactionDetail(type_code=TypeCodes[code], amount=cents, funds_type=FundsType.immediate_availability,
                             bank_reference=reference, customer_reference=reference,
                             text=text.replace("/", " ").replace(",", " "))


class _Wide:
    def __init__(self, obj: object, **_: object) -> None:
        super().__init__(obj, line_length=RECORD_LENGTH)  # type: ignore[call-arg]


class _AccountIdentifierWriter(_Wide, AccountIdentifierWriter):
    """Continues an 03 record only between summaries (type code, amount, count, funds type stay on one line):
    the library's own writer may split inside one, which its parser (and some banks') then misreads."""

    def write(self) -> list[str]:
        fields = self._write_fields_from_config(self.fields_config)
        names = list(fields)
        chunks = [",".join(fields[n] for n in names[:2])]
        for first in range(2, len(names), 4):
            chunks.append(",".join(fields[n] for n in names[first:first + 4]))
        records = [self.model.code.value + "," + chunks[0]]
        for chunk in chunks[1:]:
            if len(records[-1]) + len(chunk) + 2 > self.line_length:
                records[-1] += "/"
                records.append(CONTINUATION_CODE + "," + chunk)
            else:
                records[-1] += "," + chunk
        records[-1] += "/"
        return records


class _DetailWriter(_Wide, TransactionDetailWriter):
    pass


class _AccountWriter(_Wide, AccountWriter):
    header_writer_class = _AccountIdentifierWriter
    child_writer_class = _DetailWriter


class _GroupWriter(_Wide, GroupWriter):
    child_writer_class = _AccountWriter


class _FileWriter(_Wide, Bai2FileWriter):
    child_writer_class = _GroupWriter
