"""Read scenario and model files (YAML or JSON) into validated :class:`Scenario` objects.

This is the edge where input is validated once: file errors, schema errors and
rule breaks all become one :class:`~allocator.errors.SpecError` that lists every
problem with its field and cell.

All stages report together, so a file with several problems takes one round of
fixes, not one per stage: references (the model file, overrides), the schema,
curve parameters and cell rules, constraint references, and (when any of those
failed) conflicts visible without solving (:func:`~allocator.spec.rules.precheck_conflicts`).
Where the schema breaks inside one cell, constraint or budget, that part is set
aside (:func:`_salvage`) and the rest is still checked. ``extends`` problems and
unreadable files stop at once: what follows would be checked against the wrong base.
"""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
import threading
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from ..errors import Problem, SpecError, clip
from .columnar import fast_scenario
from .models import ModelFile, Scenario
from .overrides import apply_overrides, deep_merge
from .paths import MAX_EXTENDS, confine, default_roots
from .reading import _Refused, check_parsed, check_plain, excerpt, parse_text, read_bytes, short, syntax_message
from .rules import cell_name, check_scenario, precheck_conflicts

MAX_PROBLEMS = 50
"""Problems listed in one error message; the rest are counted (a long list hides the first fix)."""


class SpecProblems(SpecError):
    """A :class:`SpecError` whose message lists at most :data:`MAX_PROBLEMS` problems.

    ``problems`` keeps every one of them; the message says how many more there are.
    """

    def _render(self) -> str:
        if len(self.problems) <= MAX_PROBLEMS:
            return super()._render()
        head = f"invalid input in {self.source}" if self.source else "invalid input"
        lines = [f"{head} ({len(self.problems)} problems; the first {MAX_PROBLEMS} are listed):"]
        lines += [f"  - {clip(str(p) if p.field else p.message)}" for p in self.problems[:MAX_PROBLEMS]]
        lines.append(f"  ... and {len(self.problems) - MAX_PROBLEMS} more problems")
        return "\n".join(lines)


def read_mapping(path: str | Path, field: str = "file") -> dict[str, Any]:
    """Parse a YAML or JSON file whose top level is a mapping, within the limits of :mod:`.reading`.

    Every failure is a :class:`SpecError` naming the file and the place (line or dotted path):
    a missing or unreadable file, text that is not UTF-8, a syntax error, an alias bomb, deep
    nesting, a huge integer, a duplicate key, a control character. ``field`` names the reference
    that led here (``extends``). Messages quote at most a short excerpt of the file
    (:func:`~.reading.excerpt`); a file outside the allowed folders is never opened.
    """
    return _read(Path(path), field, check=True)[1]


_last_read: list[tuple[tuple[str, bool, bytes], dict[str, Any]]] = []
_last_read_lock = threading.Lock()
REUSE_MIN_BYTES = 256 * 1024
"""Files from this size on are parsed once when read twice in a row (see :func:`_read`)."""


def _read(path: Path, field: str, check: bool) -> tuple[bytes, dict[str, Any], bool]:
    """``(bytes, mapping, checked)`` of the file at ``path``; ``checked`` says the values were walked.

    ``check=False`` leaves that walk (:func:`~.reading._check_values`) to the caller, unless the
    top level is not a mapping (its problems are reported first, as always).

    A large file read twice in a row with the same bytes (``allocator plan`` asks whether a file is
    multi-period, then loads it) is parsed once: the second read takes the mapping the first one
    made, once. Callers do not change what they are given.
    """
    is_json = path.suffix.lower() == ".json"
    raw = read_bytes(path, field)
    key = None
    if len(raw) >= REUSE_MIN_BYTES:
        key = (str(path.resolve()), is_json, hashlib.blake2b(raw, digest_size=16).digest())
        with _last_read_lock:
            last = _last_read.pop() if _last_read else None
        if last is not None and last[0] == key:
            return raw, last[1], True
    try:
        data = parse_text(raw, is_json, check=False)
        if check or not isinstance(data, dict):
            check_parsed(raw, data, is_json)
    except _Refused as exc:
        raise _refused(exc, path, field) from None
    except (yaml.YAMLError, json.JSONDecodeError, ValueError) as exc:
        msg, where = syntax_message(exc, is_json)
        raise SpecError(Problem(field, f"{msg}{' (' + where + ')' if where else ''}"), source=str(path)) from None
    if not isinstance(data, dict):
        raise SpecError(Problem(field, f"top level must be a mapping of keys; got "
                                       f"{'nothing' if data is None else type(data).__name__}"), source=str(path))
    if key is not None and check:
        with _last_read_lock:
            _last_read[:] = [(key, data)]
    return raw, data, check


