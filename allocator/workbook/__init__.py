"""Excel workbooks: plans, frontiers, sweeps and comparisons out; scenarios out and back in.

* :mod:`.plan_book` -- ``plan.xlsx`` (Summary, Plan, By task, By segment, Binding rules, Frontier),
  ``frontier.xlsx``, ``sweep.xlsx`` and ``compare.xlsx``;
* :mod:`.period_book` -- ``plan.xlsx`` of a multi-period plan (Summary, Plan, By period, Budget rows, Flows);
* :mod:`.scenario_book` -- ``allocator template SCENARIO --xlsx`` and reading such a workbook back
  through the scenario validation, with errors naming sheet, row and column;
* :mod:`.sheets` -- how a table is written: header, number formats, filter, frozen header, widths.

openpyxl is imported here, not by the core: ``import allocator`` stays light.
"""

from .plan_book import comparison_workbook, frontier_workbook, plan_workbook, scenario_hash, sweep_workbook
from .period_book import period_plan_workbook
from .scenario_book import read_scenario_workbook, scenario_workbook, workbook_mapping

__all__ = ["comparison_workbook", "frontier_workbook", "period_plan_workbook", "plan_workbook",
           "read_scenario_workbook", "scenario_hash", "scenario_workbook", "sweep_workbook", "workbook_mapping"]
