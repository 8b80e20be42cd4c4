"""Writing calibrated cells as a model file: curves, values, pools, provenance, diagnostics, samples.

The file is rendered in full, validated exactly as a scenario referencing it
would be (schema, then every curve's parameters and the cell rules), and only
then moved into place atomically: a calibration that produces an invalid
model writes nothing.

``samples`` follows :class:`allocator.spec.models.SamplesSpec`: draw k of every
list belongs to the same bootstrap resample; cells without draws (pure judgment)
are absent and keep their point values.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml

from ..errors import Problem, SpecError
from ..io import atomic_write_texts
from ..spec import load_model, scenario_from_dict
from ..spec.models import TASKS
from .cells import CalibratedCell
from .diagnostics import _num
from .tables import sha256_of


def input_record(path: str | Path, rows: int | None = None) -> dict[str, Any]:
    """Provenance of one input file: path, SHA-256, size and rows read."""
    path = Path(path)
    out: dict[str, Any] = {"path": str(path), "sha256": sha256_of(path), "bytes": path.stat().st_size}
    if rows is not None:
        out["rows"] = int(rows)
    return out


def provenance(method: str, inputs: Iterable[dict[str, Any]], command: str | None = None,
               settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """A provenance block: when, how, from what."""
    try:
        version = importlib.metadata.version("allocator")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = None
    return {"method": method, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "tool": f"allocator {version or ''} calibrate".replace("  ", " "), "command": command,
            "inputs": list(inputs),
            "settings": _plain(settings or {})}


def _plain(v: Any) -> Any:
    """numpy scalars and arrays to plain Python for YAML."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return _num(v)
    return v


def build_model(cells: list[CalibratedCell], name: str, description: str | None = None,
                currency: str | None = None, provenance_block: dict[str, Any] | None = None,
                segment_info: dict[str, dict[str, Any]] | None = None,
                extra_diagnostics: dict[str, Any] | None = None, samples_seed: int | None = None,
                samples_method: str = "bootstrap") -> dict[str, Any]:
    """The model file as a mapping (segments in first-seen order, tasks in the standard order)."""
    segment_info = segment_info or {}
    segs: dict[str, dict[str, Any]] = {}
    for c in cells:
        seg = segs.setdefault(c.segment, {"id": c.segment, **_plain(segment_info.get(c.segment, {})), "tasks": {}})
        if c.task in seg["tasks"]:
            raise SpecError(Problem("cells", f"cell {c.label} is calibrated twice"))
        entry: dict[str, Any] = {"pool": _num(c.pool), "value": _plain(c.value), "curve": _plain(c.curve)}
        if c.current_spend is not None:
            entry["current_spend"] = _num(c.current_spend)
        seg["tasks"][c.task] = entry
    for seg in segs.values():
        tasks = seg.pop("tasks")
        seg["tasks"] = {t: tasks[t] for t in TASKS if t in tasks}  # re-added last: easier to read
    data: dict[str, Any] = {"name": name}
    if description:
        data["description"] = description
    if currency:
        data["currency"] = currency
    data["segments"] = list(segs.values())
    if provenance_block:
        data["provenance"] = _plain(provenance_block)
    diag: dict[str, Any] = {"cells": {c.label: _plain(c.diagnostics) for c in cells}}
    if extra_diagnostics:
        diag.update(_plain(extra_diagnostics))
    data["diagnostics"] = diag
    samples = build_samples(cells, samples_seed, samples_method)
    if samples:
        data["samples"] = samples
    return data


def build_samples(cells: list[CalibratedCell], seed: int | None, method: str) -> dict[str, Any] | None:
    """``samples`` in the SamplesSpec format; all lists cut to the smallest draw count among cells."""
    with_draws = [c for c in cells if c.draw_count > 0]
    if not with_draws:
        return None
    count = min(c.draw_count for c in with_draws)
    out = []
    for c in with_draws:
        entry: dict[str, Any] = {"segment": c.segment, "task": c.task,
                                 "curve": {k: [_num(x) for x in v[:count]] for k, v in c.curve_draws.items()}}
        if c.value_draws is not None:
            entry["value"] = [_num(x) for x in c.value_draws[:count]]
        out.append(entry)
    return {"method": method, "count": int(count), "seed": seed, "cells": out}