def _refused(exc: _Refused, path: Path, field: str) -> SpecError:
    """The SpecError of a broken reading limit, naming the file and the place."""
    if exc.where and not exc.where.startswith("line "):  # a dotted path names the field itself
        return SpecError(Problem(exc.where if field == "file" else f"{field}: {exc.where}", exc.message),
                         source=str(path))
    where = f" ({exc.where})" if exc.where else ""
    return SpecError(Problem(field, f"{exc.message}{where}" if field == "file"
                             else f"{path} {exc.message}{where}"), source=str(path))


def _problems_from_validation(exc: ValidationError, data: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        cell = None
        # ('segments', i, 'tasks', task, field...) -> cell (segment id, task)
        if len(loc) >= 4 and loc[0] == "segments" and isinstance(loc[1], int) and loc[2] == "tasks":
            try:
                seg_id = data["segments"][loc[1]].get("id", f"#{loc[1]}")
            except (KeyError, IndexError, TypeError, AttributeError):
                seg_id = f"#{loc[1]}"
            cell = cell_name(str(seg_id), str(loc[3]))
            loc = loc[4:]
        if cell is not None and loc == ["[key]"]:
            problems.append(Problem("task", f"unknown task {excerpt(err['input'])}; allowed: acquisition, retention, "
                                            f"winback", cell))
            continue
        # drop pydantic's union-branch labels such as 'float' / 'CLVValue'
        loc = [p for p in loc if p not in ("float", "CLVValue", "int", "str", "bool")]
        field = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see `allocator schema`)"
        elif err["type"] == "missing":
            msg = "is required"
        elif "input" in err and err["type"] not in ("missing",):
            msg = f"{msg}; got {excerpt(err['input'])}"
        problems.append(Problem(field, msg, cell))
    return problems


def scenario_from_dict(data: Mapping[str, Any], base_dir: str | Path = ".", source: str | None = None,
                       solver_names: tuple[str, ...] | None = None, allow_files: bool = True,
                       roots: tuple[str | Path, ...] = (), check_values: bool = True) -> Scenario:
    """Validate a scenario given as a mapping; resolve its ``model`` reference against ``base_dir``.

    File references (``model``, ``extends``) may point inside :func:`~.paths.default_roots` of
    ``base_dir`` (its parent's tree), ``roots``, or ``$ALLOCATOR_ROOTS``; ``allow_files=False``
    refuses every file reference (a scenario that came in a request). ``check_values`` walks the
    mapping for nesting and control characters (:func:`~.reading.check_plain`); callers whose data
    were checked already (a file read by :func:`read_mapping`, a sweep's validated base) skip it.

    Raises
    ------
    SpecError
        Listing every problem found, each with field and cell: references, schema, curve parameters,
        cell and constraint rules, and (alongside those) conflicts between bounds visible without
        solving. A scenario whose only fault is such a conflict loads; compiling or solving it
        raises :class:`~allocator.errors.InfeasibleError`.
    """
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        raise SpecError(Problem("(top level)", f"must be a mapping of keys; got {type(data).__name__}"), source=source)
    if check_values:
        check_plain(data, source)
    data = resolve_mapping(data, base_dir, source, problems=problems,
                           roots=default_roots(base_dir, roots) if allow_files else None)
    if "periods" in data:
        # a multi-period scenario (allocator.dynamic): say so, rather than "unknown key periods"
        raise SpecError([Problem("periods", "this is a multi-period scenario: `allocator plan`, `validate`, "
                                            "`frontier`, `sensitivity`, `whatif`, `sweep` and `uncertainty` "
                                            "handle it (allocator.dynamic); this command or function does "
                                            "not (use allocator.plan_dynamic from Python)")], source=source)
    if data.get("cells") is not None:
        data = _resolve_cells(data, base_dir, roots, allow_files, problems)
    model_failed = any(p.field == "model" for p in problems)
    try:
        return _checked(Scenario.model_validate(data), problems, model_failed, solver_names, source,
                        exact=not model_failed)
    except ValidationError as exc:
        # without the model's cells, what the schema says about `segments` only repeats that
        problems.extend(p for p in _problems_from_validation(exc, data)
                        if not (model_failed and p.field.split(".")[0] == "segments"))
        sc, exact = _salvage(data, exc)
    if sc is None:
        raise SpecProblems(problems, source=source) from None
    return _checked(sc, problems, model_failed, solver_names, source, exact and not model_failed)


