"""The HTTP API (FastAPI): scenarios in as JSON, plans out, stored as versions per workspace.

Every route but ``/v1/health`` (and the OpenAPI document) needs ``Authorization: Bearer KEY``;
a key reads and writes its own workspace only. Request bodies are read here, within
``max_body_bytes``, and validated by :mod:`.requests` (the scenario loader's own messages); the
library does the work (:mod:`.operations`): a small direct plan on the event loop itself
(:data:`INLINE_CELLS`), other quick solves in a worker thread, long ones in a job process
(:mod:`.jobs`). Errors are shaped by :mod:`.errors`; an unexpected one is logged with the request
id that the answer carries in ``request_id`` and ``X-Request-ID``. Stored plans download as
plan.xlsx and report.html (:mod:`.downloads`). Several processes may serve one store
(``allocator serve --workers N``; :func:`.worker.worker_app`).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, Literal

from anyio import CapacityLimiter, to_thread
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AllocatorError, Problem, SpecError
from . import operations as ops
from .config import Settings
from .downloads import XLSX_TYPE
from .errors import ApiError, error_of
from .jobs import JobRunner
from .requests import (FrontierOptions, SensitivityOptions, SweepOptions, UncertaintyOptions, WhatIfOptions,
                       count_cells, options_from, parse_json, scenario_data, scenario_from_request)
from .schemas import ERRORS, HealthOut, JobOut, PlanOut, RequestId, VersionOut, _body, _request_schemas
from .store import ACTIVE_JOB_STATES, KeyRecord, Store, TooManyJobs, diff_plans

logger = logging.getLogger("allocator.service")

API_TITLE = "allocator"
MAX_VERSION = 2**31 - 1
"""Largest version number asked for (an INTEGER column in both databases)."""
SOLVING_THREADS = 2
"""Threads of one server process that solve direct plans at once (larger ones; see :data:`INLINE_CELLS`)."""
INLINE_CELLS = 200
"""Direct plans of at most this many cells are solved on the event loop itself (a few milliseconds).

