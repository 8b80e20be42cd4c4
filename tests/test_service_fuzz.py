"""Property-based fuzzing of the OpenAPI document (schemathesis) against a running server.

Every operation gets generated requests (modest numbers of examples: this is a smoke net, not a
soak): no answer may be a 500, and every answer must match the document (status code declared,
content type, response schema).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,  # noqa: E402
                                               status_code_conformance)

from test_service_support import Server, example_json, new_key  # noqa: E402


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("fuzz")
    # small limits keep generated scenarios cheap; a generated global solve becomes a (bounded) job
    srv = Server(data, env={"ALLOCATOR_MAX_CELLS": "40", "ALLOCATOR_MAX_SOLVE_SECONDS": "5",
                            "ALLOCATOR_MAX_JOBS": "2", "ALLOCATOR_MAX_POINTS": "50", "ALLOCATOR_MAX_VARIANTS": "10",
                            "ALLOCATOR_MAX_SAMPLES": "200", "ALLOCATOR_JOB_PROCESSES": "1"})
    srv.key = new_key(data, "fuzz")
    with srv.client(srv.key) as c:   # something to find by name
        c.post("/v1/plans", json=example_json())
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_error_and_no_schema_violation(api_schema, fuzz_server, mode):
    """Each operation, ``max_examples`` generated requests (valid by the schema, or not)."""
    from hypothesis import given

    from schemathesis import GenerationMode

    ops = [r.ok() for r in api_schema.get_all_operations()]
    assert len(ops) >= 18
    headers = {"Authorization": f"Bearer {fuzz_server.key}"}
    statuses: dict[int, int] = {}
    for op in ops:
        @given(case=op.as_strategy(generation_mode=GenerationMode(mode)))
        @settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
                  database=None)
        def run(case):
            r = case.call_and_validate(headers=headers, checks=CHECKS, timeout=120)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        try:
            run()
        except Unsatisfiable:
            # an operation without parameters or body has no invalid request to make
            assert mode == "negative" and not op.body and not list(op.iter_parameters()), op.label
    assert sum(statuses.values()) >= 10 * len(ops) // 2, statuses
    assert 500 not in statuses