def _resolve_cells(data: dict[str, Any], base_dir: str | Path, roots: tuple[str | Path, ...], allow_files: bool,
                   problems: list[Problem]) -> dict[str, Any]:
    """``cells: PATH``: confine the path, read and validate the table row by row (issue 11)."""
    if data.get("segments") is not None or data.get("model") is not None:
        problems.append(Problem("cells", "give either `cells` (a table) or `segments`/`model`, not both"))
        return data
    if not allow_files:
        problems.append(Problem("cells", "file references are not allowed here"))
        return data
    try:
        path = confine(data["cells"], base_dir, default_roots(base_dir, roots), "cells")
    except SpecError as exc:
        problems.extend(exc.problems)
        return data
    from ..tables import load_cells_table, validate_cells

    table = load_cells_table(path)
    problems.extend(validate_cells(table, source=path.name))
    return {**data, "cells": str(path)}   # absolute: compile reads it from anywhere


def _checked(sc: Scenario, problems: list[Problem], model_failed: bool, solver_names: tuple[str, ...] | None,
             source: str | None, exact: bool) -> Scenario:
    """Add the rule checks of ``sc`` to ``problems``; raise if there are any, else return ``sc``."""
    found = check_scenario(sc, solver_names)
    if model_failed:
        # the model file's own problems are listed; "no segments" would only repeat them
        found = [p for p in found if p.field != "segments"]
    if not exact:
        # parts of the file (or its model) were set aside: a reference into them is not known to be wrong
        found = [p for p in found if not _is_reference(p)]
    problems.extend(found)
    if problems:
        problems.extend(c.as_problem() for c in precheck_conflicts(sc))
        raise SpecProblems(problems, source=source) from None
    return sc


def _is_reference(p: Problem) -> bool:
    return p.message.startswith(("unknown segment", "unknown tag", "selects no cell", "'current' needs"))


_PLACEHOLDER_CELL = {"pool": 1.0, "value": 0.0, "curve": {"family": "exponential", "ceiling": 0.5, "rate": 1.0}}
"""What a broken required field of a cell becomes while the rest of the file is checked (it is never solved)."""


