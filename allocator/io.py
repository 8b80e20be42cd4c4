"""Writing output files so that a reader never sees half of them, and naming output folders safely.

Two ways to write, both rendering everything first:

* :func:`write_unit` writes a folder's files as one unit: a fresh folder beside the target gets
  the new files (and hard links to the files already there), then the two folders are swapped
  in one ``renameat2(RENAME_EXCHANGE)`` (Linux); elsewhere two renames, undone on the next start
  if a crash falls between them. A plan's ``plan.csv``, ``summary.json``, workbook and report
  therefore always belong to the same run, even after ``kill -9``.
* :func:`atomic_write` moves each file into place with ``os.replace`` (atomic per file) and
  takes the moved ones back if a later one fails.

Temporary names carry the writing process's id; files and folders left by a process that no
longer runs (``kill -9``, a full disk) are removed the next time anything is written there.
CSV text is escaped against formula injection by :func:`csv_text`.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plan import Plan

_UMASK = os.umask(0)
os.umask(_UMASK)

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.(?P<kind>tmp|bak|new|old)$")
_LEGACY_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(tmp|bak)$")
LEGACY_AGE = 3600.0
"""Seconds after which a temporary file of an older version (no process id in its name) is removed."""


# ---------------------------------------------------------------- CSV injection

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is read as a formula by spreadsheets (the OWASP CSV-injection rule)."""


def escape_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula; else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_safe(df: Any) -> Any:
    """A copy of DataFrame ``df`` whose text cells and column names cannot start a formula.

    Numbers are never touched (a negative number is data, not a formula); only text is.
    """
    import pandas as pd

    out = df.copy()
    out.columns = [escape_cell(str(c)) if isinstance(c, str) else c for c in out.columns]
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if isinstance(col.dtype, pd.StringDtype):
            # a text column (every value text or missing): find the few cells to escape with one
            # vectorized test instead of a Python call per cell (a million-cell plan has millions)
            risky = col.str.startswith(FORMULA_START).fillna(False).to_numpy(bool)
            if risky.any():
                values = col.astype(object)
                values[risky] = "'" + col[risky].astype(object)
                out.isetitem(i, values)
        elif col.dtype.kind not in "biufcmM":  # categories, mixed objects
            out.isetitem(i, col.astype(object).map(escape_cell))
    return out


def format_floats(values: Any, float_format: str, na_rep: str = "") -> Any:
    """``values`` (float64) as an object array of ``float_format % v`` texts, ``na_rep`` for NaN.

    The same text ``DataFrame.to_csv(float_format=...)`` writes for each value, made in one list
    comprehension: pandas tests each value for missingness through several calls, which made
    writing a million-cell plan.csv take longer than reading and solving it.
    """
    import numpy as np

    arr = np.asarray(values, dtype=float)
    out = np.array([float_format % v for v in arr.tolist()], dtype=object)
    missing = np.isnan(arr)
    if missing.any():
        out[missing] = na_rep
    return out


def csv_text(df: Any, **kw: Any) -> str:
    """``df.to_csv(index=False, **kw)`` with text cells escaped by :func:`csv_safe`.

    With a ``%``-style ``float_format`` the float columns are formatted by :func:`format_floats`
    first (the same text, faster).
    """
    kw.setdefault("index", False)
    out = csv_safe(df)
    fmt = kw.get("float_format")
    if isinstance(fmt, str) and len(out) > 0:
        na_rep = kw.get("na_rep", "")
        for i in range(out.shape[1]):
            if out.dtypes.iloc[i] == "float64":
                out.isetitem(i, format_floats(out.iloc[:, i].to_numpy(), fmt, na_rep))
    return out.to_csv(**kw)


# ---------------------------------------------------------------- output folder names

MAX_NAME = 100
"""Longest output folder name derived from a scenario name (file systems allow 255 bytes)."""


