"""The seed's daily performance report, computed from the store's delivery log.

``build_report`` reads the log for the period and hands it to the pure ``aggregate``
(``notifier.report.aggregate`` documents every definition); ``render_text``,
``render_json`` and ``render_html`` present the result; ``run_report`` is the whole
``notifier report`` command minus its command line. Nothing here writes to the store.
"""

from __future__ import annotations

from dataclasses import replace

from notifier.report.aggregate import aggregate
from notifier.report.html import render_html
from notifier.report.incidents import summarise_incidents
from notifier.report.model import Report, ReportTargets, Status
from notifier.report.text import render_json, render_text
from notifier.store.base import Store

__all__ = [
    "FORMATS",
    "Report",
    "ReportTargets",
    "Status",
    "aggregate",
    "build_report",
    "render_html",
    "render_json",
    "render_text",
    "run_report",
]

READ_LIMIT = 1_000_000  # records; the log itself is bounded (storage.delivery_log_size)
FORMATS = {"text": render_text, "json": render_json, "html": render_html}


async def build_report(
    store: Store,
    *,
    since: float,
    now: float,
    targets: ReportTargets,
    limit: int = READ_LIMIT,
) -> Report:
    """The report over the attempts that ended in ``[since, now]``."""
    records = await store.deliveries(limit=limit, since=since)
    report = aggregate(
        records, since=since, now=now, targets=targets, truncated=len(records) >= limit
    )
    incidents = await store.list_incidents(limit=limit)
    return replace(report, incidents=summarise_incidents(incidents, since=since, now=now))


async def run_report(
    store: Store,
    since_seconds: float,
    fmt: str,
    now: float,
    targets: ReportTargets | None = None,
) -> str:
    """The report over the last ``since_seconds`` before ``now``, rendered as ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
    report = await build_report(
        store, since=now - since_seconds, now=now, targets=targets or ReportTargets()
    )
    return FORMATS[fmt](report)