def _salvage(data: dict[str, Any], exc: ValidationError, cls: type = Scenario) -> tuple[Any, bool]:
    """The scenario with every part the schema rejected set aside, to check what remains.

    A broken cell field becomes a placeholder (required fields) or is dropped (optional ones,
    so bounds only loosen and no false conflict appears); a broken cell, constraint, budget
    or section is dropped. Returns the scenario (None when it still does not validate) and
    whether every segment kept its id, tags and tasks, so that references can still be checked.
    ``cls`` is the schema (:class:`Scenario`, or :class:`ModelFile` for a model's cells).
    """
    out = pickle.loads(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    exact = True
    drop_items: dict[str, set[int]] = {}
    for _ in range(3):
        for err in exc.errors():
            loc = [p for p in err["loc"] if p not in ("float", "CLVValue", "int", "str", "bool")]
            exact = _set_aside(out, loc, drop_items) and exact
        for key, idx in drop_items.items():
            if isinstance(out.get(key), list):
                out[key] = [it for i, it in enumerate(out[key]) if i not in idx]
        drop_items.clear()
        try:
            return cls.model_validate(out), exact
        except ValidationError as again:  # a placeholder met another rule: set that aside too
            exc = again
    return None, False


def _set_aside(data: dict[str, Any], loc: list, drop_items: dict[str, set[int]]) -> bool:
    """Repair or remove the part of ``data`` at ``loc``; False when segment labels were lost."""
    top = loc[0] if loc else None
    if top == "segments" and len(loc) >= 2 and isinstance(loc[1], int) and isinstance(data.get("segments"), list):
        seg = data["segments"][loc[1]]
        if not isinstance(seg, dict) or len(loc) == 2:
            drop_items.setdefault("segments", set()).add(loc[1])
            return False
        if loc[2] == "tasks" and len(loc) >= 4 and isinstance(seg.get("tasks"), dict):
            task, cell = loc[3], seg["tasks"].get(loc[3])
            if len(loc) == 4 or (len(loc) >= 5 and loc[4] == "[key]") or not isinstance(cell, dict):
                seg["tasks"].pop(task, None)
                return len(loc) >= 5 and loc[4] == "[key]"   # an unknown task never matched anything
            field = loc[4]
            if field in _PLACEHOLDER_CELL:
                cell[field] = copy.deepcopy(_PLACEHOLDER_CELL[field])
            else:
                cell.pop(field, None)
            return True
        if loc[2] == "tasks":
            drop_items.setdefault("segments", set()).add(loc[1])
            return False
        if loc[2] == "id":
            seg["id"] = f"#{loc[1]}"
            return False
        seg.pop(loc[2], None)
        return loc[2] != "tags"
    if top in ("constraints", "budgets") and len(loc) >= 2 and isinstance(loc[1], int):
        drop_items.setdefault(top, set()).add(loc[1])
        return True
    if top == "name":
        data["name"] = "scenario"
        return True
    if top in ("budget", "solver", "uncertainty") and len(loc) >= 2 and isinstance(data.get(top), dict):
        data[top].pop(loc[1], None)
        return True
    if top is not None:
        data.pop(top, None)
    return top != "segments"


def _inline_model(data: dict[str, Any], base_dir: str | Path, source: str | None,
                  problems: list[Problem] | None = None, roots: tuple[Path, ...] | None = ()) -> dict[str, Any]:
    """Fill ``segments`` (and ``samples``, ``currency``) from the model file ``data`` refers to.

    With a ``problems`` list, a missing or invalid model file is recorded there (each problem
    prefixed with the model's path); the cells the model's schema accepts are still filled in,
    so their curves and rules are checked in the same run.
    """
    model_ref = data.get("model")
    if model_ref is None or not isinstance(model_ref, str):
        return data
    if data.get("segments") is not None:
        _report(Problem("model", "give either `model` or `segments`, not both"), source, problems)
        return data
    try:
        path = confine(model_ref, base_dir, roots if roots != () else default_roots(base_dir), "model")
    except SpecError as exc:
        if problems is None:
            raise SpecError(exc.problems, source=source) from None
        problems.extend(exc.problems)
        return data
    if problems is None:
        model = load_model(path)
    elif not path.is_file():
        problems.append(Problem("model", f"no such model file: {short(model_ref)} (looked for {path})"))
        return data
    else:
        try:
            raw = read_mapping(path)
            model = ModelFile.model_validate(raw)
        except SpecError as exc:
            problems.extend(Problem("model", f"{model_ref}: {p if p.field else p.message}") for p in exc.problems)
            return data
        except ValidationError as exc:
            problems.extend(Problem("model", f"{model_ref}: {p}") for p in _problems_from_validation(exc, raw))
            # the model's other cells are still checked (curve parameters, cell rules)
            model, _ = _salvage(raw, exc, ModelFile)
            if model is None:
                return data
    data["segments"] = [s.model_dump(exclude_defaults=True) for s in model.segments]
    if data.get("currency") is None and model.currency is not None:
        data["currency"] = model.currency
    if data.get("samples") is None and model.samples is not None:
        # parameter draws travel with the model into the scenario (calibration -> uncertainty)
        data["samples"] = model.samples.model_dump()
    return data


def _report(problem: Problem, source: str | None, problems: list[Problem] | None) -> None:
    """Record ``problem`` when collecting, else raise it at once."""
    if problems is None:
        raise SpecError(problem, source=source)
    problems.append(problem)


def resolve_mapping(data: Mapping[str, Any], base_dir: str | Path = ".", source: str | None = None,
                    _seen: tuple[Path, ...] = (), problems: list[Problem] | None = None,
                    roots: tuple[Path, ...] | None = ()) -> dict[str, Any]:
    """Resolve ``extends``, ``model`` and ``overrides`` of a scenario mapping into one plain mapping.

    ``extends: base.yaml`` (relative to ``base_dir``) starts from the fully resolved base; the keys of
    this mapping are merged over it (mappings key by key, lists replace; a ``model`` or ``segments``
    here replaces the base's cells; the base's own ``variants`` are not inherited). Then
    ``overrides`` (dotted path -> value, see :mod:`allocator.spec.overrides`) are applied.

    With a ``problems`` list, problems of the model reference and of overrides are recorded
    there and resolution goes on (an override that fails is skipped); ``extends`` problems
    always raise, since nothing after them can be checked against the right base.
    """
    data = dict(data)
    if roots == ():
        roots = default_roots(base_dir)
    ext = data.pop("extends", None)
    overrides = data.pop("overrides", None)
    data = _inline_model(data, base_dir, source, problems, roots)
    if ext is not None:
        if not isinstance(ext, str) or not ext:
            raise SpecError(Problem("extends", f"must be the path of a scenario file; got {excerpt(ext)}"),
                            source=source)
        try:
            base_path = confine(ext, base_dir, roots, "extends")
        except SpecError as exc:
            raise SpecError(exc.problems, source=source) from None
        if base_path in _seen:
            chain = " -> ".join(str(p) for p in (*_seen[:5], "...", base_path)) if len(_seen) > 5 else \
                " -> ".join(str(p) for p in (*_seen, base_path))
            raise SpecError(Problem("extends", f"scenario files extend each other in a cycle: {chain}"),
                            source=source)
        if len(_seen) >= MAX_EXTENDS:
            raise SpecError(Problem("extends", f"the chain of `extends` is longer than {MAX_EXTENDS} files "
                                               f"(reached {base_path}); flatten some of them"), source=source)
        if not base_path.is_file():
            raise SpecError(Problem("extends", f"no such file: {base_path}"), source=source)
        base = resolve_mapping(read_mapping(base_path, field="extends"), base_path.parent,
                               str(base_path), (*_seen, base_path), roots=roots)
        base.pop("variants", None)
        if data.get("segments") is not None:
            base.pop("model", None)
            base.pop("samples", None)
        data = deep_merge(base, data)
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            _report(Problem("overrides", f"must be a mapping of path -> value; got {excerpt(overrides)}"), source,
                    problems)
            return data
        if problems is not None:
            data = apply_overrides(data, overrides, problems=problems)
            return data
        try:
            data = apply_overrides(data, overrides)
        except SpecError as exc:
            raise SpecError(exc.problems, source=source) from None
    return data


def load_scenario(path: str | Path, roots: tuple[str | Path, ...] = ()) -> Scenario:
    """Read, validate and resolve a scenario file.

    Parameters
    ----------
    path : str or Path
        A ``.yaml``, ``.yml`` or ``.json`` scenario file.
    roots : tuple of paths
        Folders, beyond the scenario's own project folder, that ``model`` and ``extends`` may read.

    Returns
    -------
    Scenario
        With ``segments`` filled in from the referenced model file, if any.
    """
    from ..solvers import AUTO, SOLVERS  # late import: solvers depend on the compiled problem, not on specs

    path = Path(path)
    raw, data, checked = _read(path, "file", check=False)
    # a large scenario is read through columns (issue 11); anything that path cannot accept comes here
    fast = fast_scenario(data, raw, path.suffix.lower() == ".json", (AUTO, *SOLVERS))
    if fast is not None:
        return fast
    if not checked:
        try:
            check_parsed(raw, data, path.suffix.lower() == ".json")
        except _Refused as exc:
            raise _refused(exc, path, "file") from None
    return scenario_from_dict(data, base_dir=path.parent, source=str(path), solver_names=(AUTO, *SOLVERS),
                              roots=roots, check_values=False)


def load_model(path: str | Path) -> ModelFile:
    """Read and validate a model file (segments, curves, values, provenance)."""
    path = Path(path)
    data = read_mapping(path)
    try:
        model = ModelFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems_from_validation(exc, data), source=str(path)) from None
    return model
