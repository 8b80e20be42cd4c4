"""Reading input tables and checking their columns, with errors that name the column and the row.

Rows are numbered as a person counts them in the file: ``row 1`` is the first
data row, which is ``line 2`` of a file with a header line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import Problem, SpecError


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (the provenance of a calibration)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_table(path: str | Path, whitespace: bool = False) -> pd.DataFrame:
    """Read a CSV (or whitespace-separated) file with a header line, every cell as text.

    Cells stay text so that the checks below can report exactly which cell is
    not a number instead of letting pandas turn it into NaN silently.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(Problem("file", f"no such file: {path}"))
    try:
        if whitespace:
            df = pd.read_csv(path, sep=r"\s+", dtype=str, keep_default_na=False, engine="python")
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SpecError(Problem("file", f"cannot be read as a table: {' '.join(str(exc).split())}"),
                        source=str(path)) from None
    if df.empty:
        raise SpecError(Problem("file", "has a header but no data rows"), source=str(path))
    df.columns = [str(c).strip() for c in df.columns]
    return df.reset_index(drop=True)


def row_label(i: int) -> str:
    """How row ``i`` (0-based position in the table) is named in messages."""
    return f"row {i + 1} (line {i + 2})"


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
        self.problems.append(Problem(f"column '{column}'", f"{row_label(first)}: {what}; got {value!r}{more}"))

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
