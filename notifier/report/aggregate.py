"""From delivery-log records to the daily report: one pure function, no I/O, no clock.

Definitions (the report repeats them for its reader):

- *delivery time*: end-to-end, from the payload accepted to the notification delivered
  (``at - received_at`` of delivered records), so queueing, retries and backoff count;
- *peak throughput*: the most notifications delivered in any sliding 60 s window, per
  second (the seed's throughput definition);
- *error rate*: failed attempts (retried or dead-lettered) / all attempts; notifications
  folded into a storm digest (``digested``) are no attempt: they are told by the
  digest, whose own delivery counts;
- *availability*: the share of the period's minutes that were healthy. A minute is
  unhealthy when a notification was dead-lettered in it, or when some channel attempted
  deliveries in it and every one failed. The log records deliveries, not uptime: a
  minute without traffic counts as healthy, and a stopped process shows only through
  the deliveries it delays; Prometheus' ``up`` measures process uptime.

A KPI that must stay below its target is *met* below it, *near* up to twice it (its
budget overspent at most twofold) and *missed* beyond; availability is judged the same
way by its unavailability against the budget ``1 - target``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

from notifier.metrics import SEVERITIES
from notifier.report.model import (
    ChannelFailures,
    Kpi,
    LatencyBucket,
    Report,
    ReportTargets,
    SeverityCount,
    Status,
    Unit,
)
from notifier.stats import mean, peak_window_count, percentile
from notifier.store.base import DeliveryRecord

PEAK_WINDOW = 60.0
TOP_CHANNELS = 5
CHART_POINTS = 48  # the latency chart has at most this many buckets
_BUCKET_SIZES = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800)


def aggregate(
    records: Sequence[DeliveryRecord],
    *,
    since: float,
    now: float,
    targets: ReportTargets,
    truncated: bool = False,
) -> Report:
    """The report over the records whose attempt ended within ``[since, now]``."""
    if now <= since:
        raise ValueError("the report period must end after it starts")
    period = [r for r in records if since <= r.at <= now and r.outcome != "digested"]
    delivered = [r for r in period if r.outcome == "delivered"]
    latencies = [max(0.0, r.at - r.received_at) for r in delivered]
    failed = len(period) - len(delivered)
    peak, peak_at = peak_window_count((r.at for r in delivered), PEAK_WINDOW)
    down, minutes = _down_minutes(period, since, now)
    kpis = (
        _below(
            "delivery_avg",
            "Average delivery time",
            mean(latencies),
            targets.delivery_avg_seconds,
            "seconds",
        ),
        _below(
            "delivery_p95",
            "P95 delivery time",
            percentile(latencies, 95),
            targets.delivery_p95_seconds,
            "seconds",
        ),
        _throughput(peak / PEAK_WINDOW if delivered else None, targets.peak_throughput_per_second),
        _below(
            "error_rate",
            "Error rate",
            failed / len(period) if period else None,
            targets.error_rate,
            "ratio",
        ),
        _availability(1 - down / minutes, targets.availability),
    )
    return Report(
        since=since,
        now=now,
        oldest_record_at=min((r.at for r in period), default=None),
        truncated=truncated,
        attempts=len(period),
        delivered=len(delivered),
        retried=sum(1 for r in period if r.outcome == "retry"),
        dead=sum(1 for r in period if r.outcome == "dead"),
        kpis=kpis,
        peak_at=peak_at,
        down_minutes=down,
        period_minutes=minutes,
        severities=_severities(delivered),
        failing_channels=_failing_channels(period),
        latency=_latency_buckets(delivered, since, now),
        targets=targets,
    )


def _judge_below(value: float | None, target: float) -> Status:
    if value is None:
        return Status.NO_DATA
    if value < target:
        return Status.MET
    return Status.NEAR if value < 2 * target else Status.MISSED


def _below(key: str, name: str, value: float | None, target: float, unit: Unit) -> Kpi:
    return Kpi(key, name, value, target, "<", unit, _judge_below(value, target))


def _availability(value: float, target: float) -> Kpi:
    status = Status.MET if value >= target else _judge_below(1 - value, 1 - target)
    return Kpi("availability", "Availability", value, target, ">", "ratio", status)


def _throughput(value: float | None, target: float) -> Kpi:
    """Never *missed*: the log shows how much was asked for, not what notifier could do."""
    status = Status.NO_DATA if value is None else Status.MET if value >= target else Status.NEAR
    return Kpi("peak_throughput", "Peak throughput", value, target, ">", "per_second", status)


def _down_minutes(period: Sequence[DeliveryRecord], since: float, now: float) -> tuple[int, int]:
    """``(unhealthy minutes, minutes in the period)``; see the module docstring."""
    minutes = max(1, math.ceil((now - since) / 60))
    down: set[int] = set()
    channel_ok: dict[tuple[int, str], bool] = {}
    for record in period:
        minute = min(int((record.at - since) // 60), minutes - 1)
        if record.outcome == "dead":
            down.add(minute)
        key = (minute, record.channel)
        channel_ok[key] = channel_ok.get(key, False) or record.outcome == "delivered"
    down.update(minute for (minute, _), ok in channel_ok.items() if not ok)
    return len(down), minutes


def _severities(delivered: Sequence[DeliveryRecord]) -> tuple[SeverityCount, ...]:
    """Known severities first (always listed), then any other value seen, by name."""
    notifications: Counter[str] = Counter()
    alerts: Counter[str] = Counter()
    for record in delivered:
        notifications[record.severity] += 1
        alerts[record.severity] += record.alerts
    known = [s for s in SEVERITIES if s != "none"]
    names = known + sorted(set(notifications) - set(known))
    return tuple(SeverityCount(name, notifications[name], alerts[name]) for name in names)


def _failing_channels(period: Sequence[DeliveryRecord]) -> tuple[ChannelFailures, ...]:
    """Channels with failed attempts: most dead letters, then most failures, first."""
    by_channel: defaultdict[str, list[DeliveryRecord]] = defaultdict(list)
    for record in period:
        by_channel[record.channel].append(record)
    failing = []
    for channel, records in by_channel.items():
        failures = [r for r in records if r.outcome != "delivered"]
        if not failures:
            continue
        reasons = Counter(r.reason or "other" for r in failures)
        newest = max(failures, key=lambda r: r.at)
        failing.append(
            ChannelFailures(
                channel=channel,
                channel_type=records[0].channel_type,
                attempts=len(records),
                failed=len(failures),
                dead=sum(1 for r in failures if r.outcome == "dead"),
                reasons=tuple(sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
                last_error=newest.error,
            )
        )
    failing.sort(key=lambda c: (-c.dead, -c.failed, c.channel))
    return tuple(failing[:TOP_CHANNELS])


def _latency_buckets(
    delivered: Sequence[DeliveryRecord], since: float, now: float
) -> tuple[LatencyBucket, ...]:
    """P95 delivery time per bucket; the bucket is the first round size giving few enough."""
    length = now - since
    size = next((s for s in _BUCKET_SIZES if length / s <= CHART_POINTS), _BUCKET_SIZES[-1])
    count = max(1, math.ceil(length / size))
    latencies: list[list[float]] = [[] for _ in range(count)]
    for record in delivered:
        index = min(int((record.at - since) // size), count - 1)
        latencies[index].append(max(0.0, record.at - record.received_at))
    return tuple(
        LatencyBucket(
            start=since + i * size,
            end=min(since + (i + 1) * size, now),
            delivered=len(values),
            p95=percentile(values, 95),
        )
        for i, values in enumerate(latencies)
    )
