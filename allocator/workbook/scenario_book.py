"""Scenarios as editable workbooks: ``allocator template SCENARIO --xlsx`` and ``allocator plan book.xlsx``.

A scenario workbook has four sheets:

* **Cells**: one row per (segment, task) cell; the columns are the scenario file's cell keys
  (``pool``, ``value`` or ``value.clv.margin`` ..., ``curve.family``, ``curve.<parameter>``,
  ``min_spend``, ``max_spend`` (blank: unbounded), ``current_spend``, ...), with the segment's
  ``tags`` (comma-separated) and ``description``;
* **Rules**: one row per constraint; selectors are written as YAML, ``{tasks: [retention]}``;
* **Budget**: the scenario's budget (``kind`` = ``total``) and its named pots (``kind`` = ``pot``);
* **Settings**: ``key``, ``value``, ``format``: name, currency, solver and objective settings; the
  sections that are trees (variants, uncertainty, samples) as JSON text (``format`` = ``json``).

Reading converts the workbook back into the scenario mapping and hands it to
:func:`allocator.spec.scenario_from_dict`: the same validation as a YAML file. Every problem it
reports is mapped back to the sheet, row and column it came from, e.g.
``Cells!F7 (segment vip, task winback): pool must be > 0; got -3``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter

from ..errors import Problem, SpecError
from ..spec.models import Scenario
from .sheets import money_format, new_workbook, to_bytes, write_table

SHEETS = ("Cells", "Rules", "Budget", "Settings")
CELL_FIELDS = ("pool", "value", "min_spend", "max_spend", "current_spend", "min_active_spend", "activation_cost")
CLV_FIELDS = ("margin", "retention", "discount", "horizon", "timing")
RULE_COLUMNS = ("name", "type", "description", "select", "of", "numerator", "denominator", "min", "max", "spend",
                "activation_cost", "min_roi", "max_cost_per_success")
SELECTOR_KEYS = ("select", "of", "numerator", "denominator")
BUDGET_COLUMNS = ("kind", "name", "total", "use_all", "unit", "select")
FLAT_SECTIONS = ("solver", "objective")
"""Settings sections written key by key (``solver.name``); any other tree is one JSON value."""
MAX_CELL_TEXT = 32_000  # Excel holds at most 32,767 characters in a cell: longer JSON continues on the next row


# ------------------------------------------------------------------ scenario -> workbook

def scenario_workbook(scenario: Scenario) -> bytes:
    """The validated ``scenario`` as an editable workbook (bytes of an .xlsx file)."""
    data = scenario.model_dump(mode="json", exclude_defaults=True)
    # the loader already inlined the model file's cells and applied extends/overrides
    for key in ("model", "extends", "overrides"):
        data.pop(key, None)
    wb = new_workbook()
    cur = data.get("currency")
    cells = _cells_frame(data.get("segments") or [])
    money = money_format(cur)
    write_table(wb.create_sheet("Cells"), cells,
                {c: money for c in ("min_spend", "max_spend", "current_spend", "min_active_spend",
                                    "activation_cost") if c in cells},
                {"max_spend": "blank: unbounded", "tags": "comma-separated labels of the segment",
                 "value": "value of one success; or fill the value.clv.* columns instead"}, freeze="C2")
    rules = pd.DataFrame([{k: _rule_text(k, v) for k, v in r.items()} for r in data.get("constraints", [])],
                         columns=list(RULE_COLUMNS))
    write_table(wb.create_sheet("Rules"), rules, notes={"select": "YAML selector, e.g. {tasks: [retention]}"})
    budget_rows = []
    if data.get("budget") is not None:
        budget_rows.append({"kind": "total", **data["budget"]})
    budget_rows += [{"kind": "pot", **{k: _rule_text(k, v) for k, v in b.items()}} for b in data.get("budgets", [])]
    write_table(wb.create_sheet("Budget"), pd.DataFrame(budget_rows, columns=list(BUDGET_COLUMNS)),
                {"total": money, "unit": money},
                {"kind": "total: the scenario's budget; pot: a named budget over the selected cells"})
    write_table(wb.create_sheet("Settings"), _settings_frame(data))
    return to_bytes(wb)


def _cells_frame(segments: list[dict[str, Any]]) -> pd.DataFrame:
    rows, params = [], []
    for seg in segments:
        for task, cell in seg["tasks"].items():
            row: dict[str, Any] = {"segment": seg["id"], "tags": ", ".join(seg.get("tags", [])),
                                   "description": seg.get("description"), "task": task}
            for f in CELL_FIELDS:
                v = cell.get(f)
                if f == "value" and isinstance(v, dict):
                    row.update({f"value.clv.{k}": x for k, x in v["clv"].items()})
                elif v is not None:
                    row[f] = v
            for k, v in cell["curve"].items():
                key = f"curve.{k}"
                row[key] = json.dumps(v) if isinstance(v, (list, dict)) else v
                if key not in params:
                    params.append(key)
            rows.append(row)
    cols = ["segment", "tags", "description", "task", "pool", "value", *(f"value.clv.{k}" for k in CLV_FIELDS),
            "curve.family", *(p for p in params if p != "curve.family"), *CELL_FIELDS[2:]]
    return pd.DataFrame(rows, columns=cols)


def _rule_text(key: str, v: Any) -> Any:
    return yaml.safe_dump(v, default_flow_style=True, width=10_000).strip() if key in SELECTOR_KEYS else v


def _settings_frame(data: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for key, v in data.items():
        if key in ("segments", "budget", "budgets", "constraints"):
            continue
        if key in FLAT_SECTIONS and isinstance(v, dict):
            for k, x in v.items():
                rows.append(_setting(f"{key}.{k}", x))
        else:
            rows.append(_setting(key, v))
    out = []
    for key, value, fmt in rows:  # long JSON continues on rows with the same key
        if fmt == "json" and len(value) > MAX_CELL_TEXT:
            out += [(key, part, fmt) for part in _chunks(value)]
        else:
            out.append((key, value, fmt))
    return pd.DataFrame(out, columns=["key", "value", "format"])


def _chunks(text: str) -> list[str]:
    """Pieces of at most MAX_CELL_TEXT characters, never cut next to whitespace (reading strips cell text)."""
    out, i = [], 0
    while i < len(text):
        j = min(i + MAX_CELL_TEXT, len(text))
        while j < len(text) and j > i + 1 and (text[j - 1].isspace() or text[j].isspace()):
            j -= 1
        out.append(text[i:j])
        i = j
    return out


def _setting(key: str, v: Any) -> tuple[str, Any, str | None]:
    if isinstance(v, (dict, list)):
        return key, json.dumps(v, separators=(",", ":")), "json"
    return key, v, None


# ------------------------------------------------------------------ workbook -> scenario

class _Where:
    """Where each value of the scenario mapping came from in the workbook (for error messages)."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], dict[str, str]] = {}   # (segment, task) -> field -> "Cells!F7"
        self.cell_rows: dict[tuple[str, str], str] = {}           # (segment, task) -> "Cells!A7"
        self.rules: list[dict[str, str]] = []                     # per constraint: column -> ref
        self.rule_names: dict[str, int] = {}
        self.budget: dict[str, str] = {}
        self.pots: list[dict[str, str]] = []
        self.settings: dict[str, str] = {}


