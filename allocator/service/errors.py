"""Errors as HTTP answers: one JSON shape for every failure, never a traceback.

=====  ===========================  ========================================================
code   ``error``                    when
=====  ===========================  ========================================================
401    ``unauthorized``             no key, an unknown key, or a revoked key
403    ``read_only``                a read-only key asked to write
404    ``not_found``                no such id *in this workspace* (another workspace's too)
409    ``infeasible``               the rules cannot hold together; ``conflict`` names them
413    ``too_large``                the body is larger than ``ALLOCATOR_MAX_BODY_BYTES``
422    ``invalid``                  bad input; ``problems`` as the command line lists them
422    ``solver``                   no solver can handle the problem, or a solver failed
429    ``too_many_jobs``            the workspace has ``ALLOCATOR_MAX_JOBS`` jobs in flight
500    ``internal``                 a bug: logged with the request id, which the answer carries
=====  ===========================  ========================================================
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..errors import AllocatorError, InfeasibleError, SpecError, clip


class ProblemOut(BaseModel):
    field: str
    cell: str | None = None
    message: str
    text: str = Field(description="the line the command line prints for this problem")


class ErrorOut(BaseModel):
    error: str = Field(description="unauthorized, read_only, not_found, infeasible, too_large, invalid, solver, "
                                   "too_many_jobs, internal")
    message: str
    request_id: str | None = None
    problems: list[ProblemOut] = Field(default_factory=list)
    conflict: list[str] = Field(default_factory=list, description="the rules that cannot hold together (409)")


class ApiError(Exception):
    """An HTTP error with the service's JSON body."""

    def __init__(self, status: int, error: str, message: str, **extra: Any):
        self.status, self.error, self.message, self.extra = status, error, message, extra
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.extra}


def error_of(exc: BaseException) -> ApiError | None:
    """The HTTP answer for an allocator error (None for anything else, which is a bug: 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, SpecError):
        problems = [{"field": p.field, "cell": p.cell, "message": clip(p.message),
                     "text": clip(str(p) if p.field else p.message)} for p in exc.problems]
        n = len(problems)
        return ApiError(422, "invalid", f"invalid input ({n} problem{'s' if n != 1 else ''})", problems=problems)
    if isinstance(exc, InfeasibleError):
        return ApiError(409, "infeasible", clip(str(exc).splitlines()[0]), conflict=[clip(c) for c in exc.conflict])
    if isinstance(exc, AllocatorError):
        return ApiError(422, "solver", clip(str(exc)))
    return None
