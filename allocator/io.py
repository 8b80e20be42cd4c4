"""Writing plan files atomically: everything is rendered first, then moved into place."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plan import Plan

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_texts(files: dict[Path, str]) -> list[Path]:
    """Write several text files, all or none (see :func:`atomic_write`)."""
    return atomic_write(files)


def atomic_write(files: dict[Path, str | bytes]) -> list[Path]:
    """Write several files (text as UTF-8, bytes as they are) so that either all appear, complete, or none changes.

    Every file is first written in full to a temporary file in its target
    folder. Only then are they renamed into place (``os.replace`` is atomic on one
    file system), each previous version kept aside until all renames succeed; if
    one fails, the files already moved are taken back and the previous versions
    restored.
    """
    temps: list[tuple[Path, Path]] = []
    moved: list[tuple[Path, Path | None]] = []  # (target, backup of what was there)
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            if isinstance(text, bytes):
                with os.fdopen(fd, "wb") as fh:
                    fh.write(text)
            else:
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                    fh.write(text)
            temps.append((Path(tmp), path))
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        for tmp, path in temps:
            backup = None
            if path.exists():
                backup = Path(tempfile.mkstemp(prefix=f".{path.name}.", suffix=".bak", dir=path.parent)[1])
                os.replace(path, backup)
            moved.append((path, backup))
            os.replace(tmp, path)
    except BaseException:
        for path, backup in reversed(moved):
            if path.exists():
                path.unlink()
            if backup is not None:
                os.replace(backup, path)
        raise
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()
    for _, backup in moved:
        if backup is not None and backup.exists():
            backup.unlink()
    return list(files)


def write_plan_files(plan: "Plan", out_dir: Path, extra: dict[str, str | bytes] | None = None) -> list[Path]:
    """``plan.csv`` and ``summary.json`` in ``out_dir``, with ``extra`` files (name -> content) in the same move.

    ``extra`` carries the rendered workbook and report (``plan.xlsx``, ``report.html``), so they
    appear together with the plan they show, or not at all.
    """
    files: dict[Path, str | bytes] = {
        out_dir / "plan.csv": plan.table.to_csv(index=False, float_format="%.10g"),
        out_dir / "summary.json": json.dumps(plan.summary.to_dict(), indent=2) + "\n",
    }
    files.update({out_dir / name: content for name, content in (extra or {}).items()})
    return atomic_write(files)
