"""Reading input tables and checking their columns, with errors that name the column and the row.

Rows are numbered as a person counts them in the file: ``row 1`` is the first
data row, which is ``line 2`` of a file with a header line.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from ..errors import Problem, SpecError
from ..spec.reading import excerpt


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (the provenance of a calibration)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


MAX_TABLE_BYTES = 2 * 1024 ** 3
"""Largest input table read."""
MAX_MAGNITUDE = 1e12
"""Largest number accepted in a numeric column (spends, counts, amounts, durations)."""


def _records(text: str, whitespace: bool) -> Iterator[tuple[int, list[str]]]:
    """``(first line, fields)`` of every non-blank record; a quoted field may span lines."""
    if whitespace:
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield n, line.split()
        return
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    for fields in reader:
        if fields and any(f.strip() for f in fields):
            yield start, fields
        start = reader.line_num + 1


def read_table(path: str | Path, whitespace: bool = False) -> pd.DataFrame:
    """Read a CSV (or whitespace-separated) file with a header line, every cell as text.

    Cells stay text so that the checks below can report exactly which cell is
    not a number instead of letting pandas turn it into NaN silently. Blank lines are
    skipped; a quoted cell may hold line breaks. The file line where each row starts is
    kept in ``df.attrs["lines"]`` (by row position), so messages name the right line.

    Raises
    ------
    SpecError
        For a missing or unreadable file, text that is not UTF-8, a row with more cells than
        the header, a duplicated column name, or no data rows (naming the line).
    """
    from ..spec.reading import excerpt, read_bytes

    path = Path(path)
    raw = read_bytes(path)
    if len(raw) > MAX_TABLE_BYTES:
        raise SpecError(Problem("file", f"is larger than {MAX_TABLE_BYTES // 1024 ** 3} GB"), source=str(path))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SpecError(Problem("file", f"line {line}: is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it "
                                        f"as UTF-8"), source=str(path)) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise SpecError(Problem("file", f"line {line}: contains a NUL byte (a binary file?)"), source=str(path))
    lines: list[int] = []
    rows: list[list[str]] = []
    try:
        records = _records(text, whitespace)
        first = next(records, None)
        if first is None:
            raise SpecError(Problem("file", "is empty (no header line)"), source=str(path))
        header_line, header = first
        # an unnamed column (R writes its row names so) gets pandas' name for it
        header = [c.strip() or f"Unnamed: {i}" for i, c in enumerate(header)]
        problems = _header_problems(header, header_line)
        if problems:
            raise SpecError(problems, source=str(path))
        for n, fields in records:
            if len(fields) > len(header):
                raise SpecError(Problem("file", f"line {n}: has {len(fields)} cells but the header has "
                                                f"{len(header)} columns"), source=str(path))
            lines.append(n)
            rows.append(fields + [""] * (len(header) - len(fields)))
    except csv.Error as exc:
        raise SpecError(Problem("file", f"cannot be read as a table: {excerpt(str(exc), 120)}"),
                        source=str(path)) from None
    if not rows:
        raise SpecError(Problem("file", "has a header but no data rows"), source=str(path))
    df = pd.DataFrame(rows, columns=header, dtype=str)
    df.attrs["lines"] = lines
    return df


def _header_problems(header: list[str], line: int) -> list[Problem]:
    problems = []
    seen: dict[str, int] = {}
    for i, c in enumerate(header, start=1):
        if c in seen:
            problems.append(Problem(f"column '{c}'", f"line {line}: appears twice in the header (columns "
                                                     f"{seen[c]} and {i}); rename or remove one"))
        else:
            seen[c] = i
    return problems


def row_label(i: int, lines: list[int] | None = None) -> str:
    """How row ``i`` (0-based position in the table) is named in messages: ``row 1 (line 2)``.

    ``lines`` (``df.attrs["lines"]``) gives each row's first line in the file; without it the
    file is taken to have one header line and no blank lines.
    """
    line = lines[i] if lines is not None and 0 <= i < len(lines) else i + 2
    return f"row {i + 1} (line {line})"


class Checker:
    """Collects problems with a table's columns; :meth:`raise_if_any` raises them as one error."""

    def __init__(self, df: pd.DataFrame, source: str | None):
        self.df = df
        self.source = source
        self.problems: list[Problem] = []

    def _bad(self, column: str, rows: np.ndarray, what: str, values: Iterable[object]) -> None:
        rows = np.asarray(rows)
        first = int(self.df.index[rows[0]])  # the row's position in the file, kept through filters
        value = list(values)[0]
        more = f" (and {len(rows) - 1} more row{'s' if len(rows) > 2 else ''})" if len(rows) > 1 else ""
        self.problems.append(Problem(f"column '{column}'", f"{row_label(first, self.df.attrs.get('lines'))}: "
                                                           f"{what}; got {excerpt(value)}{more}"))

    def require(self, *columns: str | None) -> bool:
        missing = [c for c in columns if c is not None and c not in self.df.columns]
        for c in missing:
            self.problems.append(Problem(f"column '{c}'", f"is missing; the table has columns: "
                                                         f"{', '.join(map(str, self.df.columns))}"))
        return not missing

    def numeric(self, column: str, lower: float | None = None, upper: float | None = None,
                allowed: tuple[float, ...] | None = None, positive: bool = False) -> np.ndarray:
        """The column as floats; every blank, non-numeric or out-of-range cell is a problem."""
        text = self.df[column].astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        blank = (text == "").to_numpy()
        if blank.any():
            self._bad(column, np.flatnonzero(blank), "is empty", [""])
        bad = ~np.isfinite(values) & ~blank
        if bad.any():
            rows = np.flatnonzero(bad)
            self._bad(column, rows, "must be a finite number", text.to_numpy()[rows])
        huge = np.isfinite(values) & (np.abs(values) > MAX_MAGNITUDE)
        if huge.any():
            # beyond this the fits overflow (and no spend, count or value is this large)
            rows = np.flatnonzero(huge)
            self._bad(column, rows, f"is too large (at most {MAX_MAGNITUDE:.0e} in magnitude)", text.to_numpy()[rows])
            values = np.where(huge, np.nan, values)
        ok = np.isfinite(values)
        if allowed is not None:
            out = ok & ~np.isin(values, allowed)
            if out.any():
                rows = np.flatnonzero(out)
                self._bad(column, rows, f"must be one of {{{', '.join(f'{a:g}' for a in allowed)}}}",
                          text.to_numpy()[rows])
        if lower is not None:
            out = ok & ((values <= lower) if positive else (values < lower))
            if out.any():
                rows = np.flatnonzero(out)
                self._bad(column, rows, f"must be {'>' if positive else '>='} {lower:g}", text.to_numpy()[rows])
        if upper is not None:
            out = ok & (values > upper)
            if out.any():
                rows = np.flatnonzero(out)
                self._bad(column, rows, f"must be <= {upper:g}", text.to_numpy()[rows])
        return values

    def labels(self, column: str) -> np.ndarray:
        """A label column (e.g. segment); blank labels are problems."""
        text = self.df[column].astype(str).str.strip()
        blank = (text == "").to_numpy()
        if blank.any():
            self._bad(column, np.flatnonzero(blank), "is empty (every row needs a label)", [""])
        return text.to_numpy(dtype=object)

    def add(self, field: str, message: str) -> None:
        self.problems.append(Problem(field, message))

    def raise_if_any(self) -> None:
        if self.problems:
            raise SpecError(self.problems, source=self.source)


def parse_where(df: pd.DataFrame, where: str | None, source: str | None) -> pd.DataFrame:
    """Keep the rows where ``COLUMN=VALUE`` (numeric comparison when both sides are numbers)."""
    if not where:
        return df
    if "=" not in where:
        raise SpecError(Problem("--where", f"must look like COLUMN=VALUE; got {where!r}"), source=source)
    col, value = (part.strip() for part in where.split("=", 1))
    if col not in df.columns:
        raise SpecError(Problem(f"column '{col}'", f"is missing (named in --where); the table has columns: "
                                                   f"{', '.join(map(str, df.columns))}"), source=source)
    text = df[col].astype(str).str.strip()
    try:
        target = float(value)
        keep = pd.to_numeric(text, errors="coerce") == target
    except ValueError:
        keep = text == value
    out = df[keep.to_numpy()]
    if out.empty:
        raise SpecError(Problem("--where", f"no row has {col} = {value}"), source=source)
    return out
