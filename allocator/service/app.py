"""The HTTP API (FastAPI): scenarios in as JSON, plans out, stored as versions per workspace.

Every route but ``/v1/health`` (and the OpenAPI document) needs ``Authorization: Bearer KEY``;
a key reads and writes its own workspace only. Request bodies are read here, within
``max_body_bytes``, and validated by :mod:`.requests` (the scenario loader's own messages); the
library does the work (:mod:`.operations`), in a worker thread for small solves and in a job
process for long ones (:mod:`.jobs`). Errors are shaped by :mod:`.errors`; an unexpected one is
logged with the request id that the answer carries in ``request_id`` and ``X-Request-ID``.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AllocatorError, Problem, SpecError
from . import operations as ops
from .config import Settings
from .errors import ApiError, ErrorOut, error_of
from .jobs import JobRunner
from .requests import (FrontierOptions, SensitivityOptions, SweepOptions, UncertaintyOptions, WhatIfOptions,
                       options_from, parse_json, scenario_data, scenario_from_request)
from .store import ACTIVE_JOB_STATES, KeyRecord, Store, TooManyJobs, diff_plans

logger = logging.getLogger("allocator.service")

API_TITLE = "allocator"
MAX_VERSION = 2**31 - 1
"""Largest version number asked for (an INTEGER column in both databases)."""
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


# ---------------------------------------------------------------- response models (for the OpenAPI document)

class PlanOut(BaseModel):
    id: str
    scenario: str
    version: int
    created_at: str
    created_by: str = Field(description="id of the key that asked")
    input_hash: str = Field(description="SHA-256 (16 hex digits) of the validated scenario's canonical JSON")
    engine_version: str
    solver: str
    status: str
    optimality_gap: float | None
    solve_seconds: float
    summary: dict[str, Any] = Field(description="the fields of summary.json")
    cells: list[dict[str, Any]] = Field(description="the rows of plan.csv")


class VersionOut(BaseModel):
    id: str
    scenario: str
    version: int
    created_at: str
    created_by: str
    input_hash: str
    engine_version: str
    solver: str
    status: str
    optimality_gap: float | None
    solve_seconds: float


class JobOut(BaseModel):
    id: str
    kind: str = Field(description="plan, frontier, sensitivity, whatif, sweep or uncertainty")
    status: str = Field(description="queued, running, storing (the answer is being stored), done, failed or cancelled")
    progress: dict[str, Any] = Field(description="stage; the global solver's round, upper_bound, gap, elapsed; "
                                                 "a sweep's variants_done of variants")
    plan_id: str | None
    error: dict[str, Any] | None
    created_at: str
    updated_at: str
    created_by: str


class HealthOut(BaseModel):
    status: str
    engine_version: str
    store: str
    schema_revision: str | None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": what} for code, what in (
        (401, "no key, or an unknown or revoked key"), (403, "a read-only key asked to write"),
        (404, "no such id in this workspace"), (409, "infeasible: the rules named cannot hold together"),
        (413, "request body too large"), (415, "not JSON"), (422, "invalid input, one problem per field and cell"),
        (429, "too many jobs queued or running in this workspace"), (500, "internal error (logged with request_id)"))}


def _body(name: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{name}"}}}}}


# ---------------------------------------------------------------- the app

def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The service over ``store`` (default: the settings' database, migrated to the newest schema)."""
    settings = settings or Settings.from_env()
    from .. import __version__

    engine_version = __version__

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st = store or Store(settings.url)
        failed = st.fail_interrupted()
        if failed:
            logger.warning("%d job(s) were queued or running when the server last stopped: marked failed", failed)
        app.state.store = st
        app.state.jobs = JobRunner(st, settings.job_processes)
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

    @app.middleware("http")
    async def request_id(request: Request, call_next):
        given = request.headers.get("x-request-id", "")
        request.state.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

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

    def current_key(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> KeyRecord:
        if cred is None:
            raise ApiError(401, "unauthorized", "send an API key: `Authorization: Bearer KEY`")
        key = the_store(request).authenticate(cred.credentials)
        if key is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key")
        return key

    def writer(key: KeyRecord = Depends(current_key)) -> KeyRecord:
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
                                settings.max_jobs_per_workspace)
        except TooManyJobs as exc:
            raise ApiError(429, "too_many_jobs", str(exc)) from None

        def finish(data: dict[str, Any]):
            if kind == "plan":
                rec = store_plan(st, key, sc, data)
                return None, rec["id"]
            return data, None

        request.app.state.jobs.submit(job["id"], kind, payload, finish, rid(request))
        return JSONResponse(job, status_code=202, headers={"Location": f"/v1/jobs/{job['id']}"})

    def store_plan(st: Store, key: KeyRecord, sc, data: dict[str, Any]) -> dict[str, Any]:
        from ..workbook.plan_book import scenario_hash

        return st.add_plan(key.workspace, sc.name, scenario_data(sc), scenario_hash(sc), engine_version, key.id,
                           data["summary"], data["cells"])

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
            sc = scenario_from_request(data, settings)
            payload = {"scenario": scenario_data(sc), "solver": solver, "tolerance": tolerance}
            if mode == "job" or ops.needs_job("plan", sc, {"solver": solver}):
                return None, payload, sc
            return store_plan(st, key, sc, ops.run_plan(payload)), payload, sc

        rec, payload, sc = await run_in_threadpool(work)
        if rec is None:
            return start_job(request, key, "plan", payload, sc)
        return JSONResponse(rec, status_code=201, headers={"Location": f"/v1/plans/{rec['id']}"})

    def found(obj, what: str, ident: Any):
        if obj is None:
            raise ApiError(404, "not_found", f"no {what} {str(ident)[:80]!r} in this workspace")
        return obj

    @app.get("/v1/plans/{plan_id}", response_model=PlanOut, tags=["plans"], responses=ERRORS)
    def get_plan(plan_id: str, request: Request, key: KeyRecord = Depends(current_key)):
        """A stored plan: summary.json's fields and plan.csv's rows."""
        return JSONResponse(found(the_store(request).get_plan(key.workspace, plan_id), "plan", plan_id))

    @app.get("/v1/plans/{plan_id}/plan.csv", tags=["plans"], responses={200: {"content": {"text/csv": {}}}, **ERRORS})
    def get_plan_csv(plan_id: str, request: Request, key: KeyRecord = Depends(current_key)):
        """A stored plan's cells as plan.csv."""
        import pandas as pd

        from ..io import csv_text

        rec = found(the_store(request).get_plan(key.workspace, plan_id), "plan", plan_id)
        return Response(csv_text(pd.DataFrame(rec["cells"])), media_type="text/csv")

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


def _request_schemas() -> dict[str, Any]:
    """The scenario file's JSON Schema (the same pydantic model) and the analysis requests built on it."""
    from ..spec import Scenario

    ref = "#/components/schemas/{model}"
    out: dict[str, Any] = {}
    sc = Scenario.model_json_schema(ref_template=ref)
    out.update(sc.pop("$defs", {}))
    out["Scenario"] = sc
    for name, model in (("FrontierRequest", FrontierOptions), ("SensitivityRequest", SensitivityOptions),
                        ("WhatIfRequest", WhatIfOptions), ("SweepRequest", SweepOptions),
                        ("UncertaintyRequest", UncertaintyOptions)):
        s = model.model_json_schema(ref_template=ref)
        out.update(s.pop("$defs", {}))
        s["properties"]["scenario"] = {"$ref": "#/components/schemas/Scenario"}
        out[name] = s
    return out


def app_from_env() -> FastAPI:
    """``uvicorn --factory allocator.service.app:app_from_env``: settings from ``ALLOCATOR_*``."""
    return create_app(Settings.from_env())
