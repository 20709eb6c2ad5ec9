"""Renderings of a stored close: CSV (one file per section, zipped), XLSX (a tab per section, amounts as numbers
with the token's decimals) and HTML (one printable page: the tables, and server-side SVG charts of the day's
flows per chain and token and of open breaks by age; no script, no CDN). All drawn from `sheets_of`.

XLSX numbers are IEEE doubles, written with 16 significant digits. Each amount also has a text column with the
exact decimal value, so an 18-decimal balance is never only a rounded number.
"""

from __future__ import annotations

import csv
import html
import io
import zipfile
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import xlsxwriter

from app.close.sheets import Sheet, amount_rows, headline, sheets_of

ZIP_DATE = (2000, 1, 1, 0, 0, 0)  # fixed member times: the same close zips to the same bytes


def to_csv_zip(document: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    prefix = f"close-{document['business_day']}-v{document['version']}"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for sheet in sheets_of(document):
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow([c.title for c in sheet.columns])
            writer.writerows([[sheet.cell_text(row, c) for c in sheet.columns] for row in sheet.rows])
            archive.writestr(zipfile.ZipInfo(f"{prefix}/{sheet.name}.csv", ZIP_DATE), text.getvalue())
    return buffer.getvalue()


def to_xlsx(document: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_numbers": False})
    book.set_properties({"title": headline(document)[0], "created": None})
    bold = book.add_format({"bold": True})
    formats: dict[int, Any] = {}

    def number_format(decimals: int) -> Any:
        if decimals not in formats:
            formats[decimals] = book.add_format({"num_format": "#,##0" + ("." + "0" * decimals if decimals else "")})
        return formats[decimals]

    for sheet in sheets_of(document):
        ws = book.add_worksheet(sheet.name[:31])
        ws.write_row(0, 0, [sheet.title], bold)
        for line, text in enumerate(headline(document)[1:], start=1):
            ws.write(line, 0, text)
        top = len(headline(document)) + 1
        headers: list[str] = []
        for c in sheet.columns:
            headers += [c.title, f"{c.title} (exact)"] if c.kind == "amount" else [c.title]
        ws.write_row(top, 0, headers, bold)
        for r, row in enumerate(sheet.rows, start=top + 1):
            col = 0
            for c in sheet.columns:
                value = row.get(c.key)
                if c.kind == "amount":
                    if value is not None:
                        decimals = int(row[c.decimals_key])
                        ws.write_number(r, col, float(Decimal(int(value)).scaleb(-decimals)),
                                        number_format(decimals))
                        ws.write_string(r, col + 1, sheet.cell_text(row, c))
                    col += 2
                    continue
                if value is not None:
                    if c.kind == "int":
                        ws.write_number(r, col, int(value))
                    else:
                        ws.write_string(r, col, str(value))
                col += 1
        ws.freeze_panes(top + 1, 0)
    book.close()
    return buffer.getvalue()


def to_html(document: Mapping[str, Any]) -> str:
    """One self-contained page (inline CSS and SVG), printable on A4 landscape."""
    lines = headline(document)
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{html.escape(lines[0])}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(lines[0])}</h1>"]
    parts += [f"<p class=\"alert\">{html.escape(alert)}</p>" for alert in lines[1:]]
    parts.append("<section class=\"charts\">")
    parts.append(_bars("Flows on the day (credits, debits) per chain and token",
                       _flows(document.get("totals", ()))))
    parts.append(_bars("Open breaks by age", [(f"{r['type']} {r['age']}", int(r["count"]), 0)
                                              for r in document.get("breaks", ())], unit="breaks"))
    parts.append("</section>")
    for sheet in sheets_of(document):
        parts.append(_table(sheet))
    parts.append("</body></html>")
    return "".join(parts)


def _table(sheet: Sheet) -> str:
    head = "".join(f"<th>{html.escape(c.title)}</th>" for c in sheet.columns)
    body = "".join("<tr>" + "".join(
        f"<td class=\"{'num' if c.kind != 'text' else 'txt'}\">{html.escape(sheet.cell_text(row, c))}</td>"
        for c in sheet.columns) + "</tr>" for row in sheet.rows)
    empty = "" if sheet.rows else f"<tr><td colspan=\"{len(sheet.columns)}\">none</td></tr>"
    return (f"<section id=\"{sheet.name}\"><h2>{html.escape(sheet.title)}</h2><table><thead><tr>{head}</tr>"
            f"</thead><tbody>{body}{empty}</tbody></table></section>")


def _flows(totals: Any) -> list[tuple[str, int, int]]:
    rows = [r for r in totals if r.get("group") == "token"]
    return [(f"{label} in", amount, decimals) for label, amount, decimals in amount_rows(rows, "credits")] + [
        (f"{label} out", amount, decimals) for label, amount, decimals in amount_rows(rows, "debits")]


def _bars(title: str, bars: list[tuple[str, int, int]], unit: str = "") -> str:
    """A horizontal bar chart as inline SVG; lengths proportional to the values in token units."""
    width, row_h, label_w = 720, 22, 260
    values = [Decimal(v).scaleb(-d) for _, v, d in bars]
    top = max(values, default=Decimal(0)) or Decimal(1)
    height = row_h * max(len(bars), 1) + 10
    out = [f"<figure><figcaption>{html.escape(title)}</figcaption>",
           f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" "
           f"aria-label=\"{html.escape(title)}\">"]
    if not bars:
        out.append("<text x=\"0\" y=\"16\">nothing on the day</text>")
    for i, ((label, _, _), value) in enumerate(zip(bars, values, strict=True)):
        y = i * row_h + 4
        length = int((width - label_w - 120) * value / top)
        out.append(f"<text x=\"0\" y=\"{y + 14}\">{html.escape(label)}</text>"
                   f"<rect x=\"{label_w}\" y=\"{y}\" width=\"{max(length, 1)}\" height=\"{row_h - 6}\" "
                   f"class=\"bar\"/><text x=\"{label_w + length + 6}\" y=\"{y + 14}\">{value:,f} {unit}</text>")
    out.append("</svg></figure>")
    return "".join(out)


_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:24px;color:#111}
h1{font-size:20px}h2{font-size:16px;margin-top:24px}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:3px 6px}
th{background:#f0f0f0;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.alert{background:#fde8e8;border:1px solid #c00;padding:8px;font-weight:bold}
.bar{fill:#3569c9}figure{margin:12px 0}figcaption{font-weight:bold}
@media print{@page{size:A4 landscape;margin:12mm}section{break-inside:avoid}}
"""