The work holds the GIL wherever it runs, so a thread buys no parallelism: it costs a hand-over
per request, and every call of the event loop that releases the GIL (a socket read, a SQLite
query) then waits for the solving thread's switch interval (5 ms). Solving small plans inline
is both cheaper and faster; larger ones go to at most :data:`SOLVING_THREADS` threads, so that
the loop keeps answering meanwhile.
"""


# ---------------------------------------------------------------- the app

def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The service over ``store`` (default: the settings' database, migrated to the newest schema).

    Any number of processes may serve one store: each fails, at its start and every
    :data:`~.jobs.RECOVER_SECONDS` after, only the jobs whose server process is gone.
    """
    settings = settings or Settings.from_env()
    from .. import __version__

    engine_version = __version__

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st = store or Store(settings.url)
        app.state.store = st
        app.state.jobs = JobRunner(st, settings.job_processes)
        app.state.jobs.recover()
        # larger direct plans solve in at most SOLVING_THREADS threads of a process: the work holds
        # the GIL, so more threads only interleave the requests (each waits for all) and grow memory
        app.state.solving = CapacityLimiter(SOLVING_THREADS)
        try:
            yield
        finally:
            app.state.jobs.shutdown()
            if store is None:
                st.dispose()

    app = FastAPI(title=API_TITLE, version=engine_version, lifespan=lifespan,
                  description="Marketing budget allocation with certified optimality: plans, analyses, stored "
                              "versions. Send `Authorization: Bearer KEY` (from `allocator keys create`).")
    app.state.settings = settings
    bearer = HTTPBearer(auto_error=False, description="an API key from `allocator keys create --workspace W`")

    # ---------------------------------------------------------------- plumbing
    def rid(request: Request) -> str:
        return getattr(request.state, "request_id", None) or "-"

    def error_response(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({**err.body(), "request_id": rid(request)}, status_code=err.status,
                            headers={"X-Request-ID": rid(request)})

    app.add_middleware(RequestId)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(request, exc)

    @app.exception_handler(AllocatorError)
    async def _allocator_error(request: Request, exc: AllocatorError):
        return error_response(request, error_of(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        problems = [Problem(".".join(str(p) for p in e["loc"]), str(e["msg"])) for e in exc.errors()]
        return error_response(request, error_of(SpecError(problems)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        names = {404: "not_found", 405: "method_not_allowed"}
        return error_response(request, ApiError(exc.status_code, names.get(exc.status_code, "http"), str(exc.detail)))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        err = error_of(exc)
        if err is not None:
            return error_response(request, err)
        logger.exception("request %s: internal error on %s %s", rid(request), request.method, request.url.path)
        return error_response(request, ApiError(500, "internal", f"internal error; quote request id {rid(request)} "
                                                                 f"when reporting it"))

    def the_store(request: Request) -> Store:
        return request.app.state.store

    # async: run on the event loop, not through the thread pool (a key lookup is one indexed read;
    # a thread hop per dependency cost more CPU than the read, and the GIL is shared anyway)
    async def current_key(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)
                          ) -> KeyRecord:
        if cred is None:
            raise ApiError(401, "unauthorized", "send an API key: `Authorization: Bearer KEY`")
        key = the_store(request).authenticate(cred.credentials)
        if key is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key")
        return key

    async def writer(key: KeyRecord = Depends(current_key)) -> KeyRecord:
        if key.read_only:
            raise ApiError(403, "read_only", f"key {key.id} is read-only; this request writes")
        return key

    async def read_json(request: Request) -> Any:
        limit = settings.max_body_bytes
        ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype and ctype != "application/json" and not ctype.endswith("+json"):
            raise ApiError(415, "unsupported_media_type", f"send the scenario as JSON (application/json); got "
                                                          f"{ctype[:60]!r} (YAML is read from files only)")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, "too_large", f"the body has {int(declared):,} bytes; at most {limit:,} are accepted")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "too_large", f"the body has more than {limit:,} bytes (the limit)")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            raise SpecError(Problem("(body)", "is empty; send the scenario as a JSON object"), source="request")
        return parse_json(raw)

    def start_job(request: Request, key: KeyRecord, kind: str, payload: dict[str, Any], sc) -> JSONResponse:
        st = the_store(request)
        try:
            job = st.create_job(key.workspace, kind, {"kind": kind, **payload}, key.id,
                                settings.max_jobs_per_workspace, owner=request.app.state.jobs.owner)
        except TooManyJobs as exc:
            raise ApiError(429, "too_many_jobs", str(exc)) from None

        def finish(data: dict[str, Any]):
            if kind == "plan":
                rec = store_plan(st, key, sc, data, canonical=payload["scenario"])
                return None, rec["id"]
            return data, None

        request.app.state.jobs.submit(job["id"], kind, payload, finish, rid(request))
        return JSONResponse(job, status_code=202, headers={"Location": f"/v1/jobs/{job['id']}"})

    def store_plan(st: Store, key: KeyRecord, sc, data: dict[str, Any], raw: bool = False,
                   canonical: dict[str, Any] | None = None) -> dict[str, Any] | bytes:
        from ..workbook.plan_book import scenario_hash

        # a job's request holds the scenario's canonical data already: not dumped a second time
        canonical = canonical if canonical is not None else scenario_data(sc)
        return st.add_plan(key.workspace, sc.name, canonical, scenario_hash(canonical), engine_version, key.id,
                           data["summary"], data["cells"], raw=raw)

    async def analysis(request: Request, key: KeyRecord, kind: str, model, mode: str) -> JSONResponse:
        data = await read_json(request)

        def work():
            opts = options_from(model, data).model_dump(exclude_none=True)
            sc = scenario_from_request(opts.pop("scenario"), settings, field="scenario")
            check_sizes(kind, sc, opts)
            payload = {"scenario": scenario_data(sc), **opts}
            if mode == "job" or ops.needs_job(kind, sc, opts):
                return None, payload, sc
            return ops.OPERATIONS[kind](payload, None), payload, sc

        out, payload, sc = await run_in_threadpool(work)
        if out is None:
            return start_job(request, key, kind, payload, sc)
        return JSONResponse(out)

    def check_sizes(kind: str, sc, opts: dict[str, Any]) -> None:
        if kind == "frontier" and opts["points"] > settings.max_points:
            raise SpecError(Problem("points", f"must be at most {settings.max_points:,}; got {opts['points']:,}"),
                            source="request")
        if kind == "sweep":
            from ..scenarios import Sweep

            ops.refuse_file_keys({"grid": opts.get("grid"), "cases": opts.get("cases"),
                                  "variants": sc.variants.model_dump() if sc.variants else None}, "request")
            n = len(Sweep(sc, grid=opts.get("grid"), cases=opts.get("cases")).variants)
            if n > settings.max_variants:
                raise SpecError(Problem("grid", f"makes {n:,} variants; at most {settings.max_variants:,} per "
                                                f"request"), source="request")
        samples = (sc.uncertainty.samples or 0) if sc.uncertainty is not None else 0
        if kind == "uncertainty" and samples > settings.max_samples:
            raise SpecError(Problem("scenario.uncertainty.samples", f"must be at most {settings.max_samples:,}; got "
                                                                    f"{sc.uncertainty.samples:,}"), source="request")

    # ---------------------------------------------------------------- routes
    @app.get("/v1/health", response_model=HealthOut, tags=["service"])
    def health(request: Request):
        """Liveness and the store's schema revision; needs no key."""
        st = the_store(request)
        return {"status": "ok", "engine_version": engine_version,
                "store": "sqlite" if st.is_sqlite else st.engine.dialect.name, "schema_revision": st.revision()}

    @app.get("/v1/whoami", tags=["service"], responses=ERRORS)
    def whoami(key: KeyRecord = Depends(current_key)) -> dict[str, Any]:
        """The workspace and rights of the key sent."""
        return {"key_id": key.id, "workspace": key.workspace, "read_only": key.read_only}

    @app.post("/v1/validate", tags=["plans"], responses=ERRORS, openapi_extra=_body("Scenario"))
    async def validate(request: Request, key: KeyRecord = Depends(current_key)) -> dict[str, Any]:
        """Check a scenario without solving: 200 with its size, or 422 listing every problem."""
        data = await read_json(request)

        def work():
            from ..compile import compile_scenario

            sc = scenario_from_request(data, settings)
            problem = compile_scenario(sc)
            return {"valid": True, "name": sc.name, "segments": len(sc.segments or []), "cells": int(problem.n),
                    "budget": problem.budget, "solver": ops.solver_for(sc)}

        return await run_in_threadpool(work)

    @app.post("/v1/plans", status_code=201, tags=["plans"], openapi_extra=_body("Scenario"),
              responses={201: {"model": PlanOut, "description": "solved and stored"},
                         202: {"model": JobOut, "description": "a job (global solver): poll /v1/jobs/{id}"},
                         **ERRORS})
    async def create_plan(request: Request, key: KeyRecord = Depends(writer),
                          solver: str | None = Query(None, max_length=40, description="overrides solver.name"),
                          tolerance: float | None = Query(None, gt=0.0, lt=1.0),
                          mode: Literal["auto", "job"] = Query("auto", description="job: always answer 202")):
        """Solve a scenario and store the plan as the next version of its name (201), or start a job (202)."""
        data = await read_json(request)
        st = the_store(request)

        def work():
            from ..compile import compile_scenario

            sc = scenario_from_request(data, settings)
            problem = compile_scenario(sc)
            if mode == "job" or ops.needs_job("plan", sc, {"solver": solver}, problem):
                return None, {"scenario": scenario_data(sc), "solver": solver, "tolerance": tolerance}, sc
            # validated and compiled once; the answer is the text just stored, not encoded again
            return store_plan(st, key, sc, ops.plan_of(sc, problem, solver, tolerance), raw=True), None, sc

        if count_cells(data) <= INLINE_CELLS:
            raw, payload, sc = work()
        else:
            raw, payload, sc = await to_thread.run_sync(work, limiter=request.app.state.solving)
        if raw is None:
            return start_job(request, key, "plan", payload, sc)
        plan_id = raw[7:39].decode()  # the record opens with {"id":"<32 hex digits>"
        return Response(raw, status_code=201, media_type="application/json",
                        headers={"Location": f"/v1/plans/{plan_id}"})

    def found(obj, what: str, ident: Any):
        if obj is None:
            raise ApiError(404, "not_found", f"no {what} {str(ident)[:80]!r} in this workspace")
        return obj

    @app.get("/v1/plans/{plan_id}", response_model=PlanOut, tags=["plans"], responses=ERRORS)
    def get_plan(plan_id: str, request: Request, key: KeyRecord = Depends(current_key)):
        """A stored plan: summary.json's fields and plan.csv's rows."""
        raw = found(the_store(request).get_plan(key.workspace, plan_id, raw=True), "plan", plan_id)
        return Response(raw, media_type="application/json")

    @app.get("/v1/plans/{plan_id}/plan.csv", tags=["plans"], responses={200: {"content": {"text/csv": {}}}, **ERRORS})
    def get_plan_csv(plan_id: str, request: Request, key: KeyRecord = Depends(current_key)):
        """A stored plan's cells as plan.csv."""
        import pandas as pd

        from ..io import csv_text

        rec = found(the_store(request).get_plan(key.workspace, plan_id), "plan", plan_id)
        return Response(csv_text(pd.DataFrame(rec["cells"])), media_type="text/csv")

    def download(rec: dict[str, Any] | None, what: str, ident: str, kind: str) -> Response:
        from . import downloads

        rec = found(rec, what, ident)
        return Response(downloads.document(rec, kind), media_type=downloads.KINDS[kind], headers={
            "Content-Disposition": f'attachment; filename="{downloads.filename(rec, kind)}"'})

    xlsx = {200: {"content": {XLSX_TYPE: {}}, "description": "plan.xlsx"}, **ERRORS}
    html = {200: {"content": {"text/html": {}}, "description": "report.html"}, **ERRORS}

    @app.get("/v1/plans/{plan_id}/plan.xlsx", tags=["plans"], responses=xlsx, response_class=Response)
    def get_plan_xlsx(plan_id: str, request: Request, key: KeyRecord = Depends(current_key)):
        """A stored plan as ``allocator plan --xlsx`` writes it, re-derived from the stored scenario and
        spend without a new solve (409 when this engine cannot reproduce it)."""
        rec = the_store(request).get_plan(key.workspace, plan_id, with_scenario=True)
        return download(rec, "plan", plan_id, "plan.xlsx")

    @app.get("/v1/plans/{plan_id}/report.html", tags=["plans"], responses=html, response_class=Response)
    def get_plan_report(plan_id: str, request: Request, key: KeyRecord = Depends(current_key)):
        """A stored plan's one-file HTML report, as ``allocator plan --html`` writes it (re-derived likewise)."""
        rec = the_store(request).get_plan(key.workspace, plan_id, with_scenario=True)
        return download(rec, "plan", plan_id, "report.html")

    @app.get("/v1/scenarios/{name}/versions/{version}/plan.xlsx", tags=["versions"], responses=xlsx,
             response_class=Response)
    def get_version_xlsx(name: str, request: Request, version: int = Path(ge=1, le=MAX_VERSION),
                         key: KeyRecord = Depends(current_key)):
        """One version's plan.xlsx."""
        rec = the_store(request).get_version(key.workspace, name, version, with_scenario=True)
        return download(rec, "version", f"{name} v{version}", "plan.xlsx")

    @app.get("/v1/scenarios/{name}/versions/{version}/report.html", tags=["versions"], responses=html,
             response_class=Response)
    def get_version_report(name: str, request: Request, version: int = Path(ge=1, le=MAX_VERSION),
                           key: KeyRecord = Depends(current_key)):
        """One version's report.html."""
        rec = the_store(request).get_version(key.workspace, name, version, with_scenario=True)
        return download(rec, "version", f"{name} v{version}", "report.html")

    @app.get("/v1/plans/{plan_id}/scenario", tags=["plans"], responses=ERRORS)
    def get_plan_scenario(plan_id: str, request: Request, key: KeyRecord = Depends(current_key)) -> dict[str, Any]:
        """The scenario a stored plan solved, as validated (with the solve time limit applied)."""
        return found(the_store(request).get_plan(key.workspace, plan_id, with_scenario=True), "plan",
                     plan_id)["scenario_data"]

    @app.get("/v1/scenarios", tags=["versions"], responses=ERRORS)
    def list_scenarios(request: Request, key: KeyRecord = Depends(current_key)) -> list[dict[str, Any]]:
        """Scenario names of this workspace with their number of versions."""
        return the_store(request).list_scenarios(key.workspace)

    @app.get("/v1/scenarios/{name}/versions", response_model=list[VersionOut], tags=["versions"], responses=ERRORS)
    def list_versions(name: str, request: Request, key: KeyRecord = Depends(current_key)):
        """Every stored plan of a scenario name, oldest first."""
        return found(the_store(request).list_versions(key.workspace, name) or None, "scenario", name)

    @app.get("/v1/scenarios/{name}/versions/{version}", response_model=PlanOut, tags=["versions"], responses=ERRORS)
    def get_version(name: str, request: Request, version: int = Path(ge=1, le=MAX_VERSION),
                    key: KeyRecord = Depends(current_key)):
        """One version's plan."""
        return JSONResponse(found(the_store(request).get_version(key.workspace, name, version), "version",
                                  f"{name} v{version}"))

    @app.get("/v1/scenarios/{name}/diff", tags=["versions"], responses=ERRORS)
    def diff(name: str, request: Request, key: KeyRecord = Depends(current_key),
             from_version: int = Query(..., alias="from", ge=1, le=MAX_VERSION),
             to_version: int = Query(..., alias="to", ge=1, le=MAX_VERSION)
             ) -> dict[str, Any]:
        """Cells whose spend or value changed from one version to another, and by how much."""
        st = the_store(request)
        a = found(st.get_version(key.workspace, name, from_version), "version", f"{name} v{from_version}")
        b = found(st.get_version(key.workspace, name, to_version), "version", f"{name} v{to_version}")
        return diff_plans(a, b)

    @app.post("/v1/frontier", tags=["analysis"], openapi_extra=_body("FrontierRequest"),
              responses={202: {"model": JobOut}, **ERRORS})
    async def frontier(request: Request, key: KeyRecord = Depends(writer),
                       mode: Literal["auto", "job"] = Query("auto")) -> dict[str, Any]:
        """The budget frontier (``allocator.frontier``); a job when each budget needs the global solver."""
        return await analysis(request, key, "frontier", FrontierOptions, mode)

    @app.post("/v1/sensitivity", tags=["analysis"], openapi_extra=_body("SensitivityRequest"),
              responses={202: {"model": JobOut}, **ERRORS})
    async def sensitivity(request: Request, key: KeyRecord = Depends(writer),
                          mode: Literal["auto", "job"] = Query("auto")) -> dict[str, Any]:
        """Envelope-theorem sensitivities and shadow prices of the scenario's plan (``allocator.sensitivity``)."""
        return await analysis(request, key, "sensitivity", SensitivityOptions, mode)

    @app.post("/v1/whatif", tags=["analysis"], openapi_extra=_body("WhatIfRequest"),
              responses={202: {"model": JobOut}, **ERRORS})
    async def whatif(request: Request, key: KeyRecord = Depends(writer),
                     mode: Literal["auto", "job"] = Query("auto")) -> dict[str, Any]:
        """Move money between two cells of the plan (``allocator.what_if_move``); 409 names the rules broken."""
        return await analysis(request, key, "whatif", WhatIfOptions, mode)

    @app.post("/v1/sweeps", status_code=202, response_model=JobOut, tags=["analysis"],
              openapi_extra=_body("SweepRequest"), responses=ERRORS)
    async def sweep(request: Request, key: KeyRecord = Depends(writer)):
        """Solve every variant of a scenario (``allocator.run_sweep``), always as a job."""
        return await analysis(request, key, "sweep", SweepOptions, "job")

    @app.post("/v1/uncertainty", status_code=202, response_model=JobOut, tags=["analysis"],
              openapi_extra=_body("UncertaintyRequest"), responses=ERRORS)
    async def uncertainty(request: Request, key: KeyRecord = Depends(writer)):
        """Risk-neutral and robust plans on sampled parameters (``allocator.compare_risk``), as a job."""
        return await analysis(request, key, "uncertainty", UncertaintyOptions, "job")

    @app.get("/v1/jobs", response_model=list[JobOut], tags=["jobs"], responses=ERRORS)
    def list_jobs(request: Request, key: KeyRecord = Depends(current_key)):
        """This workspace's jobs, oldest first."""
        return the_store(request).list_jobs(key.workspace)

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, tags=["jobs"], responses=ERRORS)
    def get_job(job_id: str, request: Request, key: KeyRecord = Depends(current_key)):
        """A job's status and progress."""
        return found(the_store(request).get_job(key.workspace, job_id), "job", job_id)

    @app.get("/v1/jobs/{job_id}/result", tags=["jobs"], responses=ERRORS)
    def get_job_result(job_id: str, request: Request, key: KeyRecord = Depends(current_key)):
        """A finished job's answer: the stored plan for plan jobs, the analysis otherwise (409 until done)."""
        st = the_store(request)
        job = found(st.get_job(key.workspace, job_id, with_result=True), "job", job_id)
        if job["status"] in ACTIVE_JOB_STATES:
            raise ApiError(409, "not_ready", f"job {job_id} is {job['status']}; poll /v1/jobs/{job_id}")
        if job["status"] == "cancelled":
            raise ApiError(409, "cancelled", f"job {job_id} was cancelled")
        if job["status"] == "failed":
            err = dict(job["error"] or {})
            status = int(err.pop("status", 0) or 0)
            err.pop("request_id", None)
            code, message = err.pop("error", "job_failed"), err.pop("message", "the job failed")
            # the job's own failure as a request would have got it; a crash or a restart is a 409 here
            # (this request did nothing wrong, and the job's request id is in the job's error)
            if not 400 <= status < 500:
                status, code = 409, ("job_failed" if code == "internal" else code)
            raise ApiError(status, code, message, **err)
        if job["plan_id"]:
            return JSONResponse(st.get_plan(key.workspace, job["plan_id"]))
        return JSONResponse(job["result"])

    @app.post("/v1/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"], responses=ERRORS)
    def cancel_job(job_id: str, request: Request, key: KeyRecord = Depends(writer)):
        """Cancel a queued or running job (its process ends at once); 409 when it had already finished."""
        st = the_store(request)
        job = found(st.get_job(key.workspace, job_id), "job", job_id)
        if not request.app.state.jobs.cancel(job["id"]):
            raise ApiError(409, "finished", f"job {job_id} had already finished ({job['status']})")
        return st.get_job(key.workspace, job_id)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        comps = doc.setdefault("components", {}).setdefault("schemas", {})
        comps.update(_request_schemas())
        app.openapi_schema = doc
        return doc

    app.openapi = openapi
    return app


def app_from_env() -> FastAPI:
    """``uvicorn --factory allocator.service.app:app_from_env``: settings from ``ALLOCATOR_*``."""
    return create_app(Settings.from_env())
