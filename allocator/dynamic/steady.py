"""The stationary policy of an infinite horizon, by policy iteration on the per-member Bellman equation.

In the money of the period a member is in (spend and margins of that period count
fully, the next period's value is divided by ``1 + d``), the stationary value
``W(k)`` of a member in state ``k`` solves

    G(j)    = margin(j) + W(j) / (1 + d)
    W(k)    = keep_k G(F(k)) + max_x [ p_k(x) (value_k + G(A) - keep_k G(F(k))) - x ].

Policy iteration alternates an exact evaluation of the current policy (a 3 x 3
linear system per segment, solved batched) with the improvement step, the same
per-member maximization as the finite horizon (:func:`allocator.dynamic.bellman.choose`).
It is Newton's method on the Bellman equation and stops when the policy no longer
changes; ``residual`` is the largest Bellman residual ``|W - T W|`` at the end, and
``residual / (1 - 1/(1 + d))`` bounds the distance of ``W`` from the true values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NumericalError
from .bellman import choose_with_values, oneoff
from .model import A, FAIL_DEST, DynamicProblem


@dataclass
class Stationary:
    """The stationary policy per (segment, state): spend ``x``, response ``p``, values ``W`` and ``delta``."""

    x: np.ndarray
    p: np.ndarray
    W: np.ndarray
    delta: np.ndarray
    iterations: int
    residual: float


def _evaluate(problem: DynamicProblem, x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Exact values of a stationary policy: ``(I - M / (1 + d)) W = r`` per segment."""
    S = problem.S
    beta = 1.0 / (1.0 + problem.discount)
    M = np.zeros((S, 3, 3))
    r = -x + p * (problem.margin[:, [A]] + oneoff(problem, x))
    for k in range(3):
        f = FAIL_DEST[k]
        stay = (1.0 - p[:, k]) * problem.keep[:, k]
        M[:, k, A] += p[:, k]
        M[:, k, f] += stay
        r[:, k] += stay * problem.margin[:, f]
    return np.linalg.solve(np.eye(3)[None] - beta * M, r[..., None])[..., 0]


def _improve(problem: DynamicProblem, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One Bellman step: the best spend for values W, its response, success values and the new values."""
    beta = 1.0 / (1.0 + problem.discount)
    G = problem.margin + beta * W
    x = np.zeros_like(W)
    p = np.zeros_like(W)
    delta = np.zeros_like(W)
    TW = np.zeros_like(W)
    for k in range(3):
        fail = problem.keep[:, k] * G[:, FAIL_DEST[k]]
        d0 = G[:, A] - fail
        x[:, k] = choose_with_values(problem, k, d0, 1.0, 1.0, problem.steady_allowed[:, k])
        p[:, k] = problem.response(k, x[:, k])
        d = d0 + problem.success_value(k, x[:, k])
        delta[:, k] = d
        TW[:, k] = fail + p[:, k] * d - x[:, k]
    return x, p, delta, TW


def stationary(problem: DynamicProblem, max_iterations: int = 200, rtol: float = 1e-13) -> Stationary:
    """Solve the stationary Bellman equation of ``problem`` (which must have ``steady_allowed``).

    Raises
    ------
    NumericalError
        When policy iteration has not settled after ``max_iterations`` improvements.
    """
    S = problem.S
    x = np.where(problem.steady_allowed, problem.lo, 0.0)
    p = np.column_stack([problem.response(k, x[:, k]) for k in range(3)])
    W = _evaluate(problem, x, p)
    for it in range(1, max_iterations + 1):
        x_new, p_new, delta, TW = _improve(problem, W)
        scale = max(1.0, float(np.abs(W).max()))
        residual = float(np.abs(TW - W).max())
        if residual <= rtol * scale:
            return Stationary(x=x_new, p=p_new, W=TW, delta=delta, iterations=it, residual=residual)
        W_new = _evaluate(problem, x_new, p_new)
        # policy iteration never lowers values; a tiny fall is rounding: stop there
        if float((W_new - W).max()) <= rtol * scale and it > 1:
            x_new, p_new, delta, TW = _improve(problem, W_new)
            return Stationary(x=x_new, p=p_new, W=W_new, delta=delta, iterations=it,
                              residual=float(np.abs(TW - W_new).max()))
        W = W_new
    raise NumericalError(f"policy iteration of the steady state did not settle in {max_iterations} steps "
                         f"(Bellman residual {residual:.3g}); check that discount > 0")
