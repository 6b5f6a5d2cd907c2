"""Every Prometheus metric the service exports, defined in one place on one registry.

Named the way Alertmanager names its own (``notifier_notifications_total{channel,type}``)
so dashboards and habits carry over. Every labelled series is created at zero by
``Metrics.declare_channels`` so rates and alerts work from the first scrape.
No label ever holds a secret: channels are named by their config name and type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from notifier import __version__
from notifier.channels.base import FailureReason

M = TypeVar("M", Counter, Histogram)

REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
SEVERITIES = ("critical", "warning", "info", "none")
REQUEST_STATUSES = ("202", "400", "401", "413", "415", "422", "503")
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}
ACK_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)
INCIDENT_STATES = ("open", "acknowledged", "silenced")
ACK_PATHS = ("slack", "sms", "api", "console")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # CPU and memory for the seed's rules (process_* series).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.build_info = Info("notifier_build", "Version of notifier.", registry=r)
        self.build_info.info({"version": __version__})
        self.requests = Counter(
            "notifier_http_requests_total",
            "Webhook requests received, by response status code.",
            ["code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "notifier_http_request_duration_seconds",
            "Time to answer a webhook request (validate, route, dedup, durable enqueue).",
            ["code"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.alerts_received = Counter(
            "notifier_alerts_received_total",
            "Alerts received in accepted payloads, by alert status and severity label.",
            ["status", "severity"],
            registry=r,
        )
        self.alerts_invalid = Counter(
            "notifier_alerts_invalid_total",
            "Payloads rejected as invalid (400/413/415/422).",
            registry=r,
        )
        self.notifications = Counter(
            "notifier_notifications_total",
            "Notifications delivered, by channel.",
            ["channel", "type"],
            registry=r,
        )
        self.notifications_failed = Counter(
            "notifier_notifications_failed_total",
            "Failed delivery attempts, by channel and reason.",
            ["channel", "type", "reason"],
            registry=r,
        )
        self.notification_latency = Histogram(
            "notifier_notification_latency_seconds",
            "End-to-end latency from payload accepted to notification delivered.",
            ["channel", "type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.attempt_duration = Histogram(
            "notifier_notification_attempt_duration_seconds",
            "Duration of one delivery attempt, by channel.",
            ["channel", "type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "notifier_notification_attempts_total",
            "Delivery attempts.",
            ["channel", "type"],
            registry=r,
        )
        self.retries = Counter(
            "notifier_notification_retries_total",
            "Attempts rescheduled for a retry.",
            ["channel", "type"],
            registry=r,
        )
        self.deduplicated = Counter(
            "notifier_notifications_deduplicated_total",
            "Notifications dropped by the notification log: nothing new for the channel.",
            registry=r,
        )
        self.dead_lettered = Counter(
            "notifier_dead_letters_total",
            "Notifications moved to the dead letters, by channel and reason.",
            ["channel", "type", "reason"],
            registry=r,
        )
        self.template_fallbacks = Counter(
            "notifier_template_fallbacks_total",
            "Renders that failed and used the built-in fallback template.",
            ["channel"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "notifier_queue_depth", "Jobs waiting (due or scheduled).", registry=r
        )
        self.queue_in_flight = Gauge(
            "notifier_queue_in_flight", "Jobs leased by a worker.", registry=r
        )
        self.queue_oldest_age = Gauge(
            "notifier_queue_oldest_due_age_seconds", "Age of the oldest due job.", registry=r
        )
        self.dead_letters = Gauge(
            "notifier_dead_letters_waiting", "Dead letters waiting for replay.", registry=r
        )
        self.circuit_state = Gauge(
            "notifier_circuit_breaker_state",
            "Circuit breaker per channel: 0 closed, 1 half-open, 2 open.",
            ["channel", "type"],
            registry=r,
        )
        self.rate_limit_utilisation = Gauge(
            "notifier_rate_limit_utilisation_ratio",
            "Share of the channel's rate limit used over the last minute (0-1).",
            ["channel", "type"],
            registry=r,
        )
        self.storm_mode = Gauge(
            "notifier_storm_mode",
            "Whether the channel is in storm mode, folding its backlog into digests (0/1).",
            ["channel", "type"],
            registry=r,
        )
        self.notifications_folded = Counter(
            "notifier_notifications_folded_total",
            "Notifications folded into a storm digest instead of being sent alone.",
            ["channel", "type"],
            registry=r,
        )
        self.config_reload_success = Gauge(
            "notifier_config_last_reload_successful",
            "Whether the last configuration reload succeeded.",
            registry=r,
        )
        self.config_reload_time = Gauge(
            "notifier_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            registry=r,
        )
        self.incidents_open = Gauge(
            "notifier_incidents_open",
            "Incidents not resolved yet (open, acknowledged or silenced), by state.",
            ["state"],
            registry=r,
        )
        self.incident_time_to_ack = Histogram(
            "notifier_incident_time_to_acknowledge_seconds",
            "From an incident's opening to its acknowledgement, by escalation policy.",
            ["policy"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.escalation_steps = Counter(
            "notifier_escalation_steps_total",
            "Escalation steps sent (each pages the step's channels), by policy and step.",
            ["policy", "step"],
            registry=r,
        )
        self.incidents_reached_last_step = Counter(
            "notifier_incidents_reached_last_step_total",
            "Incidents that escalated to their policy's last step: nobody acknowledged sooner.",
            ["policy"],
            registry=r,
        )
        self.incident_acknowledgements = Counter(
            "notifier_incident_acknowledgements_total",
            "Incidents acknowledged, by the path the acknowledgement came through.",
            ["path"],
            registry=r,
        )
        for state in INCIDENT_STATES:
            self.incidents_open.labels(state)
        for path in ACK_PATHS:
            self.incident_acknowledgements.labels(path)
        self.store_up = Gauge(
            "notifier_store_up", "Whether the store answered the last check.", registry=r
        )
        # The receiver's series, created at zero and kept: ``labels()`` takes a lock and
        # builds a key on every call, which showed in the request path's profile.
        self._requests: dict[tuple[str, ...], Counter] = {
            (code,): self.requests.labels(code) for code in REQUEST_STATUSES
        }
        self._request_duration: dict[tuple[str, ...], Histogram] = {
            (code,): self.request_duration.labels(code) for code in REQUEST_STATUSES
        }
        self._alerts_received: dict[tuple[str, ...], Counter] = {
            (status, severity): self.alerts_received.labels(status, severity)
            for severity in SEVERITIES
            for status in ("firing", "resolved")
        }

    def declare_channels(self, channels: Iterable[tuple[str, str]]) -> None:
        """Create every per-channel series at zero for ``(name, type)`` pairs."""
        for name, kind in channels:
            self.notifications.labels(name, kind)
            self.notification_latency.labels(name, kind)
            self.attempt_duration.labels(name, kind)
            self.attempts.labels(name, kind)
            self.retries.labels(name, kind)
            self.circuit_state.labels(name, kind).set(0)
            self.rate_limit_utilisation.labels(name, kind)
            self.template_fallbacks.labels(name)
            self.storm_mode.labels(name, kind)
            self.notifications_folded.labels(name, kind)
            for reason in FailureReason:
                self.notifications_failed.labels(name, kind, reason.value)
                self.dead_lettered.labels(name, kind, reason.value)

    def declare_policies(self, policies: Iterable[tuple[str, int]]) -> None:
        """Create the per-policy series at zero for ``(policy, number of steps)`` pairs."""
        for name, steps in policies:
            self.incident_time_to_ack.labels(name)
            self.incidents_reached_last_step.labels(name)
            for step in range(1, steps + 1):
                self.escalation_steps.labels(name, str(step))

    def severity_label(self, severity: str) -> str:
        """Bound the label's values: unknown severities count as ``none``."""
        return severity if severity in SEVERITIES else "none"

    def count_request(self, code: int, seconds: float) -> None:
        """One webhook request answered with ``code`` after ``seconds``."""
        label = str(code)
        _child(self._requests, self.requests, label).inc()
        _child(self._request_duration, self.request_duration, label).observe(seconds)

    def count_alerts(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Alerts received, as ``(status, severity label)`` pairs: one increment per pair
        seen (a plain dict: ``collections.Counter`` costs more for the usual few alerts)."""
        tally: dict[tuple[str, str], int] = {}
        for pair in pairs:
            tally[pair] = tally.get(pair, 0) + 1
        for (status, severity), n in tally.items():
            _child(self._alerts_received, self.alerts_received, status, severity).inc(n)


def _child(cache: dict[tuple[str, ...], M], metric: M, *labels: str) -> M:
    """The cached series of ``metric`` for ``labels``, created (and kept) on first use."""
    child = cache.get(labels)
    if child is None:
        child = cache[labels] = metric.labels(*labels)
    return child