def read_scenario_workbook(path: str | Path) -> Scenario:
    """Read a scenario workbook and validate it exactly like a YAML scenario file.

    Raises
    ------
    SpecError
        Every problem, each naming sheet, row and column (``Cells!F7 (segment vip, task winback): ...``).
    """
    from ..solvers import AUTO, SOLVERS
    from ..spec import scenario_from_dict

    path = Path(path)
    if not path.is_file():
        raise SpecError(Problem("file", f"no such file: {path}"))
    data, where, problems = workbook_mapping(path)
    if problems:
        raise SpecError(problems, source=str(path))
    try:
        return scenario_from_dict(data, base_dir=path.parent, source=str(path), solver_names=(AUTO, *SOLVERS))
    except SpecError as exc:
        raise SpecError([_locate(p, where) for p in exc.problems], source=str(path)) from None


def workbook_mapping(path: str | Path) -> tuple[dict[str, Any], _Where, list[Problem]]:
    """The scenario mapping a workbook holds, where each value came from, and problems of the sheets themselves."""
    try:
        wb = load_workbook(path, data_only=True, read_only=False)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for a broken file
        raise SpecError(Problem("file", f"is not a readable .xlsx workbook: {exc}"), source=str(path)) from None
    problems: list[Problem] = []
    missing = [s for s in SHEETS if s not in wb.sheetnames]
    if missing:
        problems.append(Problem("workbook", f"missing sheet(s) {', '.join(missing)}; a scenario workbook has "
                                            f"{', '.join(SHEETS)} (`allocator template SCENARIO --xlsx` writes one)"))
        return {}, _Where(), problems
    where = _Where()
    data: dict[str, Any] = {}
    _read_settings(wb["Settings"], data, where, problems)
    _read_budget(wb["Budget"], data, where, problems)
    rules = _read_rows(wb["Rules"], RULE_COLUMNS, problems)
    data["constraints"] = []
    for refs, row in rules:
        rule = {k: _selector(v, refs[k], problems) if k in SELECTOR_KEYS else v for k, v in row.items()}
        where.rules.append(refs)
        if isinstance(rule.get("name"), str):
            where.rule_names[rule["name"]] = len(data["constraints"])
        data["constraints"].append(rule)
    if not data["constraints"]:
        del data["constraints"]
    data["segments"] = _read_cells(wb["Cells"], where, problems)
    return data, where, problems


