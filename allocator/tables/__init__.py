"""Cells as a table: a CSV or Parquet file (or a pandas DataFrame) compiled straight into arrays.

One row per cell. Columns are named as the YAML keys of a cell:

* ``segment``, ``task``, ``pool``, ``value`` (or the lifetime-value inputs ``clv_margin``,
  ``clv_retention``, ``clv_discount`` and optionally ``clv_horizon``, ``clv_timing``);
* ``family`` and the family's parameter names (``ceiling``, ``rate``, ``floor``,
  ``half_saturation``, ``shape``, ``b0``, ``b1``, ``b2``; a ``piecewise`` row gives ``points``
  as JSON text ``[[0, 0], [10, 0.1], ...]``); a parameter column is empty on rows of other families;
* optional ``min_spend``, ``max_spend``, ``current_spend``, ``min_active_spend``,
  ``activation_cost`` and ``tags`` (``a;b`` text or a list).

Budget, pots, rules and the objective stay in the scenario mapping. Validation is column-wise:
vectorized checks find the rows that break a rule, and the message of each such row comes from
the same rule code that checks a YAML cell (a one-cell scenario is validated), so both paths say
the same thing; the table path adds the row number and the column. The compiled
:class:`~allocator.problem.CompiledProblem` is the one :func:`allocator.compile.compile_scenario`
builds from the same cells (tests check plans are identical). Plans are written from arrays
(:func:`plan_columns`, :func:`write_plan_table`), never row by row.
"""

from __future__ import annotations

from .columns import (CLV_COLUMNS, MAX_LISTED, MONEY_COLUMNS, _Columns, cells_table_from_scenario, load_cells_table,
                      param_columns, random_cells_table, write_cells_table)
from .compile import _scenario_without_cells, compile_cells, compile_table
from .output import TablePlan, plan_columns, plan_from_table, plan_table_bytes, run_table_scenario, write_plan_table
from .validate import TableProblem, _validate, check_rows, validate_cells

__all__ = ["CLV_COLUMNS", "MONEY_COLUMNS", "TablePlan", "TableProblem", "cells_table_from_scenario", "check_rows",
           "compile_cells", "compile_table", "load_cells_table", "param_columns", "plan_columns", "plan_from_table",
           "random_cells_table", "run_table_scenario", "validate_cells", "write_cells_table", "write_plan_table"]
