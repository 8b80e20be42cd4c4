"""Cells tables: the column contract, reading and writing tables, and the columns as arrays."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..curves import FAMILIES
from ..errors import Problem, SpecError
from ..spec.models import TASKS

MONEY_COLUMNS = ("min_spend", "max_spend", "current_spend", "min_active_spend", "activation_cost")
CLV_COLUMNS = ("clv_margin", "clv_retention", "clv_discount", "clv_horizon", "clv_timing")
#: most problem rows spelled out in one error (the rest are counted per column)
MAX_LISTED = 50


def param_columns() -> tuple[str, ...]:
    """Every curve-parameter column name of the registered families."""
    out: list[str] = []
    for fam in FAMILIES.values():
        out += [p.name for p in fam.params if p.name not in out]
    return tuple(out) + ("points",)


# ------------------------------------------------------------------ reading

def load_cells_table(path: str | Path, scenario_dir: str | Path = ".") -> pd.DataFrame:
    """Read the cells table at ``path`` (relative to ``scenario_dir``): ``.parquet`` or ``.csv``.

    Raises
    ------
    SpecError
        When the file is missing or of another kind.
    """
    p = Path(path)
    if not p.is_absolute():
        p = Path(scenario_dir) / p
    if not p.is_file():
        raise SpecError(Problem("cells", f"no such file: {p}"))
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        df = pq.read_table(p).to_pandas()
    elif suffix == ".csv":
        df = pd.read_csv(p, dtype={"segment": str, "task": str, "family": str, "tags": str, "points": str,
                                   "clv_timing": str}, keep_default_na=True)
    else:
        raise SpecError(Problem("cells", f"must be a .parquet or .csv file; got {p.name}"))
    df.attrs["source"] = p.name
    return df


def write_cells_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a cells table as Parquet or CSV (by suffix)."""
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), p)
    else:
        df.to_csv(p, index=False, float_format="%.17g")
    return p


def cells_table_from_scenario(sc) -> pd.DataFrame:
    """The cells of a validated scenario as a table (one row per cell; for export and tests)."""
    rows: list[dict[str, Any]] = []
    for s in sc.segments or []:
        for t, cell in s.tasks.items():
            r: dict[str, Any] = {"segment": s.id, "task": t, "pool": cell.pool}
            if isinstance(cell.value, (int, float)):
                r["value"] = float(cell.value)
            else:
                c = cell.value.clv
                r.update(clv_margin=c.margin, clv_retention=c.retention, clv_discount=c.discount,
                         clv_horizon=c.horizon, clv_timing=c.timing)
            r["family"] = cell.curve["family"]
            for k, v in cell.curve.items():
                if k == "points":
                    r["points"] = json.dumps(v)
                elif k != "family":
                    r[k] = float(v)
            for k in MONEY_COLUMNS:
                v = getattr(cell, k)
                if v is not None and not (k in ("min_spend", "activation_cost") and v == 0):
                    r[k] = float(v)
            if s.tags:
                r["tags"] = ";".join(s.tags)
            rows.append(r)
    return pd.DataFrame(rows)



def _num(df: pd.DataFrame, col: str, n: int, absent: np.ndarray | None = None) -> np.ndarray:
    """Column ``col`` as floats (nan where empty; ``absent``, a shared read-only nan array, when missing)."""
    if col not in df:
        return absent if absent is not None else np.full(n, np.nan)
    s = df[col]
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _text(df: pd.DataFrame, col: str, n: int) -> np.ndarray:
    if col not in df:
        return np.full(n, None, dtype=object)
    return df[col].to_numpy(dtype=object, na_value=None)


@dataclass
class _Columns:
    """The table's columns as numpy arrays (read once, shared by validation and compilation)."""

    n: int
    segment: np.ndarray
    task: np.ndarray
    num: dict[str, np.ndarray]
    raw: pd.DataFrame
    text_bad: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def read(cls, df: pd.DataFrame) -> "_Columns":
        n = len(df)
        num: dict[str, np.ndarray] = {}
        text_bad: dict[str, np.ndarray] = {}
        absent = np.full(n, np.nan)
        absent.flags.writeable = False
        for col in ("pool", "value", *MONEY_COLUMNS, *CLV_COLUMNS[:4], *param_columns()[:-1]):
            num[col] = _num(df, col, n, absent)
            if col in df and not pd.api.types.is_numeric_dtype(df[col]):
                text_bad[col] = df[col].notna().to_numpy() & np.isnan(num[col])
        return cls(n, _text(df, "segment", n), _text(df, "task", n), num, df, text_bad)


def _tags_of(v: Any) -> list[str]:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return []
    if isinstance(v, str):
        return [t for t in (x.strip() for x in v.split(";")) if t]
    return [str(t) for t in v]


def _points(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def random_cells_table(n: int, seed: int = 0, family: str = "exponential", tasks: bool = True) -> pd.DataFrame:
    """A random cells table of ``n`` cells (for benchmarks, demos and tests): one segment per cell.

    ``family`` is ``exponential`` (concave) or ``hill`` (S-shaped, shape 1.5..3, as in the issue's
    benchmark). Columns are those of the contract (see the module docstring).
    """
    rng = np.random.default_rng(seed)
    seg = pd.array([f"s{i}" for i in range(n)], dtype="str")
    task = np.array(TASKS, dtype=object)[rng.integers(0, 3, n)] if tasks else np.full(n, "acquisition", object)
    df = {"segment": seg, "task": pd.array(task, dtype="str"), "pool": rng.uniform(100, 5_000, n),
          "value": rng.uniform(20, 200, n), "family": pd.array(np.full(n, family, object), dtype="str")}
    if family == "exponential":
        df.update(ceiling=rng.uniform(0.05, 0.6, n), rate=rng.uniform(0.01, 0.2, n))
    else:
        df.update(ceiling=rng.uniform(0.05, 0.6, n), half_saturation=rng.uniform(1, 20, n),
                  shape=rng.uniform(1.5, 3.0, n))
    return pd.DataFrame(df)
