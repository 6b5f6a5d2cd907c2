"""How the report's numbers and times read, shared by the text and HTML renderers."""

from __future__ import annotations

import time
from datetime import timedelta

from notifier.durations import format_duration
from notifier.report.incidents import IncidentSummary
from notifier.report.model import Kpi, Report, Unit

DEFINITIONS = (
    (
        "Delivery time",
        "end to end, from the payload accepted to the notification delivered "
        "(queueing, retries and backoff included).",
    ),
    ("Peak throughput", "the most notifications delivered in any sliding 60 s window, per second."),
    ("Error rate", "failed delivery attempts (retried or dead-lettered) / all attempts."),
    (
        "MTTA",
        "mean time from an incident's opening to its first acknowledgement, over the"
        " incidents opened in the period.",
    ),
    (
        "Availability",
        "the share of the period's minutes in which no notification was dead-lettered and "
        "no channel failed every attempt it made. Minutes without traffic count as healthy; "
        "process uptime is Prometheus' up metric.",
    ),
)


def format_quantity(value: float, unit: Unit) -> str:
    """``0.125`` s -> ``125 ms``, ``0.0015`` ratio -> ``0.15%``, ``2.5`` per second -> ``2.5/s``."""
    if unit == "seconds":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "ratio":
        return f"{value * 100:.2f}%"
    return f"{value:.3g}/s"


def format_value(kpi: Kpi) -> str:
    return "no data" if kpi.value is None else format_quantity(kpi.value, kpi.unit)


def format_target(kpi: Kpi) -> str:
    if kpi.unit == "seconds":
        amount = f"{kpi.target * 1000:g} ms" if kpi.target < 1 else f"{kpi.target:g} s"
    elif kpi.unit == "ratio":
        amount = f"{kpi.target * 100:g}%"
    else:
        amount = f"{kpi.target:g}/s"
    return f"{kpi.comparison} {amount}"


def format_time(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def format_period(since: float, now: float) -> str:
    length = format_duration(timedelta(seconds=round(now - since)))
    return f"{format_time(since)} → {format_time(now)} ({length})"


def log_summary(report: Report) -> str:
    text = (
        f"{report.attempts} delivery attempts: {report.delivered} delivered, "
        f"{report.retried} retried, {report.dead} dead-lettered"
    )
    if report.truncated and report.oldest_record_at is not None:
        text += f" (read limit reached: only records since {format_time(report.oldest_record_at)})"
    return text


def kpi_note(report: Report, kpi: Kpi) -> str:
    """The detail a KPI's value needs: when the peak was, how many minutes were unhealthy."""
    if kpi.key == "peak_throughput" and report.peak_at is not None:
        return f"busiest minute ended {format_time(report.peak_at)}"
    if kpi.key == "availability":
        return f"{report.down_minutes} of {report.period_minutes} minutes unhealthy"
    return ""


def no_failures(report: Report) -> str:
    """What to say when no channel failed: all attempts succeeded, or there were none."""
    if report.attempts == 0:
        return "no delivery was attempted in this period."
    return f"all {report.attempts} delivery attempts succeeded."


def incident_lines(summary: IncidentSummary) -> list[str]:
    """MTTA and the last-step count, as the text and HTML reports print them."""
    mtta = "-" if summary.mtta is None else format_duration(timedelta(seconds=round(summary.mtta)))
    return [
        f"opened {summary.opened}, acknowledged {summary.acknowledged}",
        f"MTTA (mean time to acknowledge): {mtta}",
        f"reached their last escalation step: {summary.reached_last_step}",
    ]
