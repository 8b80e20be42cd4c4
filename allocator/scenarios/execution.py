"""Executors and the terminal progress bar used by sweeps.

Every backend is a :class:`concurrent.futures.Executor`, so the sweep loop is one piece of code:
``submit`` chunks of variants, collect them with ``as_completed``. Local processes are the default;
``dask://host:port`` (or ``tcp://host:port``) runs the same calls on a Dask cluster through
``distributed.Client.get_executor()`` (optional extra ``allocator[dask]``).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, TextIO

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
        return ExecutorHandle(ProcessPoolExecutor(max_workers=n), f"{n} local processes", n, owned=True)
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


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """A one-line progress bar: counts, a bar, rate, elapsed and estimated time left.

    Redrawn in place (carriage return) at most every ``min_interval`` seconds and at the end.
    """

    def __init__(self, total: int, label: str = "variants", stream: TextIO | None = None,
                 width: int = 24, min_interval: float = 0.1, already: int = 0):
        self.total, self.label, self.width, self.min_interval = total, label, width, min_interval
        self.stream = stream or sys.stderr
        self.already = already
        self.t0 = time.perf_counter()
        self._last = -1.0
        self.done = already

    def line(self, done: int, now: float | None = None) -> str:
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
        if done < self.total and now - self._last < self.min_interval:
            return
        self._last = now
        self.stream.write("\r" + self.line(done, now))
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r" + self.line(self.done) + "\n")
        self.stream.flush()
