"""Writing plan files atomically: everything is rendered first, then moved into place."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plan import Plan


def atomic_write_texts(files: dict[Path, str]) -> list[Path]:
    """Write several files so that none appears half-written.

    Every file is first written in full to a temporary file in its target
    folder; only when all have been written are they renamed into place
    (``os.replace`` is atomic on one file system). A failure before that leaves
    no new file behind.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            temps.append((Path(tmp), path))
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()
    return list(files)


def write_plan_files(plan: "Plan", out_dir: Path) -> list[Path]:
    """``plan.csv`` and ``summary.json`` in ``out_dir``."""
    return atomic_write_texts({
        out_dir / "plan.csv": plan.table.to_csv(index=False, float_format="%.10g"),
        out_dir / "summary.json": json.dumps(plan.summary.to_dict(), indent=2) + "\n",
    })
