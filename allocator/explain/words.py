"""Sentences of a plan, generated from its one decomposition (:mod:`allocator.explain.decompose`).

Nothing here computes a price: every number in a sentence is read off the
:class:`~allocator.explain.decompose.Decomposition`, so the words cannot disagree
with the check that verified it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..problem import CompiledProblem
from .decompose import CellEfficiencyTerms, CellTerms, Decomposition
from .patterns import as_categorical, combine, exact_keys, g4_keys, pattern_codes
from .prices import BOUND_LOCKED, BOUND_LOWER, BOUND_NONE, BOUND_OFF, BOUND_UPPER, BOUND_ZERO, activation_floor


def _n(x: float) -> str:
    return f"{x:.4g}"


def _money(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.4g}"


def base_label(problem: CompiledProblem, d: Decomposition) -> str:
    """The objective's own rate as it starts every formula."""
    kind = problem.objective.kind
    if kind == "hurdle":
        return f"{_n(d.prices.base)} (hurdle)"
    if kind == "target":
        return f"{_n(d.prices.base)} (target)"
    return "1"


def formula(problem: CompiledProblem, d: Decomposition, i: int) -> str:
    """``required = base + coef x price (rule) ...``, divided by the efficiency factor where one acts."""
    return _formula_text(base_label(problem, d), d.terms[i], d.efficiency_terms[i])


def _formula_text(base: str, terms: list, efficiency_terms: list) -> str:
    """:func:`formula` from the base label and one cell's terms (``d.terms[i]``, ``d.efficiency_terms[i]``)."""
    parts = [base]
    for name, coef, y in terms:
        amount = coef * y
        if abs(amount) < 1e-12:
            continue
        sign = "+" if amount > 0 else "-"
        parts.append(f"{sign} {_n(abs(y))} ({name})" if abs(abs(coef) - 1.0) < 1e-12
                     else f"{sign} {_n(abs(coef))} x {_n(abs(y))} ({name})")
    eff = [t for t in efficiency_terms if abs(t[1]) > 1e-12]
    for name, mu, b, _ in eff:
        parts.append(f"+ {_n(mu)} x {_n(b)} ({name})")
    text = " ".join(parts)
    if eff:
        den = " ".join(f"+ {_n(mu)} x {_n(a)} ({name})" for name, mu, _, a in eff)
        text = f"({text}) / (1 {den})"
    return text


def cell_reason(problem: CompiledProblem, d: Decomposition, spend: np.ndarray, i: int, currency: str,
                floor: np.ndarray | None = None, formula_text: str | None = None) -> str:
    """One sentence on why cell ``i`` sits where it does, with its required return's decomposition.

    ``formula_text`` is ``formula(problem, d, i)`` when the caller has it already.
    """
    floor = activation_floor(problem) if floor is None else floor
    f = formula(problem, d, i) if formula_text is None else formula_text
    return _reason(problem, d, i, currency, f, d.bound[i], d.required[i], d.right[i], d.left[i], floor[i],
                   spend[i], problem.lower[i], problem.upper[i], d.cell_price[i])