def merge_models(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Add ``new``'s cells to an existing model mapping (a cell present in both is an error).

    Provenance and diagnostics are kept per calibration step; samples are joined
    when both have them (cut to the smaller count).
    """
    out = {k: v for k, v in old.items() if k not in ("segments", "provenance", "diagnostics", "samples")}
    segs = {s["id"]: {**s, "tasks": dict(s["tasks"])} for s in old["segments"]}
    for s in new["segments"]:
        tgt = segs.setdefault(s["id"], {**s, "tasks": {}})
        for task, cell in s["tasks"].items():
            if task in tgt["tasks"]:
                raise SpecError(Problem("segments", f"cell ({s['id']}, {task}) is already in the model; "
                                                    f"write to a new file instead"))
            tgt["tasks"][task] = cell
        tgt["tasks"] = {t: tgt["tasks"][t] for t in TASKS if t in tgt["tasks"]}
    out["segments"] = list(segs.values())
    steps = []
    for m in (old, new):
        p = m.get("provenance")
        if p:
            steps.extend(p["steps"] if "steps" in p else [p])
    out["provenance"] = {"steps": steps}
    diag = dict(old.get("diagnostics") or {})
    nd = new.get("diagnostics") or {}
    diag["cells"] = {**diag.get("cells", {}), **nd.get("cells", {})}
    for k, v in nd.items():
        if k != "cells":
            diag[k] = v
    out["diagnostics"] = diag
    samples = [m["samples"] for m in (old, new) if m.get("samples")]
    if samples:
        count = min(s["count"] for s in samples)
        cells = []
        for s in samples:
            for c in s["cells"]:
                c = dict(c)
                c["curve"] = {k: v[:count] for k, v in c.get("curve", {}).items()}
                if c.get("value") is not None:
                    c["value"] = c["value"][:count]
                cells.append(c)
        out["samples"] = {"method": samples[-1]["method"], "count": count, "seed": samples[-1].get("seed"),
                          "cells": cells}
    return out


class _Dumper(yaml.SafeDumper):
    """Lists of plain numbers on one line (bootstrap draws would otherwise take a line each)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = bool(data) and all(isinstance(x, (int, float)) or x is None for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def render(data: dict[str, Any]) -> str:
    header = ("# Written by `allocator calibrate`; see `provenance` for the inputs and `diagnostics` for the fits.\n"
              "# Regenerate rather than edit by hand (the input hashes would no longer describe the numbers).\n")
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def validate(data: dict[str, Any], text: str | None = None) -> None:
    """Validate a model mapping as a scenario referencing it would: schema, curves, cell rules, samples.

    Raises
    ------
    SpecError
        With every problem found (nothing has been written).
    """
    text = render(data) if text is None else text
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.yaml"
        path.write_text(text, encoding="utf-8")
        model = load_model(path)
        scenario_from_dict({"name": "calibration-check", "model": "model.yaml"}, base_dir=tmp,
                           source="the calibrated model")
    if model.samples is not None:
        cells = {(s.id, t) for s in model.segments for t in s.tasks}
        curves = {(s.id, t): c.curve for s in model.segments for t, c in s.tasks.items()}
        problems = []
        for cs in model.samples.cells:
            key = (cs.segment, cs.task)
            if key not in cells:
                problems.append(Problem("samples", f"draws for ({cs.segment}, {cs.task}), a cell the model lacks"))
                continue
            for name, v in {**cs.curve, **({"value": cs.value} if cs.value is not None else {})}.items():
                if len(v) != model.samples.count:
                    problems.append(Problem(f"samples.{name}", f"has {len(v)} draws; count is {model.samples.count}",
                                            f"({cs.segment}, {cs.task})"))
                if name != "value" and name not in curves[key]:
                    problems.append(Problem(f"samples.{name}", "is not a parameter of the cell's curve",
                                            f"({cs.segment}, {cs.task})"))
        if problems:
            raise SpecError(problems, source="the calibrated model")


def write_model(data: dict[str, Any], path: str | Path) -> Path:
    """Validate, then write atomically. Returns the path written."""
    text = render(data)
    validate(data, text)
    path = Path(path)
    atomic_write_texts({path: text})
    return path
