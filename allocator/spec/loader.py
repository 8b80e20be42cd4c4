"""Read scenario and model files (YAML or JSON) into validated :class:`Scenario` objects.

This is the edge where input is validated once: file errors, schema errors and
rule breaks all become one :class:`~allocator.errors.SpecError` that lists every
problem with its field and cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from ..errors import Problem, SpecError
from .models import ModelFile, Scenario
from .overrides import apply_overrides, deep_merge
from .rules import cell_name, check_scenario


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
        Listing every problem found, each with field and cell.
    """
    data = resolve_mapping(data, base_dir, source)
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems_from_validation(exc, data), source=source) from None
    problems = check_scenario(sc, solver_names)
    if problems:
        raise SpecError(problems, source=source)
    return sc


def _inline_model(data: dict[str, Any], base_dir: str | Path, source: str | None) -> dict[str, Any]:
    """Fill ``segments`` (and ``samples``, ``currency``) from the model file ``data`` refers to."""
    model_ref = data.get("model")
    if model_ref is None or not isinstance(model_ref, str):
        return data
    if data.get("segments") is not None:
        raise SpecError(Problem("model", "give either `model` or `segments`, not both"), source=source)
    model = load_model((Path(base_dir) / model_ref).resolve())
    data["segments"] = [s.model_dump(exclude_defaults=True) for s in model.segments]
    if data.get("currency") is None and model.currency is not None:
        data["currency"] = model.currency
    if data.get("samples") is None and model.samples is not None:
        # parameter draws travel with the model into the scenario (calibration -> uncertainty)
        data["samples"] = model.samples.model_dump()
    return data


def resolve_mapping(data: Mapping[str, Any], base_dir: str | Path = ".", source: str | None = None,
                    _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Resolve ``extends``, ``model`` and ``overrides`` of a scenario mapping into one plain mapping.

    ``extends: base.yaml`` (relative to ``base_dir``) starts from the fully resolved base; the keys of
    this mapping are merged over it (mappings key by key, lists replace; a ``model`` or ``segments``
    here replaces the base's cells; the base's own ``variants`` are not inherited). Then
    ``overrides`` (dotted path -> value, see :mod:`allocator.spec.overrides`) are applied.
    """
    data = dict(data)
    ext = data.pop("extends", None)
    overrides = data.pop("overrides", None)
    data = _inline_model(data, base_dir, source)
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
            raise SpecError(Problem("overrides", f"must be a mapping of path -> value; got {overrides!r}"),
                            source=source)
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