def _rows(ws) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    values = list(ws.iter_rows(values_only=True))
    if not values:
        return [], []
    header = [("" if h is None else str(h).strip()) for h in values[0]]
    rows = [(i + 2, list(r)) for i, r in enumerate(values[1:]) if any(_blank(v) is not None for v in r)]
    return header, rows


def _blank(v: Any) -> Any:
    """Empty cells and whitespace-only text are absent."""
    if isinstance(v, str):
        v = v.strip()
        return v or None
    return v


def _ref(ws, row: int, col: int) -> str:
    return f"{ws.title}!{get_column_letter(col + 1)}{row}"


def _read_rows(ws, allowed: tuple[str, ...], problems: list[Problem]) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Rows of a sheet as ``({column: ref}, {column: value})`` with blank cells left out."""
    header, rows = _rows(ws)
    for c, h in enumerate(header):
        if h and h not in allowed:
            problems.append(Problem(_ref(ws, 1, c), f"unknown column '{h}'; allowed: {', '.join(allowed)}"))
    out = []
    for r, vals in rows:
        refs = {h: _ref(ws, r, c) for c, h in enumerate(header) if h in allowed}
        row = {h: _blank(v) for h, v in zip(header, vals) if h in allowed and _blank(v) is not None}
        out.append((refs, row))
    return out


def _selector(text: Any, ref: str, problems: list[Problem]) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problems.append(Problem(ref, f"is not a YAML selector such as {{tasks: [retention]}}: "
                                     f"{' '.join(str(exc).split())}"))
        return None


def _read_settings(ws, data: dict[str, Any], where: _Where, problems: list[Problem]) -> None:
    chunks: dict[str, list[str]] = {}
    for refs, row in _read_rows(ws, ("key", "value", "format"), problems):
        key = row.get("key")
        if key is None:
            problems.append(Problem(refs.get("key", ws.title), "a setting needs a key"))
            continue
        key = str(key)
        where.settings[key] = refs.get("value", refs["key"])
        if row.get("format") == "json":
            chunks.setdefault(key, []).append(str(row.get("value", "")))
            continue
        if "value" not in row:
            continue
        head, _, rest = key.partition(".")
        if head in FLAT_SECTIONS and rest:
            data.setdefault(head, {})[rest] = row["value"]
        else:
            data[key] = row["value"]
    for key, parts in chunks.items():
        try:
            value = json.loads("".join(parts))
        except json.JSONDecodeError as exc:
            problems.append(Problem(where.settings[key], f"{key} is not valid JSON: {exc}"))
            continue
        head, _, rest = key.partition(".")
        if head in FLAT_SECTIONS and rest:
            data.setdefault(head, {})[rest] = value
        else:
            data[key] = value


def _read_budget(ws, data: dict[str, Any], where: _Where, problems: list[Problem]) -> None:
    for refs, row in _read_rows(ws, BUDGET_COLUMNS, problems):
        kind = row.pop("kind", None)
        if kind == "total":
            if "budget" in data:
                problems.append(Problem(refs["kind"], "only one row may have kind 'total'"))
            row.pop("name", None)
            row.pop("select", None)
            data["budget"] = row
            where.budget = refs
        elif kind == "pot":
            if "select" in row:
                row["select"] = _selector(row["select"], refs["select"], problems)
            data.setdefault("budgets", []).append(row)
            where.pots.append(refs)
        else:
            problems.append(Problem(refs.get("kind", ws.title), f"kind must be 'total' or 'pot'; got {kind!r}"))


def _read_cells(ws, where: _Where, problems: list[Problem]) -> list[dict[str, Any]]:
    header, _ = _rows(ws)
    allowed = ("segment", "tags", "description", "task", *CELL_FIELDS, *(f"value.clv.{k}" for k in CLV_FIELDS),
               *(h for h in header if h.startswith("curve.") and len(h) > 6))
    segments: dict[str, dict[str, Any]] = {}
    for refs, row in _read_rows(ws, allowed, problems):
        seg_id, task = row.get("segment"), row.get("task")
        if seg_id is None or task is None:
            problems.append(Problem(refs.get("segment" if seg_id is None else "task", ws.title),
                                    f"every row of Cells needs a segment and a task; got segment {seg_id!r}, "
                                    f"task {task!r}"))
            continue
        seg_id, task = str(seg_id), str(task)
        seg = segments.setdefault(seg_id, {"id": seg_id, "tasks": {}})
        if row.get("tags") is not None and "tags" not in seg:
            seg["tags"] = [t.strip() for t in str(row["tags"]).split(",") if t.strip()]
        if row.get("description") is not None and "description" not in seg:
            seg["description"] = row["description"]
        if task in seg["tasks"]:
            problems.append(Problem(refs["task"], f"cell (segment {seg_id}, task {task}) appears twice"))
            continue
        cell: dict[str, Any] = {}
        for key, v in row.items():
            if key in ("segment", "tags", "description", "task"):
                continue
            if key.startswith("curve."):
                if isinstance(v, str) and v[:1] in "[{":
                    try:
                        v = json.loads(v)
                    except json.JSONDecodeError as exc:
                        problems.append(Problem(refs[key], f"{key} is not valid JSON: {exc}"))
                cell.setdefault("curve", {})[key[6:]] = v
            elif key.startswith("value.clv."):
                cell.setdefault("value", {}).setdefault("clv", {})[key[10:]] = v
            elif key == "value" and "value.clv.margin" in row:
                problems.append(Problem(refs[key], f"cell (segment {seg_id}, task {task}): give value or the "
                                                   "value.clv columns, not both"))
            else:
                cell[key] = v
        seg["tasks"][task] = cell
        where.cells[(seg_id, task)] = refs
        where.cell_rows[(seg_id, task)] = refs.get("segment", f"{ws.title}!A?")
    return list(segments.values())


# ------------------------------------------------------------------ problems -> sheet, row, column

_CELL = re.compile(r"^\((?P<segment>.*), (?P<task>[^,]*)\)$")
_WORDS = [("Input should be greater than or equal to", "must be >="), ("Input should be greater than", "must be >"),
          ("Input should be less than or equal to", "must be <="), ("Input should be less than", "must be <"),
          ("Input should be a valid number", "must be a number"), ("Input should be", "must be")]


def _plain(message: str) -> str:
    """pydantic's wording in the house style: ``must be > 0; got -3``."""
    for old, new in _WORDS:
        if message.startswith(old):
            return new + message[len(old):]
    return message


