"""Jobs: long solves computed in their own processes, with progress, cancel and a stored result.

A job is a row in the store (queued, running, done, failed or cancelled). Each runs in a fresh
process so that cancelling it ends the computation at once, and a crash in a solver cannot take
the server with it. The processes are forked from a ``forkserver`` that imported the library
once (:data:`PRELOAD`): a job starts in milliseconds instead of the second and a half a ``spawn``
spends importing (numpy, pandas, pydantic, HiGHS) before it solves anything; the fork server is
a clean single-threaded process, never the threaded server itself. Without ``forkserver`` (not
Linux or macOS) jobs are spawned. At most ``job_processes`` run at once; the others wait queued.
The process reports progress (the global solver's round, bound and gap; a sweep's variants done)
through a queue, and its answer (or its error, already shaped as the HTTP answer) at the end.
A job process ends with the server process that started it: its parent-death signal is set on
the fork server, which ends when the server process does (the job closes its copy of the fork
server's keep-alive pipe), and a watchdog thread checks the owning server process itself.

Several server processes (``allocator serve --workers N``) share one store, so the store, not a
process, is the truth about a job. Each job names its ``owner``, the server process running it
(:func:`process_identity`: host, pid and the process's start time, so a reused pid is not taken
for it). A worker that starts, and every worker now and then, fails the jobs whose owner is gone
(:func:`owner_alive`); a worker that stops fails only its own. A cancel is a change of the job's
row, made by whichever worker got the request; the worker running the job sees it within a
poll (:data:`POLL_SECONDS`) and ends the process. Every plan stored before a stop is kept.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import socket
import threading
import time
from functools import lru_cache
from typing import Any, Callable

from .store import ACTIVE_JOB_STATES, STORING, Store

logger = logging.getLogger("allocator.service")

Finish = Callable[[dict[str, Any]], tuple[Any, str | None]]
"""Turns a job's answer into (result to store, plan id); stores the plan of plan jobs."""

PRELOAD = ("allocator.service.operations", "allocator.service.errors", "allocator.service.requests",
           "allocator.scenarios.execution", "allocator.plan", "allocator.compile", "allocator.solvers",
           "allocator.cli.plan_cmd", "allocator.kkt", "highspy")
"""Modules the fork server imports once, so that every job process starts with them loaded."""

POLL_SECONDS = 0.25
"""How often a running job's row is read for a cancel made by another worker (and the queue waited on)."""

RECOVER_SECONDS = 10.0
"""How often a server looks for jobs whose server process is gone (a worker that crashed and was replaced)."""


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22); None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the name, in parentheses, may hold spaces
    if fields[0] in ("Z", "X"):  # a zombie has finished: it runs nothing
        return None
    return fields[19]


@lru_cache(maxsize=1)
def _host() -> str:
    return socket.gethostname()[:60]


def process_identity(pid: int | None = None) -> str:
    """``host:pid:start`` of this process (or ``pid``): what a job row's ``owner`` holds."""
    pid = os.getpid() if pid is None else pid
    return f"{_host()}:{pid}:{_start_ticks(pid) or '?'}"


def owner_alive(owner: str | None) -> bool:
    """Whether the server process named by ``owner`` is still running (True for another host's:
    only that host can tell, and its own workers recover its jobs)."""
    parts = (owner or "").rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid, start = parts
    if host != _host():
        return True
    if not os.path.exists("/proc/self/stat"):  # pragma: no cover - no /proc: the pid alone
        try:
            os.kill(int(pid), 0)
            return True
        except OSError:
            return False
    return _start_ticks(int(pid)) == start


def _release_fork_server() -> None:  # pragma: no cover - in the job process
    """Close this job's copy of the fork server's keep-alive pipe.

    The fork server ends when no process holds that pipe's write end; every process it forks gets
    a copy (for forking jobs of its own), so without this a running job would keep the fork
    server, and so itself (its parent-death signal waits on the fork server), alive after the
    server process is killed.
    """
    try:
        from multiprocessing import forkserver

        fd = forkserver._forkserver._forkserver_alive_fd
        if fd is not None:
            forkserver._forkserver._forkserver_alive_fd = None
            os.close(fd)
    except (AttributeError, OSError):
        pass


def _die_with_owner(owner: str) -> None:  # pragma: no cover - in the job process
    """End this job process when the server process that owns it is gone (checked every half second).

    The parent-death signal covers the fork server; this covers the server process itself, should
    the fork server outlive it.
    """
    if not owner:
        return

    def watch() -> None:
        while owner_alive(owner):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="allocator-owner-watch", daemon=True).start()


def _name_process(job_id: str) -> None:  # pragma: no cover - in the job process
    """Name the job's process ``job-<id>`` (``/proc/PID/comm``, 15 bytes): ``ps`` shows which job it is."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, f"job-{job_id[:11]}".encode(), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _child(kind: str, payload: dict[str, Any], q, job_id: str = "", owner: str = ""
           ) -> None:  # pragma: no cover - in the job process
    from ..scenarios.execution import die_with_parent
    from .errors import error_of
    from .operations import OPERATIONS

    # the parent is the fork server (or, spawned, the server process); 1: it has already gone
    parent = os.getppid()
    if parent == 1:
        os._exit(1)
    _release_fork_server()
    die_with_parent(parent)
    _die_with_owner(owner)
    _name_process(job_id)
    try:
        data = OPERATIONS[kind](payload, lambda d: q.put({"type": "progress", "data": d}))
        q.put({"type": "result", "data": data})
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the job's error
        err = error_of(exc)
        if err is None:
            logging.getLogger("allocator.service").exception("job %s failed", kind)
            q.put({"type": "error", "error": {"status": 500, "error": "internal",
                                              "message": f"internal error: {type(exc).__name__}"}})
        else:
            q.put({"type": "error", "error": {"status": err.status, **err.body()}})
    finally:
        q.close()
        q.join_thread()


def _context():
    """``forkserver`` (with :data:`PRELOAD`) where the system has it, else ``spawn``."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))
        return ctx
    return multiprocessing.get_context("spawn")  # pragma: no cover - no fork server on this system


