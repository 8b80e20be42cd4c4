"""A small typed client of the HTTP service whose methods mirror the library's.

Switching a notebook from local to remote is one line::

    import allocator
    from allocator.client import Client

    plan = allocator.plan("scenarios/example.yaml")                       # local
    plan = Client("http://127.0.0.1:8000", KEY).plan("scenarios/example.yaml")  # remote, stored as a version
    plan.table.head(); plan.summary.marginal_return                       # the same either way

Scenario files are read and validated here, on the caller's machine (``model`` and ``extends``
resolved locally), and sent as JSON: the service never reads files. Long solves (the global
solver, sweeps, uncertainty) come back as jobs; the methods wait for them (``wait=False`` returns
the :class:`Job` instead).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from .errors import AllocatorError, InfeasibleError, Problem, SolverUnavailableError, SpecError
from .plan import PlanSummary

if TYPE_CHECKING:
    import httpx

DOWNLOADS = {"csv": "plan.csv", "xlsx": "plan.xlsx", "html": "report.html", "json": ""}
"""What :meth:`Client.download` fetches: the kind and the file under ``/v1/plans/{id}/``."""


class RemoteError(AllocatorError):
    """An answer of the service that is not one of the library's own errors (401, 403, 404, 429, 500)."""

    def __init__(self, status: int, body: dict[str, Any]):
        self.status, self.body = status, body
        self.request_id = body.get("request_id")
        super().__init__(f"HTTP {status} {body.get('error', '')}: {body.get('message', '')}"
                         + (f" (request id {self.request_id})" if self.request_id else ""))


@dataclass
class RemotePlan:
    """A plan solved and stored by the service: ``table`` and ``summary`` as :class:`allocator.Plan` has them.

    ``summary`` is a :class:`~allocator.plan.PlanSummary`; ``table`` holds plan.csv's columns.
    ``id`` and ``version`` name the stored version.
    """

    table: pd.DataFrame
    summary: PlanSummary
    id: str
    scenario: str
    version: int
    record: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def spend(self) -> np.ndarray:
        return self.table["spend"].to_numpy(float)

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "RemotePlan":
        table = pd.DataFrame(rec["cells"])
        return cls(table=table, summary=PlanSummary(**rec["summary"]), id=rec["id"], scenario=rec["scenario"],
                   version=rec["version"], record=rec)


@dataclass
class Job:
    """A job of the service: ``status``, ``progress`` and, once done, :meth:`Client.result`."""

    id: str
    kind: str
    status: str
    progress: dict[str, Any]
    plan_id: str | None = None
    error: dict[str, Any] | None = None
    record: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Job":
        return cls(rec["id"], rec["kind"], rec["status"], rec["progress"], rec.get("plan_id"), rec.get("error"), rec)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")


def scenario_json(scenario: str | Path | Any | Mapping[str, Any]) -> dict[str, Any]:
    """A scenario as the JSON the service takes: files are read and resolved here (model, extends)."""
    from .spec import Scenario, load_scenario

    if isinstance(scenario, (str, Path)):
        scenario = load_scenario(scenario)
    if isinstance(scenario, Scenario):
        return scenario.model_dump(mode="json", exclude_none=True, exclude={"model", "extends", "overrides"})
    return dict(scenario)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows).replace({None: np.nan}) if rows else pd.DataFrame()