def _locate(p: Problem, where: _Where) -> Problem:
    """``p`` with its field replaced by the workbook location it came from."""
    msg = _plain(p.message)
    # "pool must be > 0", but "select: unknown tag 'gold'"
    glue = " " if msg.startswith(("must", "is ", "infeasible")) else ": "
    if p.cell:
        m = _CELL.match(p.cell)
        if m:
            key = (m["segment"], m["task"])
            refs = where.cells.get(key, {})
            ref = refs.get(p.field) or _prefix_ref(p.field, refs) or where.cell_rows.get(key)
            if ref:
                return Problem(f"{ref} (segment {key[0]}, task {key[1]})", f"{p.field}{glue}{msg}")
        return Problem(p.field, msg, p.cell)
    parts = p.field.split(".")
    if parts[0] == "constraints" and len(parts) >= 2:
        idx = int(parts[1]) if parts[1].isdigit() else where.rule_names.get(parts[1])
        if idx is not None and idx < len(where.rules):
            rest = [x for x in parts[2:] if x not in ("spend", "share", "ratio", "lock", "min_active", "efficiency")
                    or x == parts[-1]]
            col = rest[0] if rest else "name"
            ref = where.rules[idx].get(col) or where.rules[idx].get("name")
            return Problem(f"{ref} (rule {_rule_label(where, idx)})", f"{'.'.join(rest) or 'rule'}{glue}{msg}")
    if parts[0] == "budget" and where.budget:
        col = parts[1] if len(parts) > 1 else "total"
        ref = where.budget.get(col) or where.budget.get("kind")
        return Problem(f"{ref} (budget)", f"{col}{glue}{msg}")
    if parts[0] == "budgets" and len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) < len(where.pots):
        refs = where.pots[int(parts[1])]
        col = parts[2] if len(parts) > 2 else "name"
        return Problem(f"{refs.get(col) or refs.get('kind')} (pot)", f"{col}{glue}{msg}")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in where.settings:
            return Problem(f"{where.settings[key]} (setting {key})", msg)
    return Problem(p.field, msg, p.cell)


def _rule_label(where: _Where, idx: int) -> str:
    names = [n for n, i in where.rule_names.items() if i == idx]
    return names[0] if names else f"row {idx + 2}"


def _prefix_ref(field: str, refs: dict[str, str]) -> str | None:
    """The column of ``field`` or of its nearest parent (``curve.rate.x`` -> ``curve.rate``; ``curve`` -> family)."""
    parts = field.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in refs:
            return refs[key]
        hits = [v for k, v in refs.items() if k.startswith(key + ".")]
        if hits:
            return hits[0]
    return None