class JobRunner:
    """Runs the jobs of one server process, ``processes`` at once; ``owner`` names it in the job rows."""

    def __init__(self, store: Store, processes: int):
        self.store = store
        self.owner = process_identity()
        self._ctx = _context()
        self._slots = threading.BoundedSemaphore(processes)
        self._procs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()

    def recover(self, every: float | None = RECOVER_SECONDS) -> int:
        """Fail the jobs whose server process is gone; then again every ``every`` seconds, in a thread."""
        failed = self.store.fail_interrupted(alive=owner_alive)
        if failed:
            logger.warning("%d job(s) were left queued or running by a server process that stopped: marked failed",
                           failed)
        if every and not getattr(self, "_reaper", None):
            def again() -> None:
                while not self._stop.wait(every):
                    try:
                        self.recover(every=None)
                    except Exception:  # noqa: BLE001 - a store hiccup must not end the loop
                        logger.exception("looking for orphaned jobs failed")

            self._reaper = threading.Thread(target=again, name="allocator-job-recovery", daemon=True)
            self._reaper.start()
        return failed

    def submit(self, job_id: str, kind: str, payload: dict[str, Any], finish: Finish, request_id: str) -> None:
        threading.Thread(target=self._run, args=(job_id, kind, payload, finish, request_id),
                         name=f"job-{job_id[:8]}", daemon=True).start()

    def _run(self, job_id: str, kind: str, payload: dict[str, Any], finish: Finish, request_id: str) -> None:
        with self._slots:
            job = self.store.get_job(None, job_id)
            if self._closed or job is None or job["status"] != "queued":
                return  # cancelled while it waited
            if not self.store.update_job(job_id, status="running", progress={"stage": "starting"}):
                return  # cancelled between the two looks
            q = self._ctx.Queue()
            proc = self._ctx.Process(target=_child, args=(kind, payload, q, job_id, self.owner), daemon=True,
                                     name=f"allocator-job-{job_id[:8]}")
            with self._lock:
                proc.start()
                self._procs[job_id] = proc
            answer = None
            try:
                answer = self._watch(job_id, proc, q)
            finally:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5)
                with self._lock:
                    self._procs.pop(job_id, None)
            self._record(job_id, kind, answer, proc.exitcode, finish, request_id)

    def _watch(self, job_id: str, proc, q) -> dict[str, Any] | None:
        next_look = time.monotonic() + POLL_SECONDS
        while True:
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + POLL_SECONDS
                if self.store.job_status(job_id) not in ACTIVE_JOB_STATES:
                    # cancelled through another worker (or failed by a recovery): end the computation
                    proc.kill()
                    return None
            try:
                msg = q.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if proc.is_alive():
                    continue
                try:  # the answer may have arrived just as the process ended
                    msg = q.get(timeout=0.5)
                except (queue.Empty, EOFError, OSError):
                    return None
            except (EOFError, OSError):
                return None
            if msg["type"] == "progress":
                self.store.update_job(job_id, progress=msg["data"])
                continue
            return msg

    def _record(self, job_id: str, kind: str, answer: dict[str, Any] | None, exitcode: int | None, finish: Finish,
                request_id: str) -> None:
        try:
            if answer is None:
                # cancelled (the row already says so and stays), or the process died
                self.store.update_job(job_id, status="failed", error={
                    "status": 500, "error": "internal", "request_id": request_id,
                    "message": f"the job's process ended without an answer (exit code {exitcode})"})
            elif answer["type"] == "error":
                if answer["error"].get("status") == 500:
                    logger.error("request %s: job %s (%s) failed: %s", request_id, job_id, kind,
                                 answer["error"].get("message"))
                self.store.update_job(job_id, status="failed", error={**answer["error"], "request_id": request_id},
                                      progress={"stage": "failed"})
            else:
                # claim the job before storing its plan, so a cancel that races the answer either wins
                # (nothing is stored) or is refused (409: the job finished)
                if not self.store.update_job(job_id, status=STORING, progress={"stage": "storing"}):
                    return
                result, plan_id = finish(answer["data"])
                self.store.update_job(job_id, only_if_active=False, status="done", result=result, plan_id=plan_id,
                                      progress={"stage": "done"})
        except Exception:  # noqa: BLE001 - a failure to record must not kill the thread silently
            logger.exception("request %s: recording job %s failed", request_id, job_id)
            self.store.update_job(job_id, only_if_active=False, status="failed", error={"status": 500, "error": "internal",
                                                                  "request_id": request_id,
                                                                  "message": "the job's answer could not be stored"})

    def cancel(self, job_id: str) -> bool:
        """Mark the job cancelled and end its process; False when it had already finished."""
        ok = self.store.update_job(job_id, status="cancelled", progress={"stage": "cancelled"},
                                   error={"error": "cancelled", "message": "cancelled by a request"})
        with self._lock:
            proc = self._procs.get(job_id)
        if ok and proc is not None and proc.is_alive():
            proc.kill()
        return ok

    def shutdown(self) -> None:
        """End this server's job processes and fail its jobs (other workers' jobs run on)."""
        self._closed = True
        self._stop.set()
        with self._lock:
            procs = list(self._procs.values())
        for p in procs:
            if p.is_alive():
                p.kill()
        # nothing runs them any more; a later start would say the same
        self.store.fail_interrupted(owner=self.owner)
