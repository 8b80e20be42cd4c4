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
import json
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from ..errors import Problem, SpecError
from .models import ModelFile, Scenario
from .overrides import apply_overrides, deep_merge
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
        lines += [f"  - {p if p.field else p.message}" for p in self.problems[:MAX_PROBLEMS]]
        lines.append(f"  ... and {len(self.problems) - MAX_PROBLEMS} more problems")
        return "\n".join(lines)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e5`` as a float (YAML 1.1 needs a dot: ``1.0e5``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+][0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Parse a YAML or JSON file whose top level is a mapping."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(Problem("file", f"no such file: {path}"))
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise SpecError(Problem("file", f"is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                                        f"{' '.join(str(exc).split())}"), source=str(path)) from None
    if not isinstance(data, dict):
        raise SpecError(Problem("file", f"top level must be a mapping of keys; got {type(data).__name__}"),
                        source=str(path))
    return data


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
            problems.append(Problem("task", f"unknown task '{err['input']}'; allowed: acquisition, retention, "
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
            msg = f"{msg}; got {err['input']!r}"
        problems.append(Problem(field, msg, cell))
    return problems


def scenario_from_dict(data: Mapping[str, Any], base_dir: str | Path = ".", source: str | None = None,
                       solver_names: tuple[str, ...] | None = None) -> Scenario:
    """Validate a scenario given as a mapping; resolve its ``model`` reference against ``base_dir``.

    Raises
    ------
    SpecError
        Listing every problem found, each with field and cell: references, schema, curve parameters,
        cell and constraint rules, and (alongside those) conflicts between bounds visible without
        solving. A scenario whose only fault is such a conflict loads; compiling or solving it
        raises :class:`~allocator.errors.InfeasibleError`.
    """
    problems: list[Problem] = []
    data = resolve_mapping(data, base_dir, source, problems=problems)
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
                  problems: list[Problem] | None = None) -> dict[str, Any]:
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
    path = (Path(base_dir) / model_ref).resolve()
    if problems is None:
        model = load_model(path)
    elif not path.is_file():
        problems.append(Problem("model", f"no such model file: {model_ref} (looked for {path})"))
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
                    _seen: tuple[Path, ...] = (), problems: list[Problem] | None = None) -> dict[str, Any]:
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
    ext = data.pop("extends", None)
    overrides = data.pop("overrides", None)
    data = _inline_model(data, base_dir, source, problems)
    if ext is not None:
        if not isinstance(ext, str) or not ext:
            raise SpecError(Problem("extends", f"must be the path of a scenario file; got {ext!r}"), source=source)
        base_path = (Path(base_dir) / ext).resolve()
        if base_path in _seen:
            chain = " -> ".join(str(p) for p in (*_seen, base_path))
            raise SpecError(Problem("extends", f"scenario files extend each other in a cycle: {chain}"),
                            source=source)
        if not base_path.is_file():
            raise SpecError(Problem("extends", f"no such file: {base_path}"), source=source)
        base = resolve_mapping(read_mapping(base_path), base_path.parent, str(base_path), (*_seen, base_path))
        base.pop("variants", None)
        if data.get("segments") is not None:
            base.pop("model", None)
            base.pop("samples", None)
        data = deep_merge(base, data)
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            _report(Problem("overrides", f"must be a mapping of path -> value; got {overrides!r}"), source, problems)
            return data
        if problems is not None:
            data = apply_overrides(data, overrides, problems=problems)
            return data
        try:
            data = apply_overrides(data, overrides)
        except SpecError as exc:
            raise SpecError(exc.problems, source=source) from None
    return data


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and resolve a scenario file.

    Parameters
    ----------
    path : str or Path
        A ``.yaml``, ``.yml`` or ``.json`` scenario file.

    Returns
    -------
    Scenario
        With ``segments`` filled in from the referenced model file, if any.
    """
    from ..solvers import AUTO, SOLVERS  # late import: solvers depend on the compiled problem, not on specs

    path = Path(path)
    data = read_mapping(path)
    return scenario_from_dict(data, base_dir=path.parent, source=str(path), solver_names=(AUTO, *SOLVERS))


def load_model(path: str | Path) -> ModelFile:
    """Read and validate a model file (segments, curves, values, provenance)."""
    path = Path(path)
    data = read_mapping(path)
    try:
        model = ModelFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems_from_validation(exc, data), source=str(path)) from None
    return model
