"""Response-curve families, registered by name.

Adding a family means one new module with a :class:`CurveFamily` subclass and
one line in ``FAMILIES`` below.
"""

from __future__ import annotations

from .base import CurveFamily, Param
from .exponential import Exponential
from .hill import Hill
from .logistic_quadratic import LogisticQuadratic
from .piecewise import Piecewise

FAMILIES: dict[str, CurveFamily] = {f.name: f for f in (Exponential(), Hill(), Piecewise(), LogisticQuadratic())}


def get_family(name: str) -> CurveFamily:
    """Return the registered family called ``name``.

    Raises
    ------
    KeyError
        With the list of known families, when ``name`` is not registered.
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown curve family '{name}'; known: {', '.join(sorted(FAMILIES))}") from None


def register(family: CurveFamily) -> None:
    """Register a family under ``family.name`` (used by plug-ins and calibration)."""
    FAMILIES[family.name] = family


__all__ = ["CurveFamily", "Param", "FAMILIES", "get_family", "register"]
