"""The limits on untrusted input (files and request bodies), and how messages quote that input.

:mod:`.reading` holds the limits as it parses; :mod:`.yaml_reading` while YAML is composed.
"""

from __future__ import annotations

from typing import Any

MAX_BYTES = 256 * 1024 * 1024
"""Largest input file read (a 44,000-cell scenario is about 10 MB, a 1,000,000-cell JSON one 150 MB)."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings (scenarios nest about 8 levels)."""
MAX_NODES = 5_000_000
"""Most values (scalars, lists, mappings) in one document, counted as written."""
MAX_ALIAS_EXPANSION = 200_000
"""Most values that YAML aliases (``*name``) may add beyond what is written."""
MAX_INT_DIGITS = 40
"""Longest integer accepted (Python refuses 4,300 digits with an unhelpful message)."""
EXCERPT = 60
"""Characters of input quoted in a message, at most."""


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    """``repr`` of a value, cut to ``limit`` characters (with a count of what was left out)."""
    if isinstance(value, (list, dict, tuple, set)) and len(value) > limit:
        return f"<{type(value).__name__} of {len(value):,} items>"
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def short(text: str, limit: int = 200) -> str:
    """``text`` as it is (no quotes), cut to ``limit`` characters: for paths and names in messages."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


class _Refused(Exception):
    """A limit broken while parsing: ``where`` is ``line L, column C`` or a dotted path."""

    def __init__(self, message: str, where: str = ""):
        super().__init__(message)
        self.message, self.where = message, where


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
