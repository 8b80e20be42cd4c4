"""Exceptions raised by allocator.

One base class with a few subclasses, so callers can catch what they can act on:
a bad scenario (:class:`SpecError`, also a ``ValueError``), constraints that cannot
hold together (:class:`InfeasibleError`), a missing solver backend
(:class:`SolverUnavailableError`) and numerical trouble (:class:`NumericalError`).
"""

from __future__ import annotations

from dataclasses import dataclass


class AllocatorError(Exception):
    """Base class of every error allocator raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input.

    Parameters
    ----------
    field : str
        Dotted path of the offending field, e.g. ``curve.rate``.
    message : str
        The rule that was broken and the value that came in.
    cell : str or None
        ``"(segment, task)"`` when the problem belongs to one cell.
    """

    field: str
    message: str
    cell: str | None = None

    def __str__(self) -> str:
        where = f" of cell {self.cell}" if self.cell else ""
        return f"{self.field}{where}: {self.message}"


class SpecError(AllocatorError, ValueError):
    """The scenario, model or data file breaks a rule; lists every problem found."""

    def __init__(self, problems: list[Problem] | Problem | str, source: str | None = None):
        if isinstance(problems, str):
            problems = [Problem(field="", message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"invalid input in {clip(self.source, 300)}" if self.source else "invalid input"
        lines = [f"{head} ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}):"]
        for p in self.problems:
            text = str(p) if p.field else p.message
            lines.append(f"  - {clip(text)}")
        return "\n".join(lines)


MAX_PROBLEM_CHARS = 1000
"""Longest line of an error message: a message never echoes a large part of the input."""


def clip(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


class InfeasibleError(AllocatorError):
    """No plan satisfies all constraints; ``conflict`` names a set that cannot hold together."""

    def __init__(self, message: str, conflict: list[str] | None = None):
        self.conflict = list(conflict or [])
        text = message
        if self.conflict:
            text += "\n" + "\n".join(f"  - {c}" for c in self.conflict)
        super().__init__(text)


class SolverUnavailableError(AllocatorError):
    """The requested solver cannot handle this problem or is not installed."""


class NumericalError(AllocatorError):
    """A solver failed to reach the requested accuracy."""
