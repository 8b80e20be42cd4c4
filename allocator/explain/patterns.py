"""Per-cell text built once per distinct pattern: the vectorized side of :mod:`.words`.

A plan of a million cells has a million sentences, but few distinct ones: interior cells of a
single budget all read ``interior: returns 1.275 = required 1 + 0.2751 (budget.total)``. Each
sentence is a function of a few numbers *as printed* (4 significant digits, whole currency
units) and of the rules acting on the cell. This module turns those inputs into integer keys,
with numpy and without formatting, such that two cells with equal keys print the same
sentence; the sentence is then written once per distinct key, by the same single-cell code
(:func:`.words.cell_reason`), and mapped back. Equal keys imply equal text by construction (a
key never merges two numbers that could print differently), so the result is the per-cell
loop's, character for character.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def exact_keys(x: np.ndarray) -> np.ndarray:
    """Codes equal exactly where the float64 bit patterns are equal (so ``-0.0`` and ``0.0`` differ)."""
    x = np.ascontiguousarray(x, dtype=float)
    return pd.factorize(x.view(np.int64), sort=False)[0]


_POW10 = 10.0 ** np.arange(-300, 300)
"""``_POW10[e + 297] == 10**(e - 3)`` for the exponents of :func:`g4_keys` (|e| < 291)."""


def g4_keys(x: np.ndarray) -> np.ndarray:
    """Codes such that equal codes print equal under ``f"{v:.4g}"``.

    A value whose scaled mantissa ``q = |v| / 10**(e-3)`` (in [1000, 10000)) is safely away from
    a rounding tie and from the decade's ends prints as ``round(q)`` digits at exponent ``e``,
    whatever its other digits; such values share the key of ``(sign, e, round(q))``. Every other
    value (near a tie or a decade, zero, tiny, huge, inf, nan) is keyed by its exact bits.
    """
    x = np.asarray(x, float)
    ax = np.abs(x)
    ok = np.isfinite(x) & (ax > 1e-290) & (ax < 1e290)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        e = np.floor(np.log10(np.where(ok, ax, 1.0)))
        # powers of ten from a table (an array power costs more than the rest); q's last bits do
        # not matter: values within 1e-6 of a tie or a decade are keyed exactly below
        q = np.where(ok, ax / _POW10[e.astype(np.int64) + 297], 0.0)
    frac = q - np.floor(q)
    # 1e-6 of a unit in the 4th digit is far beyond float64 error in q (about 1e-12 of it)
    safe = ok & (np.abs(frac - 0.5) > 1e-6) & (q > 1000.0 + 1e-6) & (q < 9999.5 - 1e-6)
    out = np.where(safe, (e + 400.0) * 20000.0 + np.rint(q) * 2.0 + (x < 0), 0.0).astype(np.int64)
    if not safe.all():
        out[~safe] = exact_keys(x[~safe]) + 20_000_000  # above every bucket key
    return out


def combine(*keys: np.ndarray) -> np.ndarray:
    """One compact code per distinct tuple of keys (cells x fields), in order of first appearance.

    Keys are non-negative integers. Fields are mixed in radix ``max + 1`` (injective) while the
    product stays inside int64, and compacted (factorized) only when it would not: a few hash
    passes over the cells instead of two per field. A constant field is skipped.
    """
    out, top = None, 0
    for k in keys:
        k = np.asarray(k, np.int64)
        if len(k) == 0:
            continue
        lo, hi = int(k.min()), int(k.max())
        if lo == hi:
            continue  # a field that does not vary tells no cells apart
        assert lo >= 0, "keys are non-negative"
        if out is None:
            out, top = k, hi
            continue
        if (top + 1) * (hi + 1) >= _LIMIT:
            out = pd.factorize(out, sort=False)[0].astype(np.int64)
            top = int(out.max(initial=0))
            if (top + 1) * (hi + 1) >= _LIMIT:
                k = pd.factorize(k, sort=False)[0].astype(np.int64)
                hi = int(k.max(initial=0))
        out = out * (hi + 1) + k
        top = top * (hi + 1) + hi
    if out is None:
        return np.zeros(len(keys[0]) if keys else 0, np.int64)
    return pd.factorize(out, sort=False)[0].astype(np.int64)


_LIMIT = 2**62


def pattern_codes(key: np.ndarray, write: Callable[[int], str]) -> tuple[np.ndarray, np.ndarray]:
    """``write(i)`` once per distinct ``key``, for its first cell: (code per cell, text per code)."""
    codes = pd.factorize(np.asarray(key), sort=False)[0].astype(np.int64)
    texts = np.empty(int(codes.max(initial=-1)) + 1, dtype=object)
    if len(codes):
        # codes count up in order of first appearance: a new pattern is a new running maximum
        first = np.flatnonzero(np.concatenate([[True], codes[1:] > np.maximum.accumulate(codes)[:-1]]))
        texts[:] = [write(i) for i in first.tolist()]
    return codes, texts


def by_pattern(key: np.ndarray, write: Callable[[int], str]) -> np.ndarray:
    """``write(i)`` for every cell, called once per distinct key: an object array (a key's cells share one str)."""
    codes, texts = pattern_codes(key, write)
    return texts[codes]


def as_categorical(codes: np.ndarray, texts: np.ndarray) -> pd.Categorical:
    """Cells' texts as a ``pandas.Categorical`` (two keys may write the same text: merged here)."""
    inverse, categories = pd.factorize(np.asarray(texts, dtype=object), sort=False)
    return pd.Categorical.from_codes(inverse[codes], categories=pd.Index(categories, dtype=object))


SMALL = 256
"""Up to this many cells, text is factorized with a Python dict: the same codes, without pandas' overhead."""


def factorize_text(values: np.ndarray) -> tuple[np.ndarray, list]:
    """``pandas.factorize(values, sort=False)`` of text: codes in order of first appearance, and the uniques.

    A short array of ``str`` is factorized with a dict (pandas' call costs tens of microseconds,
    the dict a few); anything else goes to pandas.
    """
    items = values.tolist() if len(values) <= SMALL else None
    if items is not None and all(type(v) is str for v in items):
        index: dict[str, int] = {}
        codes = np.array([index.setdefault(v, len(index)) for v in items], dtype=np.intp)
        return codes, list(index)
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), sort=False)
    return codes, uniques.tolist()


class LabelMasks:
    """``masks(label)`` -> ``labels == label``, from one factorization (object compares cost ~20 ns a cell
    each); ``label in masks`` says whether any cell has that label (a mask not worth making otherwise)."""

    __slots__ = ("codes", "where")

    def __init__(self, labels: np.ndarray):
        self.codes, names = factorize_text(np.asarray(labels, dtype=object))
        self.where = {name: k for k, name in enumerate(names)}

    def __call__(self, label: str) -> np.ndarray:
        k = self.where.get(label)
        return np.zeros(len(self.codes), bool) if k is None else self.codes == k

    def __contains__(self, label: str) -> bool:
        return label in self.where


def label_masks(labels: np.ndarray) -> LabelMasks:
    """``mask(label)`` -> ``labels == label``, from one factorization (see :class:`LabelMasks`)."""
    return LabelMasks(labels)
