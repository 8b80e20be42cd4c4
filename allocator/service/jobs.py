"""Jobs: long solves computed in their own processes, with progress, cancel and a stored result.

A job is a row in the store (queued, running, done, failed or cancelled). Each runs in a fresh
process (``spawn``) so that cancelling it ends the computation at once, and a crash in a solver
cannot take the server with it. At most ``job_processes`` run at once; the others wait queued.
The process reports progress (the global solver's round, bound and gap; a sweep's variants done)
through a queue, and its answer (or its error, already shaped as the HTTP answer) at the end.
A job process ends with the server (``PR_SET_PDEATHSIG``); a server that starts marks every job
still queued or running as failed (:meth:`~allocator.service.store.Store.fail_interrupted`):
nothing runs them any more, while every plan stored before the stop is kept.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
from typing import Any, Callable

from .store import STORING, Store

logger = logging.getLogger("allocator.service")

Finish = Callable[[dict[str, Any]], tuple[Any, str | None]]
"""Turns a job's answer into (result to store, plan id); stores the plan of plan jobs."""


def _child(kind: str, payload: dict[str, Any], q, parent: int) -> None:  # pragma: no cover - in the job process
    from ..scenarios.execution import die_with_parent
    from .errors import error_of
    from .operations import OPERATIONS

    die_with_parent(parent)
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


class JobRunner:
    """Runs jobs of one server; ``processes`` at once."""

    def __init__(self, store: Store, processes: int):
        self.store = store
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = threading.BoundedSemaphore(processes)
        self._procs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job_id: str, kind: str, payload: dict[str, Any], finish: Finish, request_id: str) -> None:
        threading.Thread(target=self._run, args=(job_id, kind, payload, finish, request_id),
                         name=f"job-{job_id[:8]}", daemon=True).start()

    def _run(self, job_id: str, kind: str, payload: dict[str, Any], finish: Finish, request_id: str) -> None:
        with self._slots:
            job = self.store.get_job(None, job_id)
            if self._closed or job is None or job["status"] != "queued":
                return  # cancelled while it waited
            q = self._ctx.Queue()
            proc = self._ctx.Process(target=_child, args=(kind, payload, q, os.getpid()), daemon=True,
                                     name=f"allocator-job-{job_id[:8]}")
            self.store.update_job(job_id, status="running", progress={"stage": "starting"})
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
        while True:
            try:
                msg = q.get(timeout=0.25)
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
        self._closed = True
        with self._lock:
            procs = list(self._procs.values())
        for p in procs:
            if p.is_alive():
                p.kill()
        # nothing runs them any more; a later start would say the same
        self.store.fail_interrupted()