def safe_name(name: str) -> str:
    """A folder name made from ``name``: only ``A-Z a-z 0-9 _ . -``, never hidden, ``.`` or ``..``,
    at most :data:`MAX_NAME` characters (a long name keeps its start and a hash of the whole)."""
    text = re.sub(r"[^A-Za-z0-9_.\-]", "_", str(name)).lstrip(".-") or "scenario"
    if len(text) > MAX_NAME:
        text = text[:MAX_NAME - 13] + "-" + hashlib.sha256(str(name).encode()).hexdigest()[:12]
    return text


def default_out_dir(name: str, suffix: str = "", root: str | Path = "out") -> Path:
    """``out/<safe name><suffix>``: the default output folder of a scenario (see :func:`safe_name`)."""
    return Path(root) / (safe_name(name) + suffix)


# ---------------------------------------------------------------- debris of interrupted writes

def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_debris(folder: str | Path) -> list[Path]:
    """Remove temporary files and folders in ``folder`` left by writers that no longer run.

    A folder swap cut between its two renames (``X`` missing, ``.X.<pid>.<r>.old`` present) is
    undone: the previous version goes back to ``X``. Returns what was removed or restored.
    """
    folder = Path(folder)
    done: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return done
    now = time.time()
    for e in entries:
        m = _TEMP.match(e.name)
        path = Path(e.path)
        try:
            if m is None:
                if _LEGACY_TEMP.match(e.name) and e.is_file(follow_symlinks=False) \
                        and now - e.stat(follow_symlinks=False).st_mtime > LEGACY_AGE:
                    path.unlink()
                    done.append(path)
                continue
            if _alive(int(m["pid"])):
                continue
            target = folder / m["name"]
            if m["kind"] == "old" and not target.exists():
                os.rename(path, target)
            elif e.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
            done.append(path)
        except OSError:
            continue
    return done


def _temp_name(name: str, kind: str) -> str:
    return f".{name}.{os.getpid()}.{os.urandom(4).hex()}.{kind}"