class Client:
    """The service at ``url`` with the API key ``key`` (``Authorization: Bearer KEY``).

    Parameters
    ----------
    url : str
        e.g. ``http://127.0.0.1:8000``.
    key : str
        From ``allocator keys create --workspace W``.
    timeout : float
        Seconds per HTTP request.
    poll : float
        Seconds between polls of a job.
    """

    def __init__(self, url: str, key: str | None, timeout: float = 120.0, poll: float = 0.25,
                 transport: Any = None):
        import httpx

        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.poll = poll
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- plumbing
    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self._http.request(method, path, **kw)
        self._raise_for(r)
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text

    def _raise_for(self, r: httpx.Response) -> None:
        """Raise the library's exception for an error answer (status 400 and above); nothing otherwise."""
        if r.status_code < 400:
            return
        try:
            body = r.json()
        except ValueError:
            body = {"error": "http", "message": r.text[:500]}
        raise self._error(r.status_code, body)

    @staticmethod
    def _error(status: int, body: dict[str, Any]) -> AllocatorError:
        """The library's own exception for the service's answer (SpecError for 422, InfeasibleError for 409)."""
        kind = body.get("error")
        if status == 422 and kind == "invalid":
            return SpecError([Problem(p["field"], p["message"], p.get("cell")) for p in body.get("problems", [])],
                             source="request")
        if status == 422 and kind == "solver":
            return SolverUnavailableError(body.get("message", ""))
        if status == 409 and kind == "infeasible":
            return InfeasibleError(body.get("message", "infeasible"), conflict=body.get("conflict", []))
        return RemoteError(status, body)

    def _submit(self, path: str, body: dict[str, Any], wait: bool, params: dict[str, Any] | None = None) -> Any:
        r = self._http.post(path, json=body, params={k: v for k, v in (params or {}).items() if v is not None})
        self._raise_for(r)
        data = r.json()
        if r.status_code != 202:
            return data
        job = Job.from_record(data)
        return self.result(job.id) if wait else job

    # ---------------------------------------------------------------- service
    def health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health")

    def whoami(self) -> dict[str, Any]:
        return self._call("GET", "/v1/whoami")

    def validate(self, scenario: Any) -> dict[str, Any]:
        """Check a scenario without solving (raises :class:`SpecError` listing the problems)."""
        return self._call("POST", "/v1/validate", json=scenario_json(scenario))

    # ---------------------------------------------------------------- the library's calls
    def plan(self, scenario: Any, solver: str | None = None, tolerance: float | None = None, wait: bool = True,
             job: bool = False) -> RemotePlan | Job:
        """Solve and store a plan (as ``allocator.plan``); a new version of the scenario's name."""
        out = self._submit("/v1/plans", scenario_json(scenario), wait,
                           {"solver": solver, "tolerance": tolerance, "mode": "job" if job else None})
        return out if isinstance(out, Job) else RemotePlan.from_record(out)

    def frontier(self, scenario: Any, start: float, stop: float, points: int = 50, method: str = "auto",
                 wait: bool = True) -> dict[str, Any]:
        """The budget frontier (as ``allocator.frontier``): ``table`` and ``events`` as DataFrames, ``method``."""
        out = self._submit("/v1/frontier", {"scenario": scenario_json(scenario), "start": start, "stop": stop,
                                            "points": points, "method": method}, wait)
        if isinstance(out, Job):
            return out
        return {"method": out["method"], "table": _frame(out["table"]), "events": _frame(out["events"])}

    budget_frontier = frontier

    def sensitivity(self, scenario: Any, top: int | None = None, wait: bool = True) -> dict[str, Any]:
        """Sensitivities of the scenario's plan (as ``allocator.sensitivity``): parameters, shadow prices."""
        body = {"scenario": scenario_json(scenario), **({"top": top} if top else {})}
        out = self._submit("/v1/sensitivity", body, wait)
        if isinstance(out, Job):
            return out
        return {"net_value": out["net_value"], "parameters": _frame(out["parameters"]),
                "shadow_prices": _frame(out["shadow_prices"])}

    def what_if_move(self, scenario: Any, amount: float, from_cell: str | tuple[str, str],
                     to_cell: str | tuple[str, str], resolve: bool = False, wait: bool = True) -> dict[str, Any]:
        """Move money between two cells of the scenario's plan (as ``allocator.what_if_move``)."""
        def cell(c):
            return c if isinstance(c, str) else "/".join(c)

        return self._submit("/v1/whatif", {"scenario": scenario_json(scenario), "amount": amount,
                                           "from_cell": cell(from_cell), "to_cell": cell(to_cell),
                                           "resolve": resolve}, wait)

    def sweep(self, scenario: Any, grid: Mapping[str, Any] | None = None, cases: list | None = None,
              wait: bool = True) -> dict[str, Any] | Job:
        """Every variant solved (as ``allocator.run_sweep``): ``summary`` and ``cells`` DataFrames."""
        body = {"scenario": scenario_json(scenario), **({"grid": dict(grid)} if grid is not None else {}),
                **({"cases": list(cases)} if cases is not None else {})}
        out = self._submit("/v1/sweeps", body, wait)
        if isinstance(out, Job):
            return out
        return {"variants": out["variants"], "summary": _frame(out["summary"]), "cells": _frame(out["cells"])}

    run_sweep = sweep

    def compare_risk(self, scenario: Any, objective: str | None = None, alpha: float | None = None,
                     optimize: bool = True, wait: bool = True) -> dict[str, Any] | Job:
        """Risk-neutral and robust plans (as ``allocator.compare_risk``): ``table`` and ``plans`` DataFrames."""
        body = {"scenario": scenario_json(scenario), "optimize": optimize,
                **({"objective": objective} if objective else {}), **({"alpha": alpha} if alpha else {})}
        out = self._submit("/v1/uncertainty", body, wait)
        if isinstance(out, Job):
            return out
        return {"table": _frame(out["table"]), "plans": _frame(out["plans"]), "refused": out["refused"]}

    # ---------------------------------------------------------------- stored versions
    def get_plan(self, plan_id: str) -> RemotePlan:
        return RemotePlan.from_record(self._call("GET", f"/v1/plans/{plan_id}"))

    def scenarios(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/scenarios")

    def versions(self, name: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/scenarios/{name}/versions")

    def version(self, name: str, version: int) -> RemotePlan:
        return RemotePlan.from_record(self._call("GET", f"/v1/scenarios/{name}/versions/{version}"))

    def download(self, plan_id: str, kind: str = "xlsx", path: str | Path | None = None) -> bytes | Path:
        """A stored plan as a file: ``csv`` (plan.csv), ``xlsx`` (plan.xlsx), ``html`` (report.html) or ``json``.

        Returns the bytes, or writes them to ``path`` (a file, or a folder to put the service's file
        name in) and returns the path written.
        """
        if kind not in DOWNLOADS:
            raise SpecError(Problem("kind", f"must be one of {', '.join(DOWNLOADS)}; got {kind!r}"))
        r = self._http.get(f"/v1/plans/{plan_id}" + (f"/{DOWNLOADS[kind]}" if DOWNLOADS[kind] else ""))
        self._raise_for(r)
        if path is None:
            return r.content
        path = Path(path)
        if path.is_dir():
            disposition = r.headers.get("content-disposition", "")
            name = disposition.split('filename="', 1)[-1].rstrip('"') if "filename=" in disposition else None
            path = path / (name or f"{plan_id}.{kind}")
        path.write_bytes(r.content)
        return path

    def diff(self, name: str, from_version: int, to_version: int) -> dict[str, Any]:
        return self._call("GET", f"/v1/scenarios/{name}/diff", params={"from": from_version, "to": to_version})

    # ---------------------------------------------------------------- jobs
    def job(self, job_id: str) -> Job:
        return Job.from_record(self._call("GET", f"/v1/jobs/{job_id}"))

    def jobs(self) -> list[Job]:
        return [Job.from_record(j) for j in self._call("GET", "/v1/jobs")]

    def cancel(self, job_id: str) -> Job:
        return Job.from_record(self._call("POST", f"/v1/jobs/{job_id}/cancel"))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Poll until the job finishes (``timeout`` seconds at most: then the job as it is)."""
        t0 = time.monotonic()
        while True:
            job = self.job(job_id)
            if job.finished or (timeout is not None and time.monotonic() - t0 > timeout):
                return job
            time.sleep(self.poll)

    def result(self, job_id: str) -> Any:
        """Wait for the job, then its answer (the stored plan's record for plan jobs); raises its error."""
        self.wait(job_id)
        return self._call("GET", f"/v1/jobs/{job_id}/result")
