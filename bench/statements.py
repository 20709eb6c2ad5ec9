"""Statement build rate: a camt.053 (001.08) of N entries built with the schema-bound classes, and a BAI2 file of
the same entries, against the baseline measured in the same run: lxml serialising a bare element tree with the
same elements and text (what any writer must at least do). Prints entries/s, the ratio to the baseline (the
fastest of the repeats each), and the document sizes.

    .venv/bin/python bench/statements.py [--entries 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lxml import etree

from app.close import bai2_file, camt053
from app.settlement.statement import StatementAccount, StatementEntry, WalletStatement

DAY = date(2026, 12, 1)
PERIOD = (datetime(2026, 11, 30, 22, 0, tzinfo=UTC), datetime(2026, 12, 1, 22, 0, tzinfo=UTC))


def statement(n: int) -> WalletStatement:
    account = StatementAccount(1, "ethereum", "0x" + "Ab" * 20, "DAI", 18, "0x" + "12" * 20, "hot")
    entries = tuple(StatementEntry(1, f"0x{i:064x}", i % 7, (i * 7_919_000_000_000_001) * (1 if i % 3 else -1),
                                   "0x" + "9f" * 20, DAY, 1000 + i, PERIOD[0] + timedelta(seconds=i))
                    for i in range(n))
    return WalletStatement(account, DAY, 1, PERIOD, PERIOD[1], 10**30, entries)


def bare_tree(s: WalletStatement) -> bytes:
    """The same elements camt053.build writes, as a plain lxml tree: the floor for any camt.053 writer."""
    ns = camt053.NAMESPACE["001.08"]
    e = etree.Element
    root = e(f"{{{ns}}}Document", nsmap={None: ns})
    stmt = etree.SubElement(etree.SubElement(root, "BkToCstmrStmt"), "Stmt")
    for entry, cents in zip(s.entries, s.par.entry_cents, strict=True):
        n = etree.SubElement(stmt, "Ntry")
        for tag, value in (("NtryRef", entry.reference), ("Amt", f"{abs(cents) / 100:.2f}"),
                           ("CdtDbtInd", "CRDT" if cents >= 0 else "DBIT"), ("Sts", "BOOK"),
                           ("BookgDt", DAY.isoformat()), ("ValDt", DAY.isoformat()),
                           ("AcctSvcrRef", entry.reference), ("BkTxCd", "PMNT RCDT OTHR"),
                           ("AddtlNtryInf", entry.information(s.account))):
            etree.SubElement(n, tag).text = value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def fastest(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    s = statement(args.entries)
    _ = s.par  # the cents are shared by every writer: not part of any timing
    base_t, base_doc = fastest(lambda: bare_tree(s), args.repeat)
    camt_t, camt_doc = fastest(lambda: camt053.build(s, "001.08"), args.repeat)
    bai_t, bai_doc = fastest(lambda: bai2_file.build([s], sender="S", receiver="R", file_id="1",
                                                     created_at=PERIOD[1]), args.repeat)
    print(f"{args.entries:,} entries, fastest of {args.repeat}")
    for name, t, doc in (("lxml bare tree (baseline)", base_t, base_doc), ("camt.053 001.08", camt_t, camt_doc),
                         ("BAI2", bai_t, bai_doc)):
        print(f"  {name:<26} {args.entries / t:>10,.0f} entries/s  {t * 1000:>8.1f} ms  "
              f"{t / base_t:>5.2f}x baseline  {len(doc):>10,} bytes")


if __name__ == "__main__":
    main()
