"""What the HTTP API declares and wraps: response models, error responses, request bodies' schemas.

The OpenAPI document is built from these (the request bodies' schemas are the scenario file's own
pydantic model); :class:`RequestId` tags every request and answer with an id.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from pydantic import BaseModel, Field

from .errors import ErrorOut
from .requests import FrontierOptions, SensitivityOptions, SweepOptions, UncertaintyOptions, WhatIfOptions

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


class RequestId:
    """Give every request an id (the client's ``X-Request-ID`` when sane) and send it back in the header.

    A plain ASGI middleware: ``@app.middleware("http")`` would pass every request and answer
    through an extra task and stream (about half a millisecond each under load).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*(h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"),
                                      header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _body(name: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{name}"}}}}}


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
