"""Executors and the terminal progress bar (rich) used by sweeps.

Every backend is a :class:`concurrent.futures.Executor`, so the sweep loop is one piece of code:
``submit`` chunks of variants, collect them with ``as_completed``. Local processes are the default;
``dask://host:port`` (or ``tcp://host:port``) runs the same calls on a Dask cluster through
``distributed.Client.get_executor()`` (optional extra ``allocator[dask]``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from ..errors import AllocatorError, Problem, SpecError

EXECUTOR_HELP = "local (processes, default), threads, serial (a plain loop), or dask://host:port"


class SerialExecutor(Executor):
    """Runs each call at submission, in this process: the plain loop behind the same interface."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future, like other executors
            fut.set_exception(exc)
        return fut


class ExecutorHandle:
    """An executor, its description, and how to release it (closing a Dask client we opened)."""

    def __init__(self, executor: Executor, description: str, workers: int, owned: bool,
                 close: Callable[[], None] | None = None):
        self.executor, self.description, self.workers, self.owned = executor, description, workers, owned
        self._close = close

    def shutdown(self, cancel: bool = False) -> None:
        if self.owned:
            try:
                self.executor.shutdown(wait=not cancel, cancel_futures=cancel)
            except TypeError:  # executors without cancel_futures (Dask's ClientExecutor)
                self.executor.shutdown(wait=not cancel)
        if self._close is not None:
            self._close()


def open_executor(spec: str | Executor | None = None, workers: int | None = None) -> ExecutorHandle:
    """Turn an ``--executor`` value (or an Executor instance) into an :class:`ExecutorHandle`.

    Raises
    ------
    SpecError
        For an unknown executor name.
    AllocatorError
        When ``dask://`` is asked for without the ``distributed`` package, or the scheduler cannot be reached.
    """
    if isinstance(spec, Executor):
        return ExecutorHandle(spec, type(spec).__name__, workers or 1, owned=False)
    spec = (spec or "local").strip()
    if spec in ("local", "processes"):
        n = workers or os.cpu_count() or 1
        pool = ProcessPoolExecutor(max_workers=n, initializer=die_with_parent, initargs=(os.getpid(),))
        return ExecutorHandle(pool, f"{n} local processes", n, owned=True)
    if spec == "threads":
        n = workers or os.cpu_count() or 1
        return ExecutorHandle(ThreadPoolExecutor(max_workers=n), f"{n} threads", n, owned=True)
    if spec == "serial":
        return ExecutorHandle(SerialExecutor(), "serial loop", 1, owned=True)
    if spec.startswith(("dask://", "tcp://")):
        try:
            from distributed import Client
        except ImportError:
            raise AllocatorError(f"--executor {spec} needs Dask: pip install 'allocator[dask]'") from None
        address = "tcp://" + spec.split("://", 1)[1]
        try:
            client = Client(address, timeout="10s")
        except OSError as exc:
            raise AllocatorError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        n = max(1, len(client.scheduler_info().get("workers", {})))
        return ExecutorHandle(client.get_executor(), f"Dask cluster at {address} ({n} workers)", n, owned=True,
                              close=client.close)
    raise SpecError(Problem("--executor", f"unknown executor '{spec}'; use {EXECUTOR_HELP}"))


MAX_WORKERS = 1024
"""Most local processes or threads (``--workers``)."""


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the sweep's process ends, even by ``kill -9``.

    On Linux the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``); a watchdog
    thread also checks every half second that the parent is still there (other systems, and a
    parent that died before the signal was set up).
    """
    import signal
    import threading

    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="allocator-parent-watch", daemon=True).start()


@contextlib.contextmanager
def sweep_lock(out_dir: Path) -> Iterator[None]:
    """Hold the lock of a sweep's output folder; a second sweep into it is refused at once.

    The lock is ``fcntl.flock`` on ``DIR/.sweep.lock``: the kernel releases it when the holder
    ends, however it ends, so a killed sweep never leaves a stale lock.

    Raises
    ------
    SpecError
        When another process holds the lock (``--out`` names a folder in use).
    """
    import fcntl

    path = Path(out_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            raise SpecError(Problem("--out", f"another sweep (process {holder}) is writing to {out_dir}; wait "
                                             f"for it to finish or choose another --out folder")) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


LOCK_NAME = ".sweep.lock"


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """The sweep's progress bar, drawn by :mod:`rich.progress` on stderr (never stdout).

    While the sweep runs, rich draws counts, a bar, the rate, elapsed and estimated time left (a
    transient display, redrawn at most every ``min_interval`` seconds); :meth:`close` leaves one
    plain summary line (:meth:`line`) behind, so a log keeps the outcome without control codes.
    """

    def __init__(self, total: int, label: str = "variants", stream: TextIO | None = None,
                 width: int = 24, min_interval: float = 0.1, already: int = 0):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.total, self.label, self.width, self.min_interval = total, label, width, min_interval
        self.stream = stream or sys.stderr
        self.already = already
        self.t0 = time.perf_counter()
        self._last = -1.0
        self.done = already
        # drawn only when asked for (a terminal, or --progress): draw into the stream as a terminal
        console = Console(file=self.stream, force_terminal=True, highlight=False)
        self._progress = Progress(MofNCompleteColumn(), TextColumn(label), BarColumn(bar_width=width),
                                  TaskProgressColumn(), TextColumn("{task.fields[rate]}"),
                                  TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("left"),
                                  TimeRemainingColumn(), console=console, auto_refresh=False, transient=True)
        self._task = self._progress.add_task(label, total=total, completed=already, rate="")
        self._progress.start()

    def line(self, done: int, now: float | None = None) -> str:
        """The plain-text state: ``50/200 variants [######..] 5.0/s elapsed 0:10 left 0:30``."""
        elapsed = (now or time.perf_counter()) - self.t0
        fresh = done - self.already
        rate = fresh / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else float("nan")
        filled = int(self.width * done / self.total) if self.total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        return (f"{done}/{self.total} {self.label} [{bar}] {rate:.1f}/s "
                f"elapsed {_clock(elapsed)} left {_clock(left) if done < self.total else '0:00'}")

    def update(self, done: int) -> None:
        self.done = done
        now = time.perf_counter()
        elapsed = now - self.t0
        rate = (done - self.already) / elapsed if elapsed > 0 else 0.0
        self._progress.update(self._task, completed=done, rate=f"{rate:.1f}/s")
        if done < self.total and now - self._last < self.min_interval:
            return
        self._last = now
        self._progress.refresh()

    def close(self) -> None:
        self._progress.stop()
        self.stream.write(self.line(self.done) + "\n")
        self.stream.flush()
