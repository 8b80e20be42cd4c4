"""Writing tables into openpyxl worksheets the way finance reads them.

One header row (the table's own column names, so a table reader gets the same columns as the
CSV), a frozen header, an autofilter, Excel number formats instead of pre-formatted text,
widths fitted to the formatted content, units in header comments, and blank cells wherever the
value is missing or unbounded: never the text ``inf`` or ``nan``.
"""

from __future__ import annotations

import io
import math
from typing import Any, Iterable

import numpy as np
import pandas as pd
from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from ..rounding import minor_unit

HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDE4EE")
MAX_WIDTH = 70
RETURN_FORMAT = "0.0000"
PERCENT_FORMAT = "0.00%"
COUNT_FORMAT = "#,##0"


def money_format(currency: str | None, decimals: int | None = None) -> str:
    """Excel number format for money: thousands separators, the minor unit's places, the currency code."""
    d = minor_unit(currency) if decimals is None else decimals
    body = "#,##0" + ("." + "0" * d if d else "")
    # [$CODE] is Excel's literal currency-symbol syntax; every spreadsheet program reads it
    return f"[${currency}] {body}" if currency else body


def cell_value(v: Any) -> Any:
    """A value Excel can hold: None for missing, NaN and infinite numbers; plain Python scalars otherwise."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, str):
        return v
    if v is pd.NA or v is pd.NaT:
        return None
    return str(v)


def _as_text(cells: Iterable[Any]) -> None:
    """Keep text that starts with ``=`` as text: openpyxl would store it as a formula, and a segment id
    like ``=HYPERLINK(...)`` must never run in the reader's spreadsheet (formula injection)."""
    for cell in cells:
        if cell.data_type == "f":
            cell.data_type = "s"


def _shown(v: Any, fmt: str | None) -> str:
    """Roughly the text Excel shows for ``v`` under ``fmt`` (to fit column widths)."""
    if v is None:
        return ""
    if isinstance(v, float) or isinstance(v, int) and not isinstance(v, bool):
        if fmt and "%" in fmt:
            return f"{v:.2%}"
        if fmt and fmt.startswith("[$"):
            code = fmt[2:fmt.index("]")]
            d = len(fmt.split(".")[1]) if "." in fmt else 0
            return f"{code} {v:,.{d}f}"
        if fmt == RETURN_FORMAT:
            return f"{v:.4f}"
        if fmt and "#,##0." in fmt:
            return f"{v:,.{len(fmt.split('.')[1])}f}"
        return f"{v:,.0f}" if fmt == COUNT_FORMAT else f"{v:,.6g}"
    return str(v)


def write_table(ws: Worksheet, df: pd.DataFrame, formats: dict[str, str] | None = None,
                notes: dict[str, str] | None = None, freeze: str = "A2") -> None:
    """Write ``df`` into ``ws`` from A1: header row, one row per record, formats, filter, frozen header, widths."""
    formats = formats or {}
    notes = notes or {}
    cols = list(df.columns)
    ws.append([str(c) for c in cols])
    _as_text(ws[1])
    for c, name in enumerate(cols, start=1):
        h = ws.cell(row=1, column=c)
        h.font, h.fill = HEADER_FONT, HEADER_FILL
        h.alignment = Alignment(vertical="top")
        if name in notes:
            h.comment = Comment(notes[name], "allocator", width=320, height=90)
    for row in df.itertuples(index=False, name=None):
        ws.append([cell_value(v) for v in row])
        _as_text(ws[ws.max_row])
    widths = [len(str(c)) for c in cols]
    for c, name in enumerate(cols, start=1):
        fmt = formats.get(name)
        for r in range(2, len(df) + 2):
            cell = ws.cell(row=r, column=c)
            if fmt and cell.value is not None and not isinstance(cell.value, str):
                cell.number_format = fmt
            widths[c - 1] = max(widths[c - 1], len(_shown(cell.value, fmt)))
    fit_widths(ws, widths)
    if len(cols):
        ws.auto_filter.ref = f"A1:{get_column_letter(len(cols))}{max(len(df) + 1, 1)}"
        ws.freeze_panes = freeze


def fit_widths(ws: Worksheet, widths: Iterable[int]) -> None:
    for c, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(c)].width = min(MAX_WIDTH, w + 3)


def write_pairs(ws: Worksheet, rows: list[tuple[str, Any, str | None, str | None]],
                header: tuple[str, ...] = ("item", "value", "Excel check", "note")) -> None:
    """A key/value sheet: ``(label, value, number format, formula or note)``; formulas start with ``=``.

    The formula column recomputes a total from the other sheets (``=SUM(Plan!D2:D23)``), so a reader
    can see in Excel that the figure in the value column is the sum of the rows.
    """
    ws.append(list(header))
    for c in range(1, len(header) + 1):
        ws.cell(row=1, column=c).font = HEADER_FONT
        ws.cell(row=1, column=c).fill = HEADER_FILL
    widths = [len(h) for h in header]
    for label, value, fmt, extra in rows:
        value = cell_value(value)
        formula = extra if isinstance(extra, str) and extra.startswith("=") else None
        note = None if formula else extra
        ws.append([label, value, formula, note])
        r = ws.max_row
        _as_text([ws.cell(row=r, column=c) for c in (1, 2, 4)])
        if fmt and value is not None and not isinstance(value, str):
            ws.cell(row=r, column=2).number_format = fmt
        if formula and fmt:
            ws.cell(row=r, column=3).number_format = fmt
        widths[0] = max(widths[0], len(label))
        widths[1] = max(widths[1], len(_shown(value, fmt)))
        widths[2] = max(widths[2], len(_shown(value, fmt)) if formula else 0)
        if note:
            widths[3] = max(widths[3], min(len(str(note)), MAX_WIDTH))
    fit_widths(ws, widths)
    ws.freeze_panes = "A2"


def new_workbook() -> Workbook:
    wb = Workbook()
    wb.remove(wb.active)
    return wb


def to_bytes(wb: Workbook) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