def _reason(problem: CompiledProblem, d: Decomposition, i: int, currency: str, f: str, b: str, req: float,
            right: float, left: float, floor: float, spend: float, lower: float, upper: float,
            price: float) -> str:
    """:func:`cell_reason` from cell ``i``'s numbers, read by the caller (numpy scalars or the same
    numbers as Python floats: the arithmetic and the printed text are the same)."""
    step = "whole unit" if d.unit_steps else "unit"
    cur = currency or "unit"
    if problem.objective.kind == "target":
        # under a target, returns are in the target's metric per currency unit
        step = f"{step} ({problem.objective.metric} per {cur})"
    if b == BOUND_NONE:
        if floor > 0 and spend <= floor * (1 + 1e-9):
            return (f"held at its minimum-if-active spend {_money(floor)}: the next {step} returns "
                    f"{_n(right)} <= required {_n(req)} = {f}")
        if d.unit_steps:
            return (f"interior (whole units): the next unit returns {_n(right)} and the last "
                    f"{_n(left)}; required {_n(req)} = {f}")
        return f"interior: returns {_n(0.5 * (right + left))} = required {f}"
    if b == BOUND_ZERO:
        return f"priced out: the first {step} returns {_n(right)} <= required {_n(req)} = {f}"
    if b == BOUND_LOWER:
        return (f"held at min_spend {_money(lower)}: the next {step} returns {_n(right)} <= "
                f"required {_n(req)} = {f}; lowering min_spend by 1 {cur} would gain {_n(price)}")
    if b == BOUND_UPPER:
        return (f"at its cap {_money(upper)}: the last {step} returns {_n(left)} >= "
                f"required {_n(req)} = {f}; raising the cap by 1 {cur} would gain {_n(price)}")
    if b == BOUND_LOCKED:
        where = "raising" if price >= 0 else "lowering"
        return (f"locked at {_money(spend)}: returns {_n(right)} against required {_n(req)} = {f}; "
                f"the lock is worth {_n(abs(price))} per {cur} ({where} it would gain that)")
    if b == BOUND_OFF:
        act = problem.activation_cost[i] if problem.activation_cost is not None else 0.0
        best = ""
        if d.off_net is not None and np.isfinite(d.off_net[i]):
            gain = d.off_net[i]
            best = (f"; at required {_n(req)} its best running spend {_money(d.off_spend[i])} would add "
                    f"{_money(gain)}" + ("" if gain <= 0 else
                                         " to first order, less than making room for it costs (an integer "
                                         "choice, certified by the optimality gap)"))
        return f"off: running needs at least {_money(floor)} and an activation cost of {_money(act)}{best}"
    return ""


def reasons(problem: CompiledProblem, d: Decomposition, spend: np.ndarray, categorical: bool = False,
            terms_per_cell: tuple[list, list] | None = None):
    """:func:`cell_reason` for every cell, written once per distinct sentence (see :mod:`.patterns`).

    An object array, or with ``categorical`` a ``pandas.Categorical`` (codes and distinct sentences).
    ``terms_per_cell`` is ``_terms_per_cell(d, problem.n)`` when the caller has it already.
    """
    cur = problem.currency or ""
    floor = activation_floor(problem)
    s = np.asarray(spend, float)
    formula_key = None if problem.n <= PER_CELL_MAX else _formula_keys(problem, d)
    if formula_key is None:
        terms, eff = terms_per_cell or _terms_per_cell(d, problem.n)
        base = base_label(problem, d)
        # equal terms write equal formulas: one text per distinct terms (a formula cost more than its sentence)
        by_terms: dict[tuple, str] = {}
        by_list: dict[int, str] = {}  # (the lists live in ``terms`` all along: their ids stay theirs)
        texts = []
        # every cell's numbers read at once as Python floats (the same numbers; an element of an array
        # costs more to read than to print)
        numbers = zip(range(problem.n), d.bound.tolist(), d.required.tolist(), d.right.tolist(), d.left.tolist(),
                      np.asarray(floor, float).tolist(), s.tolist(), problem.lower.tolist(), problem.upper.tolist(),
                      d.cell_price.tolist())
        for i, *values in numbers:
            if eff[i]:
                # an efficiency term's numbers may be signed zeros, which a dict key would not tell apart
                text = _formula_text(base, terms[i], eff[i])
            else:
                # cells sharing one list of terms (see _terms_per_cell) find its formula by the list
                text = by_list.get(id(terms[i]))
                if text is None:
                    key = tuple(terms[i])
                    text = by_terms.get(key)
                    if text is None:
                        text = by_terms[key] = _formula_text(base, terms[i], eff[i])
                    by_list[id(terms[i])] = text
            texts.append(_reason(problem, d, i, cur, text, *values))
        out = np.array(texts, dtype=object)
        return pd.Categorical(out) if categorical else out
    formulas: dict[int, str] = {}  # equal formula keys write equal formulas: one text per key

    def write(i: int) -> str:
        k = int(formula_key[i])
        if k not in formulas:
            formulas[k] = formula(problem, d, i)
        return cell_reason(problem, d, s, i, cur, floor, formulas[k])

    codes, texts = pattern_codes(_reason_keys(problem, d, s, floor, formula_key), write)
    return as_categorical(codes, texts) if categorical else texts[codes]


