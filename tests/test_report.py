"""The daily report: the pure aggregation over tables of records, and the real store path."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from notifier.report import (
    ReportTargets,
    Status,
    aggregate,
    build_report,
    render_html,
    render_json,
    render_text,
    run_report,
)
from notifier.report.model import Report
from notifier.store.base import DeliveryRecord, Outcome
from notifier.store.memory import MemoryStore

SINCE = 1_715_600_000.0  # a minute boundary, so minute n is [SINCE + 60n, SINCE + 60n + 60)
HOUR = SINCE + 3600
TARGETS = ReportTargets()


def rec(
    at: float,
    *,
    latency: float = 0.5,
    outcome: Outcome = "delivered",
    channel: str = "alerts-slack",
    reason: str | None = None,
    severity: str = "warning",
    alerts: int = 1,
    error: str = "ok",
) -> DeliveryRecord:
    return DeliveryRecord(
        job_id=f"job-{at}-{channel}",
        channel=channel,
        channel_type=channel.split("-")[-1],
        outcome=outcome,
        reason=reason if outcome != "delivered" else None,
        error=error,
        latency=0.1,
        at=at,
        received_at=at - latency,
        severity=severity,
        status="firing",
        alerts=alerts,
    )


def kpi(report: Report, key: str) -> tuple[object, Status]:
    found = next(k for k in report.kpis if k.key == key)
    return found.value, found.status


def test_an_empty_log_has_no_data_but_full_availability() -> None:
    report = aggregate([], since=SINCE, now=HOUR, targets=TARGETS)
    assert kpi(report, "delivery_p95") == (None, Status.NO_DATA)
    assert kpi(report, "peak_throughput") == (None, Status.NO_DATA)
    assert kpi(report, "error_rate") == (None, Status.NO_DATA)
    assert kpi(report, "availability") == (1.0, Status.MET)
    assert [(s.severity, s.alerts) for s in report.severities] == [
        ("critical", 0),
        ("warning", 0),
        ("info", 0),
    ]
    assert report.failing_channels == ()
    assert "no notification was delivered" in render_html(report)


def test_delivery_time_is_end_to_end_average_and_p95() -> None:
    # 20 deliveries taking 0.1 s, 0.2 s, ... 2.0 s from acceptance to delivery.
    records = [rec(SINCE + 60 * i, latency=0.1 * (i + 1)) for i in range(20)]
    report = aggregate(records, since=SINCE, now=HOUR, targets=TARGETS)
    average, average_status = kpi(report, "delivery_avg")
    p95, p95_status = kpi(report, "delivery_p95")
    assert average == pytest.approx(1.05)
    assert p95 == pytest.approx(1.905)  # rank 19 * 0.95 = 18.05, between 1.9 s and 2.0 s
    assert (average_status, p95_status) == (Status.MET, Status.MET)
    slower = aggregate(
        records, since=SINCE, now=HOUR, targets=replace(TARGETS, delivery_p95_seconds=1.0)
    )
    assert kpi(slower, "delivery_p95")[1] == Status.NEAR
    assert (
        kpi(
            aggregate(
                records, since=SINCE, now=HOUR, targets=replace(TARGETS, delivery_p95_seconds=0.5)
            ),
            "delivery_p95",
        )[1]
        == Status.MISSED
    )


def test_peak_throughput_is_the_busiest_sliding_minute() -> None:
    spread = [rec(SINCE + 1200 + 100 * i) for i in range(20)]  # one every 100 s, after the burst
    burst = [rec(SINCE + 1000.5 + i) for i in range(90)]  # 90 in 90 s: at most 60 in a window
    report = aggregate(spread + burst, since=SINCE, now=HOUR, targets=TARGETS)
    assert kpi(report, "peak_throughput") == (pytest.approx(60 / 60), Status.MET)
    assert report.peak_at is not None and SINCE + 1000 < report.peak_at < SINCE + 1100
    quiet = aggregate(spread, since=SINCE, now=HOUR, targets=TARGETS)
    # Low traffic is little demand, not a failure: below the target is "near", never "missed".
    assert kpi(quiet, "peak_throughput") == (pytest.approx(1 / 60), Status.NEAR)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(0, Status.MET), (4, Status.MET), (8, Status.NEAR), (20, Status.MISSED)],
)
def test_error_rate_is_failed_attempts_over_all_attempts(failures: int, expected: Status) -> None:
    records = [
        rec(SINCE + i * 3, outcome="retry" if i < failures else "delivered", reason="timeout")
        for i in range(1000)
    ]
    report = aggregate(records, since=SINCE, now=HOUR, targets=TARGETS)
    assert kpi(report, "error_rate") == (pytest.approx(failures / 1000), expected)
    assert (report.attempts, report.delivered, report.retried) == (1000, 1000 - failures, failures)


def test_availability_counts_minutes_with_dead_letters_or_an_all_failing_channel() -> None:
    records = [
        rec(SINCE + 5 * 60 + 10, outcome="dead", reason="auth", channel="ops-email"),
        # minute 7: the SMS channel only fails -> unhealthy, though Slack delivers
        rec(SINCE + 7 * 60 + 1, outcome="retry", reason="server_error", channel="oncall-sms"),
        rec(SINCE + 7 * 60 + 30, outcome="retry", reason="server_error", channel="oncall-sms"),
        rec(SINCE + 7 * 60 + 40),
        # minute 9: a failure and a success on one channel -> healthy
        rec(SINCE + 9 * 60 + 1, outcome="retry", reason="timeout", channel="oncall-sms"),
        rec(SINCE + 9 * 60 + 50, channel="oncall-sms"),
    ]
    report = aggregate(records, since=SINCE, now=HOUR, targets=TARGETS)
    assert (report.down_minutes, report.period_minutes) == (2, 60)
    assert kpi(report, "availability") == (pytest.approx(58 / 60), Status.MISSED)
    one_bad_minute_a_day = aggregate(records[:1], since=SINCE, now=SINCE + 86400, targets=TARGETS)
    assert kpi(one_bad_minute_a_day, "availability") == (pytest.approx(1439 / 1440), Status.MET)


def test_alerts_by_severity_sum_the_alerts_of_delivered_notifications() -> None:
    records = [
        rec(SINCE + 1, severity="critical", alerts=3),
        rec(SINCE + 2, severity="critical", alerts=2),
        rec(SINCE + 3, severity="warning", alerts=4),
        rec(SINCE + 4, severity="page", alerts=1),
        rec(SINCE + 5, severity="info", alerts=9, outcome="dead", reason="auth"),
    ]
    report = aggregate(records, since=SINCE, now=HOUR, targets=TARGETS)
    counts = {s.severity: (s.alerts, s.notifications) for s in report.severities}
    assert counts == {"critical": (5, 2), "warning": (4, 1), "info": (0, 0), "page": (1, 1)}


def test_failing_channels_are_ranked_with_their_reasons() -> None:
    records = [
        *(
            rec(SINCE + i, outcome="retry", reason="server_error", channel="oncall-sms")
            for i in range(3)
        ),
        rec(
            SINCE + 10,
            outcome="retry",
            reason="timeout",
            channel="oncall-sms",
            error="timed out after 10s",
        ),
        rec(SINCE + 11, channel="oncall-sms"),
        rec(
            SINCE + 20,
            outcome="dead",
            reason="auth",
            channel="ops-email",
            error="535 bad credentials",
        ),
        rec(SINCE + 30, channel="alerts-slack"),
    ]
    report = aggregate(records, since=SINCE, now=HOUR, targets=TARGETS)
    email, sms = report.failing_channels
    assert (email.channel, email.failed, email.dead, email.reasons) == (
        "ops-email",
        1,
        1,
        (("auth", 1),),
    )
    assert (sms.channel, sms.attempts, sms.failed, sms.dead) == ("oncall-sms", 5, 4, 0)
    assert sms.reasons == (("server_error", 3), ("timeout", 1))
    assert sms.last_error == "timed out after 10s"


def test_records_outside_the_period_are_ignored() -> None:
    records = [rec(SINCE - 1, alerts=100), rec(SINCE + 10, alerts=1), rec(HOUR + 1, alerts=100)]
    report = aggregate(records, since=SINCE, now=HOUR, targets=TARGETS)
    assert report.delivered == 1
    assert sum(s.alerts for s in report.severities) == 1


def test_latency_chart_buckets_cover_a_day_in_half_hours() -> None:
    day = SINCE + 86400
    records = [rec(SINCE + 1800 * 3 + i, latency=1.0 + i) for i in range(5)]
    report = aggregate(records, since=SINCE, now=day, targets=TARGETS)
    assert len(report.latency) == 48
    assert report.latency[0].start == SINCE and report.latency[-1].end == day
    busy = report.latency[3]
    assert busy.delivered == 5
    assert busy.p95 == pytest.approx(4.8)
    assert report.latency[2].p95 is None


def test_renderers_show_values_targets_and_marks() -> None:
    records = [rec(SINCE + 60 * i, latency=0.2) for i in range(30)]
    records.append(
        rec(SINCE + 2000, outcome="dead", reason="auth", channel="ops-email", error="<b>535</b>")
    )
    report = aggregate(records, since=SINCE, now=HOUR, targets=TARGETS)

    text = render_text(report)
    assert re.search(r"P95 delivery time\s+200 ms\s+< 5 s\s+✅", text)
    assert re.search(r"Availability\s+98\.33%\s+> 99\.5%\s+❌", text)
    assert "ops-email (email): 1 of 1 attempts failed, 1 dead-lettered; auth ×1" in text

    data = json.loads(render_json(report))
    assert [k["key"] for k in data["kpis"]] == [
        "delivery_avg",
        "delivery_p95",
        "peak_throughput",
        "error_rate",
        "availability",
    ]
    assert data["kpis"][1]["value"] == pytest.approx(0.2)
    assert data["kpis"][4]["status"] == "missed"
    assert data["failing_channels"][0]["reasons"] == {"auth": 1}

    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 1 and "<polyline" in page and "target 5 s" in page
    assert "&lt;b&gt;535&lt;/b&gt;" in page and "<b>535</b>" not in page
    assert not re.search(r"""(src|href)=|@import|url\(""", page), "the page must be self-contained"
    assert page.count('class="card ') == 5


async def test_run_report_reads_the_store_delivery_log() -> None:
    store = MemoryStore()
    now = HOUR
    for i in range(10):
        await store.complete(rec(SINCE + 100 + i, severity="critical", alerts=2))
    await store.reschedule(
        rec(SINCE + 200, outcome="retry", reason="timeout", channel="oncall-sms"), now
    )
    await store.dead_letter(rec(SINCE + 300, outcome="dead", reason="auth", channel="ops-email"))
    await store.complete(rec(SINCE - 500, alerts=50))  # before the period

    data = json.loads(await run_report(store, 3600, "json", now))
    assert data["log"] == {
        "attempts": 12,
        "delivered": 10,
        "retried": 1,
        "dead": 1,
        "oldest_record_at": SINCE + 100,
        "truncated": False,
    }
    assert data["alerts_by_severity"][0] == {
        "severity": "critical",
        "alerts": 20,
        "notifications": 10,
    }
    assert data["kpis"][2]["value"] == pytest.approx(10 / 60)
    assert "<svg" in await run_report(store, 3600, "html", now)
    assert "notifier daily report" in await run_report(store, 3600, "text", now)
    with pytest.raises(ValueError, match="unknown report format"):
        await run_report(store, 3600, "pdf", now)

    limited = await build_report(store, since=SINCE, now=now, targets=TARGETS, limit=5)
    assert limited.truncated and limited.attempts == 5
    assert "read limit reached" in render_text(limited)


def test_notifications_folded_into_a_digest_are_neither_attempts_nor_failures() -> None:
    records = [rec(SINCE + 60 + i, outcome="digested", channel="ops-slack") for i in range(50)]
    records.append(rec(SINCE + 60 + 55, channel="ops-slack"))  # the digest itself
    report = aggregate(records, since=SINCE, now=HOUR, targets=TARGETS)
    assert (report.attempts, report.delivered) == (1, 1)
    assert kpi(report, "error_rate") == (0.0, Status.MET)
    assert report.failing_channels == ()
    assert report.down_minutes == 0
