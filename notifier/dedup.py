"""From one validated payload to the notifications it asks for, with their dedup keys (DESIGN §4).

Pure: the clock and the id source are passed in, nothing is stored here. The store sets
each key insert-if-absent with a time to live of the route's ``repeat_interval`` when it
enqueues the job, and drops the job when the key is already present. So:

- an HA pair posting the same group yields one notification per channel;
- a changed group (an alert more, one resolved) has a new key and is notified at once;
- an unchanged group is notified again only after ``repeat_interval``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from notifier.config import LoadedConfig
from notifier.notification import Notification
from notifier.payload import Alert, WebhookPayload
from notifier.routing import route_labels


@dataclass(frozen=True, slots=True)
class PlannedJob:
    """A notification to enqueue unless ``dedup_key`` is already marked."""

    notification: Notification
    dedup_key: str
    dedup_ttl: float  # seconds


def group_identity(payload: WebhookPayload) -> str:
    """``receiver`` + ``groupKey``; the sorted group labels stand in for a missing key."""
    if payload.group_key:
        return f"{payload.receiver}\x00{payload.group_key}"
    labels = ",".join(f"{k}={v}" for k, v in sorted(payload.group_labels.items()))
    return f"{payload.receiver}\x00{{{labels}}}"


def dedup_entry(alert: Alert) -> bytes:
    """What one alert contributes to a dedup key: ``fingerprint|status|startsAt``."""
    return f"{alert.fingerprint}|{alert.status}|{alert.starts_at.isoformat()}".encode()


def dedup_key(channel: str, group: str, alerts: tuple[Alert, ...]) -> str:
    """The channel, the group, and the set of ``(fingerprint, status, startsAt)`` routed to it."""
    return _dedup_key(channel, group, [dedup_entry(a) for a in alerts])


def _dedup_key(channel: str, group: str, entries: list[bytes]) -> str:
    # Sorting the UTF-8 bytes orders the entries as sorting their text would (UTF-8
    # preserves code point order), so keys stay what they were.
    digest = hashlib.sha256()
    digest.update(channel.encode())
    digest.update(b"\x00")
    digest.update(group.encode())
    for entry in sorted(entries):
        digest.update(b"\x00")
        digest.update(entry)
    return digest.hexdigest()


def plan_notifications(
    payload: WebhookPayload,
    config: LoadedConfig,
    now: float,
    new_id: Callable[[], str],
) -> list[PlannedJob]:
    """One job per channel the payload's alerts route to, holding the alerts routed there.

    Resolved alerts are left out where ``send_resolved`` does not hold; a channel left
    with no alert gets no job.
    """
    routed: dict[str, tuple[str, list[Alert], list[bytes]]] = {}
    for alert in payload.alerts:
        decision = route_labels(alert.labels, config.routes, config.config.default_channels)
        entry = None
        for channel, route in decision.channels:
            if alert.status == "resolved" and not config.send_resolved(channel, route):
                continue
            entry = entry or dedup_entry(alert)  # once per alert, whatever its channels
            _, members, entries = routed.setdefault(channel, (route, [], []))
            members.append(alert)
            entries.append(entry)

    group = group_identity(payload)
    jobs = []
    for channel, (route, alert_list, entries) in routed.items():
        notification = Notification.for_channel(
            payload,
            tuple(alert_list),
            job_id=new_id(),
            channel=channel,
            route=route,
            received_at=now,
            group_key=payload.group_key or group,
        )
        ttl = config.repeat_interval(route).total_seconds()
        jobs.append(PlannedJob(notification, _dedup_key(channel, group, entries), ttl))
    return jobs
