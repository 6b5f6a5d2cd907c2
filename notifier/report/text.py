"""The report as plain text for a terminal or an e-mail, and as JSON for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict

from notifier.report.format import (
    DEFINITIONS,
    format_period,
    format_target,
    format_value,
    incident_lines,
    kpi_note,
    log_summary,
    no_failures,
)
from notifier.report.model import Report


def render_text(report: Report) -> str:
    lines = [
        "notifier daily report",
        f"Period: {format_period(report.since, report.now)}",
        f"Delivery log: {log_summary(report)}",
        "",
        f"{'KPI':<24}{'Value':<12}{'Target':<12}Status",
    ]
    lines += [
        f"{kpi.name:<24}{format_value(kpi):<12}{format_target(kpi):<12}{kpi.status.mark}"
        + (f"  {note}" if (note := kpi_note(report, kpi)) else "")
        for kpi in report.kpis
    ]
    lines += ["", "Alerts by severity (in delivered notifications)"]
    lines += [
        f"  {s.severity:<10}{s.alerts:>7} alerts in {s.notifications} notifications"
        for s in report.severities
    ]
    lines += ["", "Top failing channels"]
    if not report.failing_channels:
        lines.append(f"  none: {no_failures(report)}")
    for channel in report.failing_channels:
        reasons = ", ".join(f"{reason} ×{count}" for reason, count in channel.reasons)
        lines.append(
            f"  {channel.channel} ({channel.channel_type}): {channel.failed} of "
            f"{channel.attempts} attempts failed, {channel.dead} dead-lettered; {reasons}"
        )
        lines.append(f"    last error: {channel.last_error}")
    if report.incidents is not None:
        lines += ["", "Incidents (opened in the period)"]
        lines += [f"  {line}" for line in incident_lines(report.incidents)]
    lines += ["", "Definitions"]
    lines += [f"  {term}: {meaning}" for term, meaning in DEFINITIONS]
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    data = {
        "period": {"since": report.since, "now": report.now},
        "log": {
            "attempts": report.attempts,
            "delivered": report.delivered,
            "retried": report.retried,
            "dead": report.dead,
            "oldest_record_at": report.oldest_record_at,
            "truncated": report.truncated,
        },
        "kpis": [
            {
                "key": kpi.key,
                "name": kpi.name,
                "value": kpi.value,
                "unit": kpi.unit,
                "target": kpi.target,
                "comparison": kpi.comparison,
                "status": kpi.status.name.lower(),
                "mark": kpi.status.mark,
            }
            for kpi in report.kpis
        ],
        "peak_at": report.peak_at,
        "availability": {
            "unhealthy_minutes": report.down_minutes,
            "period_minutes": report.period_minutes,
        },
        "alerts_by_severity": [
            {"severity": s.severity, "alerts": s.alerts, "notifications": s.notifications}
            for s in report.severities
        ],
        "failing_channels": [
            {
                "channel": c.channel,
                "type": c.channel_type,
                "attempts": c.attempts,
                "failed": c.failed,
                "dead": c.dead,
                "reasons": dict(c.reasons),
                "last_error": c.last_error,
            }
            for c in report.failing_channels
        ],
        "latency_p95_by_bucket": [
            {"start": b.start, "end": b.end, "delivered": b.delivered, "p95": b.p95}
            for b in report.latency
        ],
        "incidents": None if report.incidents is None else asdict(report.incidents),
        "definitions": dict(DEFINITIONS),
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
