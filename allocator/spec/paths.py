"""File references of scenario files (``model``, ``extends``, ``cells``), confined to allowed folders.

A reference is resolved against the folder of the file that makes it and refused when it points
outside :func:`default_roots` (or any folder at all, for input from a request). Messages name the
reference, never the content of the file it points to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from ..errors import Problem, SpecError
from .limits import excerpt, short

ROOTS_ENV = "ALLOCATOR_ROOTS"
"""Extra folders (separated by ``os.pathsep``) that ``model`` and ``extends`` may point into."""
MAX_EXTENDS = 32
"""Longest ``extends`` chain (scenario -> base -> base of base ...)."""


def default_roots(scenario_dir: str | Path, extra: Iterable[str | Path] = ()) -> tuple[Path, ...]:
    """Folders a scenario in ``scenario_dir`` may reference: that folder's parent's tree (so that
    ``scenarios/x.yaml`` can use ``../models/m.yaml``), or the folder itself when its parent is a
    file-system root; the working folder's tree (the project being worked in), unless it is a
    file-system root; plus ``extra`` and the folders in ``$ALLOCATOR_ROOTS``.
    """
    here = Path(scenario_dir).resolve()
    parent = here.parent
    roots = [here if parent == Path(parent.anchor) else parent]
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the working folder was removed: it grants nothing
        cwd = Path("/")
    if cwd != Path(cwd.anchor):
        roots.append(cwd)
    roots += [Path(p).resolve() for p in extra]
    roots += [Path(p).resolve() for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return tuple(roots)


def confine(ref: Any, base_dir: str | Path, roots: tuple[Path, ...] | None, field: str) -> Path:
    """The resolved path of a file reference, refused when it points outside ``roots``.

    ``roots`` of ``None`` refuses every file reference (input from a request). The message names
    the reference, never the file's content.
    """
    if not isinstance(ref, str) or not ref:
        raise SpecError(Problem(field, f"must be the path of a file; got {excerpt(ref)}"))
    if roots is None:
        raise SpecError(Problem(field, f"file references are not allowed here (got {excerpt(ref)}); "
                                       f"give the content inline"))
    if "\x00" in ref:
        raise SpecError(Problem(field, f"the path {excerpt(ref)} contains a NUL character"))
    path = (Path(base_dir) / ref).resolve()
    if not any(path == r or path.is_relative_to(r) for r in roots):
        raise SpecError(Problem(field, f"{short(ref)} points outside the folders this scenario may read "
                                       f"({', '.join(str(r) for r in roots)}); move the file there or add its "
                                       f"folder to ${ROOTS_ENV}"))
    return path
