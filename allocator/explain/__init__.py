"""The one explanation layer of every plan: prices of what binds, required returns, sentences.

* :mod:`.prices` -- the multipliers (:class:`Prices`), cell classes and marginal returns;
* :mod:`.decompose` -- each cell's required return from the prices, and its verification;
* :mod:`.words` -- every sentence a plan prints, read off the decomposition.

The optimality check (:mod:`allocator.optimality`) estimates the prices from the plan's true
marginal returns and verifies the decomposition; plans, reports and shadow-price tables read
the same object.
"""

from .decompose import Decomposition, binding_things, decompose, required_returns
from .prices import (BOUND_LOCKED, BOUND_LOWER, BOUND_NONE, BOUND_OFF, BOUND_UPPER, BOUND_ZERO, Prices,
                     classify_bounds, classify_cells)
from .words import binding_rules, cell_reason, explanation_columns, formula, headline, reasons

__all__ = ["BOUND_LOCKED", "BOUND_LOWER", "BOUND_NONE", "BOUND_OFF", "BOUND_UPPER", "BOUND_ZERO", "Decomposition",
           "Prices", "binding_rules", "binding_things", "cell_reason", "classify_bounds", "classify_cells",
           "decompose", "explanation_columns", "formula", "headline", "reasons", "required_returns"]
