"""What the daily report says, as plain immutable data, and the targets it is judged by.

Renderers (text, JSON, HTML) read these objects; only ``aggregate`` builds them. Times are
unix seconds, durations seconds, rates per second, shares ratios (0-1).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from notifier.report.incidents import IncidentSummary


@dataclass(frozen=True, slots=True)
class ReportTargets:
    """The KPI targets of the report (a ``report:`` config section may set them later).

    The seed's phase-1 targets (P95 < 200 ms, 500 TPS, 99.5 %, < 0.5 %) are for a trading
    API answering its own callers. A notification's delivery time is dominated by its
    peers (Slack, SMTP, Twilio) and by retry backoff, and its traffic by how often alerts
    fire, so the defaults keep the seed's availability and error-rate targets and set
    delivery times an on-call engineer would accept.
    """

    delivery_avg_seconds: float = 2.0
    delivery_p95_seconds: float = 5.0
    peak_throughput_per_second: float = 1.0
    error_rate: float = 0.005
    availability: float = 0.995


class Status(Enum):
    """A KPI's verdict against its target, with the mark the seed's report uses."""

    MET = "✅"
    NEAR = "⚠️"
    MISSED = "❌"
    NO_DATA = "➖"

    @property
    def mark(self) -> str:
        return self.value


Unit = Literal["seconds", "per_second", "ratio"]


@dataclass(frozen=True, slots=True)
class Kpi:
    key: str
    name: str
    value: float | None  # None when the period holds no data for it
    target: float
    comparison: Literal["<", ">"]  # the value must be below / above the target
    unit: Unit
    status: Status


@dataclass(frozen=True, slots=True)
class SeverityCount:
    severity: str
    notifications: int  # delivered notifications of this severity
    alerts: int  # alerts in them (an alert sent to three channels counts three times)


@dataclass(frozen=True, slots=True)
class ChannelFailures:
    channel: str
    channel_type: str
    attempts: int
    failed: int  # failed attempts, retried or dead-lettered
    dead: int  # notifications given up on
    reasons: tuple[tuple[str, int], ...]  # (reason, failed attempts), most frequent first
    last_error: str


@dataclass(frozen=True, slots=True)
class LatencyBucket:
    start: float
    end: float
    delivered: int
    p95: float | None  # end-to-end delivery time; None when nothing was delivered


@dataclass(frozen=True, slots=True)
class Report:
    since: float
    now: float
    oldest_record_at: float | None
    truncated: bool  # the read hit its limit: older records of the period were not seen
    attempts: int  # delivery-log records of the period: every attempt, whatever its outcome
    delivered: int
    retried: int
    dead: int
    # average and P95 delivery time, peak throughput, error rate, availability, in this order
    kpis: tuple[Kpi, ...]
    peak_at: float | None  # end of the busiest 60 s window
    down_minutes: int
    period_minutes: int
    severities: tuple[SeverityCount, ...]
    failing_channels: tuple[ChannelFailures, ...]
    latency: tuple[LatencyBucket, ...]
    targets: ReportTargets
    incidents: IncidentSummary | None = None  # read from the store's incidents, apart from the log