def _reason_keys(problem: CompiledProblem, d: Decomposition, s: np.ndarray, floor: np.ndarray,
                 formula_key: np.ndarray) -> np.ndarray:
    """Per cell, a code equal for two cells only when :func:`cell_reason` writes the same sentence.

    Each class of cell reads its own numbers (as printed); locked, switched-off and unknown
    classes are keyed per cell (they are few, and their sentences carry more numbers).
    """
    n = problem.n
    is_ = d.is_bound
    none = is_(BOUND_NONE)
    at_floor = none & (floor > 0) & (s <= floor * (1 + 1e-9))
    interior = none & ~at_floor
    zero, lower, upper = is_(BOUND_ZERO), is_(BOUND_LOWER), is_(BOUND_UPPER)
    cls = np.select([at_floor, interior, zero, lower, upper], [1, 2, 3, 4, 5], 0)
    on_right = at_floor | zero | lower | (interior & d.unit_steps)
    mid = interior & ~d.unit_steps
    def on(keys, x: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        # a field's key on the cells whose sentence prints it (0 elsewhere; real keys are > 0)
        out = np.zeros(n, np.int64) if out is None else out
        if mask.any():
            out[mask] = keys(x[mask]) + 1
        return out

    money = on(exact_keys, floor, at_floor)
    money = on(exact_keys, problem.lower, lower, money)
    money = on(exact_keys, problem.upper, upper, money)
    first = on(g4_keys, d.right, on_right)
    first = on(g4_keys, d.left, upper, first)
    first = on(g4_keys, 0.5 * (d.right + d.left), mid, first)
    second = on(g4_keys, d.left, interior & d.unit_steps)
    req = on(g4_keys, d.required, cls > 0)
    price = on(g4_keys, d.cell_price, lower | upper)
    formula = np.where(cls > 0, formula_key, 0)
    own = np.where(cls == 0, np.arange(1, n + 1), 0)
    return combine(cls, money, first, second, req, price, formula, own)


def _formula_keys(problem: CompiledProblem, d: Decomposition) -> np.ndarray | None:
    """Per cell, a code equal for two cells only when :func:`formula` writes the same text (None: unknown)."""
    terms, eff = d.terms, d.efficiency_terms
    if not (isinstance(terms, CellTerms) and isinstance(eff, CellEfficiencyTerms)):
        return None
    keys = []
    for j in range(terms.A.shape[1]):
        coef = terms.A[:, j]
        amount = coef * terms.y[j]
        present = (coef != 0) & ~(np.abs(amount) < 1e-12)
        if not present.any():
            continue
        one = np.abs(np.abs(coef) - 1.0) < 1e-12
        shown = np.where(one, 0, 1 + g4_keys(np.abs(coef)))
        keys.append(np.where(present, 1 + (amount > 0) + 2 * shown, 0))
    for (_, mu, _, index, alpha) in eff.rules:
        if abs(float(mu)) > 1e-12:
            k = np.zeros(problem.n, np.int64)
            k[index] = 1 + g4_keys(alpha)
            keys.append(k)
    return combine(*keys) if keys else np.zeros(problem.n, np.int64)


PER_CELL_MAX = 256
"""Up to this many cells, sentences are written cell by cell: the same text, and faster than keying."""

_CELL_KINDS = ("lock", "min_spend", "max_spend", "min_active", "activation")


def explanation_columns(problem: CompiledProblem, d: Decomposition, spend: np.ndarray,
                        binding_things: list[dict], categorical: bool = False) -> dict[str, Any]:
    """The plan table's ``required_return``, ``binding_rules`` and ``reason`` columns, for every route.

    ``plan.csv`` from a scenario file and the table route (``cells: PATH``) both take these three
    columns from here, so a table plan explains its cells in the same words as the YAML plan.
    With ``categorical`` the two text columns are ``pandas.Categorical`` (codes and distinct texts,
    for dictionary-encoded files); else object arrays.
    """
    # both columns of a small plan read every cell's terms: read once
    per_cell = _terms_per_cell(d, problem.n) if problem.n <= PER_CELL_MAX else None
    return {"required_return": d.required_value(),
            "binding_rules": binding_rules(d, binding_things, problem, categorical, per_cell),
            "reason": reasons(problem, d, spend, categorical, per_cell)}


def binding_rules(d: Decomposition, binding_things: list[dict], problem: CompiledProblem,
                  categorical: bool = False, terms_per_cell: tuple[list, list] | None = None):
    """Per cell, the names of the priced rules acting on it (``;``-separated), locks and bounds included.

    ``terms_per_cell`` is ``_terms_per_cell(d, problem.n)`` when the caller has it already.
    """
    n = problem.n
    terms, eff = d.terms, d.efficiency_terms

    def names(i: int) -> str:
        return "; ".join(dict.fromkeys(d.names_on(i)))

    if n > PER_CELL_MAX and isinstance(terms, CellTerms) and isinstance(eff, CellEfficiencyTerms):
        # which priced rows and rules act on a cell decides its names: one string per distinct set
        keys = [terms.A[:, j] != 0 for j in range(terms.A.shape[1]) if float(terms.y[j]) != 0]
        for (_, mu, _, index, _) in eff.rules:
            if float(mu) != 0:
                k = np.zeros(n, bool)
                k[index] = True
                keys.append(k)
        codes, texts = pattern_codes(combine(*keys) if keys else np.zeros(n, np.int64), names)
    else:
        rows, effs = terms_per_cell or _terms_per_cell(d, n)
        # names_on(i) of every cell, from the terms read once; cells sharing one list of row terms (and no
        # efficiency terms) share its text
        by_row: dict[int, str] = {}
        written = []
        for r, e in zip(rows, effs):
            text = None if e else by_row.get(id(r))
            if text is None:
                text = "; ".join(dict.fromkeys([t[0] for t in r if t[2] != 0] + [t[0] for t in e if t[1] != 0]))
                if not e:
                    by_row[id(r)] = text
            written.append(text)
        codes, texts = np.arange(n), np.array(written + [""], dtype=object)[:-1]
    extra = _cell_things(binding_things, problem)
    if extra:
        # cells held by a lock, bound or floor also name it: their own texts, appended
        cells = list(extra)
        codes[cells] = len(texts) + np.arange(len(cells))
        texts = np.concatenate([texts, np.array(["; ".join(dict.fromkeys(list(d.names_on(i)) + extra[i]))
                                                 for i in cells] + [""], dtype=object)[:-1]])
    return as_categorical(codes, texts) if categorical else texts[codes]


def _terms_per_cell(d: Decomposition, n: int) -> tuple[list, list]:
    """``[d.terms[i] for i in range(n)]`` and the same of ``d.efficiency_terms``, the rows read at once.

    For the few cells written one by one (:data:`PER_CELL_MAX`): indexing :class:`CellTerms` cell by
    cell converts the prices again for each.
    """
    terms, eff = d.terms, d.efficiency_terms
    if isinstance(terms, CellTerms):
        y = terms.y.tolist()
        # equal rows of the matrix give equal terms (a nonzero coefficient equal to another is the same
        # number; zeros are left out): one list per distinct row, shared by its cells, which only read it
        seen: dict[tuple, list] = {}
        rows = []
        for row in terms.A.tolist():
            key = tuple(row)
            cell = seen.get(key)
            if cell is None:
                cell = seen[key] = [(name, a, p) for name, a, p in zip(terms.names, row, y) if a != 0]
            rows.append(cell)
    else:
        rows = [terms[i] for i in range(n)]
    if isinstance(eff, CellEfficiencyTerms) and not eff.rules:
        effs: list = [[] for _ in range(n)]
    else:
        effs = [eff[i] for i in range(n)]
    return rows, effs


def _cell_things(binding_things: list[dict], problem: CompiledProblem) -> dict[int, list[str]]:
    """Cell index -> names of the locks, bounds and floors holding it (the last cell of a (segment, task))."""
    sel = [t for t in binding_things if "segment" in t and t["kind"] in _CELL_KINDS]
    if not sel:
        return {}
    seg_codes, seg_names = pd.factorize(np.asarray(problem.segment, dtype=object), sort=False)
    task_codes, task_names = pd.factorize(np.asarray(problem.task, dtype=object), sort=False)
    pair_codes, pairs = pd.factorize(seg_codes.astype(np.int64) * (len(task_names) + 1) + task_codes, sort=False)
    last = np.full(len(pairs), -1, np.int64)
    np.maximum.at(last, pair_codes, np.arange(problem.n))
    ts = pd.Index(seg_names, dtype=object).get_indexer([t["segment"] for t in sel])
    tt = pd.Index(task_names, dtype=object).get_indexer([t["task"] for t in sel])
    found = pd.Index(pairs).get_indexer(ts.astype(np.int64) * (len(task_names) + 1) + tt)
    out: dict[int, list[str]] = {}
    for t, a, b, p in zip(sel, ts.tolist(), tt.tolist(), found.tolist()):
        if a >= 0 and b >= 0 and p >= 0:
            out.setdefault(int(last[p]), []).append(t["name"])
    return out


def headline(problem: CompiledProblem, d: Decomposition, summary) -> list[str]:
    """The lines under the totals that state what the plan's marginal returns must be, per objective."""
    cur = problem.currency or "unit"
    obj = problem.objective
    priced_rows = [k for k, v in d.prices.rows.items() if k != "budget.total"] + list(d.prices.efficiency)
    lines = []
    if obj.kind == "target":
        o = summary.objective
        rule = (o.get("rule") or "target").removeprefix("objective target: ")
        lines.append(f"target: {rule}; reached {o['reached']:,.6g} "
                     f"({'met' if o['reached'] >= o['target'] * (1 - 1e-9) else 'NOT met'}) at least spend "
                     f"{o['spend_plus_activation']:,.0f} {cur} (spend plus activation costs)")
        lam = d.prices.base
        unit, one = ("successes", "success") if obj.metric == "successes" else ("value", f"{cur} of value")
        cost = (1.0 / lam) if lam > 0 else float("inf")
        lines.append(f"every funded counted cell returns {_n(lam)} {unit} per {cur} (plus the prices of what "
                     f"binds on it): one more {one} costs about {cost:,.4g} {cur}")
    elif obj.kind == "hurdle":
        lines.append(f"hurdle rate {_n(obj.rate)}: every funded cell returns {_n(obj.rate)} per {cur}"
                     + (f" plus the budget's price {summary.budget_shadow_price:.6f}" if summary.budget_binds
                        else " (budget slack)")
                     + (" plus the prices of the rules acting on it" if priced_rows else ""))
    elif priced_rows:
        budget = (f"+ the budget's price {summary.budget_shadow_price:.6f} " if summary.budget_binds
                  else "(budget slack) ")
        lines.append(f"required returns differ by cell: 1 {budget}+ the prices of the rules acting on each cell "
                     f"(column `required`; `reason` in plan.csv and --explain show the sum)")
    else:
        lines.append(f"common marginal return {summary.marginal_return:.6f}"
                     + (f" (budget binds: shadow price {summary.budget_shadow_price:.6f} per {cur})"
                        if summary.budget_binds else " (budget slack: spend stops where a unit returns a unit)"))
    return lines
