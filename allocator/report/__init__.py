"""One-file HTML reports: a plan's headline, charts (plotly, its JavaScript inlined) and tables.

* :mod:`.charts` -- one function per chart, each a plotly figure carrying the plan's numbers;
* :mod:`.page` -- the page: headline, charts, tables; :func:`plan_report` returns the HTML text;
* :mod:`.periods` -- the report of a multi-period plan (by-period flows, spend and shadow price);
* :mod:`.compare` -- plans side by side (the table needs no plotly; its report does).

plotly (the ``report`` extra) is imported only when a report is drawn: ``import allocator`` and
``allocator compare`` without ``--html`` stay light.
"""

from __future__ import annotations


def require_plotly() -> None:
    """Raise a readable error, naming the extra to install, when plotly is missing."""
    try:
        import plotly  # noqa: F401
    except ImportError as exc:
        from ..errors import AllocatorError

        raise AllocatorError("HTML reports need plotly: pip install 'allocator[report]' (or pip install plotly)") \
            from exc


def plan_report(plan, scenario=None, meta=None, frontier="auto") -> str:
    """The one-file HTML report of ``plan``; see :func:`allocator.report.page.plan_report`."""
    require_plotly()
    from .page import plan_report as _plan_report

    return _plan_report(plan, scenario, meta, frontier)


def frontier_for(plan, points: int = 41):
    """The frontier around the plan's budget; see :func:`allocator.report.page.frontier_for`."""
    require_plotly()
    from .page import frontier_for as _frontier_for

    return _frontier_for(plan, points)


def frontier_report(frontier, currency=None, budget=None) -> str:
    """One-file HTML report of a budget frontier; see :func:`allocator.report.page.frontier_report`."""
    require_plotly()
    from .page import frontier_report as _frontier_report

    return _frontier_report(frontier, currency, budget)


def period_plan_report(plan, meta=None) -> str:
    """One-file HTML report of a multi-period plan; see :func:`allocator.report.periods.period_plan_report`."""
    require_plotly()
    from .periods import period_plan_report as _period_plan_report

    return _period_plan_report(plan, meta)


__all__ = ["frontier_for", "frontier_report", "period_plan_report", "plan_report", "require_plotly"]