def _write_file(path: Path, content: str | bytes) -> None:
    """Write and flush ``content`` to the new file ``path`` (text as UTF-8, no newline translation)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- one file at a time

def atomic_write_texts(files: dict[Path, str]) -> list[Path]:
    """Write several text files, all or none (see :func:`atomic_write`)."""
    return atomic_write(files)


def atomic_write(files: dict[Path, str | bytes]) -> list[Path]:
    """Write several files (text as UTF-8, bytes as they are) so that either all appear, complete, or none changes.

    Every file is first written in full to a temporary file in its target
    folder. Only then are they renamed into place (``os.replace`` is atomic on one
    file system), each previous version kept aside until all renames succeed; if
    one fails, the files already moved are taken back and the previous versions
    restored. Temporary files never outlive the call, except after ``kill -9``:
    then the next write in that folder removes them (:func:`clean_debris`).
    """
    temps: list[tuple[Path, Path]] = []
    moved: list[tuple[Path, Path | None]] = []  # (target, backup of what was there)
    try:
        for path in {p.parent for p in files}:
            path.mkdir(parents=True, exist_ok=True)
            clean_debris(path)
        for path, text in files.items():
            tmp = path.parent / _temp_name(path.name, "tmp")
            temps.append((tmp, path))  # registered before writing: a full disk leaves no partial file
            _write_file(tmp, text)
        for tmp, path in temps:
            backup = None
            if path.exists():
                backup = path.parent / _temp_name(path.name, "bak")
                try:
                    os.link(path, backup)  # the target never goes missing: the backup is a second name
                except OSError:
                    shutil.copy2(path, backup)
            moved.append((path, backup))
            os.replace(tmp, path)
    except BaseException:
        for path, backup in reversed(moved):
            if backup is not None and path.exists() and os.path.samefile(backup, path):
                backup.unlink()  # never replaced (rename of two links to one file would do nothing)
            elif backup is not None:
                os.replace(backup, path)
            elif path.exists():
                path.unlink()
        raise
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()
    for _, backup in moved:
        if backup is not None and backup.exists():
            backup.unlink()
    return list(files)


# ---------------------------------------------------------------- a folder as one unit

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap folders ``a`` and ``b`` atomically (Linux ``renameat2``); False when not supported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _link_tree(src: Path, dst: Path, skip: set[str]) -> None:
    """Give ``dst`` every entry of ``src`` except ``skip``: hard links (copies where links fail)."""
    for e in os.scandir(src):
        if e.name in skip or _TEMP.match(e.name):
            continue
        s, d = Path(e.path), dst / e.name
        if e.is_symlink():
            os.symlink(os.readlink(s), d)
        elif e.is_dir(follow_symlinks=False):
            d.mkdir()
            shutil.copystat(s, d)
            _link_tree(s, d, set())
        elif e.is_file(follow_symlinks=False):
            try:
                os.link(s, d)
            except OSError:
                shutil.copy2(s, d)
        else:
            raise OSError(errno.EINVAL, "not a regular file or folder", str(s))


def _unit_possible(out_dir: Path) -> bool:
    """Whether ``out_dir`` may be swapped: not the working folder or one of its parents, not a mount point."""
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return False
    return not (out_dir == cwd or cwd.is_relative_to(out_dir) or (out_dir.exists() and out_dir.is_mount()))


def write_unit(out_dir: str | Path, files: dict[str, str | bytes]) -> list[Path]:
    """Write ``files`` (name -> content) into ``out_dir`` as one unit: a reader sees all old or all new.

    Other files already in ``out_dir`` stay (hard-linked into the new folder). When ``out_dir`` is
    the working folder (or holds it) or a mount point, it cannot be swapped and
    :func:`atomic_write` is used instead.
    """
    out_dir = Path(out_dir).absolute()
    if out_dir.is_symlink():
        out_dir = out_dir.resolve()
    paths = [out_dir / name for name in files]
    if any(Path(name).name != name for name in files) or not _unit_possible(out_dir.resolve()):
        return atomic_write(dict(zip(paths, files.values())))
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY)
    try:
        # one writer at a time per parent folder: two swaps must not each drop the other's new files
        fcntl.flock(fd, fcntl.LOCK_EX)
        clean_debris(parent)
        if out_dir.is_dir():
            clean_debris(out_dir)
        stage = parent / _temp_name(out_dir.name, "new")
        stage.mkdir()
        try:
            if out_dir.is_dir():
                shutil.copystat(out_dir, stage)
                _link_tree(out_dir, stage, set(files))
            else:
                os.chmod(stage, 0o777 & ~_UMASK)
            for name, content in files.items():
                # a file takes its name only once complete, so even the stage never holds a torn file
                part = stage / _temp_name(name, "tmp")
                _write_file(part, content)
                os.chmod(part, 0o666 & ~_UMASK)
                os.replace(part, stage / name)
            _fsync_dir(stage)
            if not out_dir.exists():
                os.rename(stage, out_dir)
            elif _exchange(stage, out_dir):
                shutil.rmtree(stage, ignore_errors=True)
            else:
                old = parent / _temp_name(out_dir.name, "old")
                os.rename(out_dir, old)
                os.rename(stage, out_dir)
                shutil.rmtree(old, ignore_errors=True)
            _fsync_dir(parent)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EXDEV, errno.EINVAL):
            return atomic_write(dict(zip(paths, files.values())))
        raise
    finally:
        os.close(fd)
    return paths


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_plan_files(plan: "Plan", out_dir: Path, extra: dict[str, str | bytes] | None = None) -> list[Path]:
    """``plan.csv`` and ``summary.json`` in ``out_dir``, with ``extra`` files (name -> content) in the same unit.

    ``extra`` carries the rendered workbook and report (``plan.xlsx``, ``report.html``), so they
    appear together with the plan they show, or not at all (:func:`write_unit`). Text cells of
    ``plan.csv`` are escaped against formula injection (:func:`csv_text`); ``summary.json`` is
    ``json.dumps(..., indent=2)``'s text, written faster (:mod:`allocator.json_text`).
    """
    from .json_text import dumps_indent2
    files: dict[str, str | bytes] = {
        "plan.csv": csv_text(plan.table, float_format="%.10g"),
        "summary.json": dumps_indent2(plan.summary.to_dict()) + "\n",
    }
    files.update(extra or {})
    return write_unit(Path(out_dir), files)
