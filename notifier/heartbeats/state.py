"""A heartbeat's state and its changes (DESIGN §11), pure: the clock is passed in.

A heartbeat is renewed by every firing alert its matchers take (Alertmanager's
``Watchdog``). It is *waiting* until the first renewal, *ok* after it, and *missed*
once ``due_at`` (the last renewal, or the arming, plus ``timeout``) has passed: its
channels hear that once, and once more when a renewal brings it back. The store keeps
the state and writes it with compare-and-set on ``version``, together with those
notifications, so with several replicas (or a timer handled twice) each is sent once.

This module builds values; it never reads a clock, the store or the config file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from notifier.durations import format_duration
from notifier.notification import Notification
from notifier.payload import Alert, Status
from notifier.routing import Matcher

HeartbeatStatus = Literal["waiting", "ok", "missed"]
# The route a heartbeat's notifications name (the webhook body and the log show it).
HEARTBEAT_ROUTE = "heartbeat"
ALERTNAME = "HeartbeatMissed"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One configured heartbeat: the alerts that renew it, how long it may stay silent,
    and who hears when it does."""

    name: str
    matchers: tuple[Matcher, ...]
    timeout: float  # seconds
    channels: tuple[str, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(matcher.matches(labels) for matcher in self.matchers)


@dataclass(frozen=True, slots=True)
class HeartbeatState:
    """What the store keeps of one heartbeat; every change bumps ``version``."""

    name: str
    version: int
    armed_at: float  # when a notifier first watched it
    due_at: float  # silent from here on, it is missed
    last_seen: float | None = None  # the last renewal; None until the first
    missed_since: float | None = None  # while missed: since when it has been silent

    @property
    def status(self) -> HeartbeatStatus:
        if self.missed_since is not None:
            return "missed"
        return "waiting" if self.last_seen is None else "ok"

    @property
    def silent_since(self) -> float:
        """The last renewal, or the arming where there was none."""
        return self.armed_at if self.last_seen is None else self.last_seen


def armed(heartbeat: Heartbeat, now: float) -> HeartbeatState:
    """The state of a heartbeat no notifier watched before: waiting, due one timeout from now."""
    return HeartbeatState(heartbeat.name, 1, armed_at=now, due_at=now + heartbeat.timeout)


def renewed(state: HeartbeatState, heartbeat: Heartbeat, now: float) -> HeartbeatState:
    """``state`` after a matching alert arrived at ``now``: ok, due one timeout later."""
    return replace(
        state,
        version=state.version + 1,
        last_seen=now,
        due_at=now + heartbeat.timeout,
        missed_since=None,
    )


def missed(state: HeartbeatState, now: float) -> HeartbeatState | None:
    """``state`` marked missed, or None when it is not due at ``now`` or already missed."""
    if state.missed_since is not None or state.due_at > now:
        return None
    return replace(state, version=state.version + 1, missed_since=state.silent_since)


def _time(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def _stamp(at: float) -> str:
    return _time(at).strftime("%Y-%m-%d %H:%M:%S UTC")


def _spelled(seconds: float) -> str:
    return format_duration(timedelta(seconds=round(seconds)))


def _job_id(name: str, since: float, status: Status, channel: str) -> str:
    """One id per (heartbeat, silence, missed or back, channel): a repeat stores nothing new."""
    key = f"{name}\x00{since!r}\x00{status}\x00{channel}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def missed_notifications(
    heartbeat: Heartbeat, state: HeartbeatState, now: float
) -> list[Notification]:
    """What each channel hears when ``state`` (just marked missed) went silent."""
    assert state.missed_since is not None
    since = state.missed_since
    # The templates add "since <starts_at>" themselves.
    summary = f"Heartbeat {heartbeat.name} missed: Alertmanager has gone silent"
    description = (
        f"No alert matching heartbeat {heartbeat.name!r} has arrived since {_stamp(since)}"
        f" (timeout {_spelled(heartbeat.timeout)}). The path from Prometheus"
        " through Alertmanager to notifier is broken: alerts may not be reaching anyone."
    )
    alert = _alert(heartbeat, "firing", since, None, summary, description)
    return _notifications(heartbeat, alert, since, now)


def recovered_notifications(
    heartbeat: Heartbeat, was: HeartbeatState, now: float
) -> list[Notification]:
    """What each channel hears when a renewal at ``now`` ends the silence of ``was``."""
    assert was.missed_since is not None
    since = was.missed_since
    summary = f"Heartbeat {heartbeat.name} is back after {_spelled(now - since)}"
    description = (
        f"Alerts matching heartbeat {heartbeat.name!r} arrive again since {_stamp(now)};"
        f" it was silent from {_stamp(since)}. Alerts that fired meanwhile may not have"
        " been notified."
    )
    alert = _alert(heartbeat, "resolved", since, now, summary, description)
    return _notifications(heartbeat, alert, since, now)


def _alert(
    heartbeat: Heartbeat,
    status: Status,
    since: float,
    ended: float | None,
    summary: str,
    description: str,
) -> Alert:
    return Alert(
        status=status,
        labels={"alertname": ALERTNAME, "heartbeat": heartbeat.name, "severity": "critical"},
        annotations={"summary": summary, "description": description},
        starts_at=_time(since),
        ends_at=None if ended is None else _time(ended),
    )


def _notifications(
    heartbeat: Heartbeat, alert: Alert, since: float, now: float
) -> list[Notification]:
    labels = dict(alert.labels)
    return [
        Notification(
            job_id=_job_id(heartbeat.name, since, alert.status, channel),
            channel=channel,
            route=HEARTBEAT_ROUTE,
            received_at=now,
            receiver=HEARTBEAT_ROUTE,
            status=alert.status,
            group_key=f"heartbeat:{heartbeat.name}",
            group_labels={"heartbeat": heartbeat.name},
            common_labels=labels,
            common_annotations=dict(alert.annotations),
            external_url="",
            alerts=(alert,),
        )
        for channel in heartbeat.channels
    ]


def matching(heartbeats: Sequence[Heartbeat], labels: Mapping[str, str]) -> list[Heartbeat]:
    """The heartbeats an alert with ``labels`` renews."""
    return [heartbeat for heartbeat in heartbeats if heartbeat.matches(labels)]
