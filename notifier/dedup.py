"""From one validated payload to its notifications, and the notification-log rule (DESIGN §4).

Pure: the clock and the id source are passed in, nothing is stored here.

For each (channel, group) the store keeps one ``LogEntry``: the fingerprints that were
firing and those resolved when the channel was last notified, and when. Planning gives
each channel a ``PlannedJob`` holding the fingerprints routed to it now; the store, in
the same transaction (or Lua script) as the enqueue, reads the channel's entry, asks
``needs_update``, and either writes the new entry together with the job or drops the
job as deduplicated. ``needs_update`` follows Alertmanager's ``DedupStage.needsUpdate``
rule by rule, so:

- an HA pair posting the same group yields one notification per channel;
- a new firing alert is notified at once, with the whole routed group;
- a group that shrinks (one alert resolves or leaves, the others still fire) does not
  re-page the others; where ``send_resolved`` holds, the resolution itself is notified;
- an unchanged group is notified again only once ``repeat_interval`` has passed.

The Redis store runs the same rule in Lua (``redis_scripts.ENQUEUE``); the two are kept
alike by one table of cases run against both (``tests/dedup_rules.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import dataclass, field
from enum import StrEnum

from notifier.config import LoadedConfig
from notifier.notification import Notification
from notifier.payload import Alert, WebhookPayload
from notifier.routing import route_labels

# Alertmanager keeps an entry for 2 × repeat_interval after each notification, which is
# enough there because it re-evaluates each group itself. We only hear what Alertmanager
# posts, which for an unchanged group may be less often than our repeat_interval: an
# entry that still lists firing alerts is therefore kept at least this long (Alertmanager's
# own default ``--data.retention``), so the group's resolution still finds it.
FIRING_ENTRY_RETENTION = 5 * 24 * 3600.0


class Reason(StrEnum):
    """Why a channel is notified, or that it is not (Alertmanager's ``NotifyReason``)."""

    FIRST_NOTIFICATION = "first_notification"
    NEW_ALERTS_IN_GROUP = "new_alerts_in_group"
    ALL_ALERTS_RESOLVED = "all_alerts_resolved"
    NEW_RESOLVED_ALERTS = "new_resolved_alerts"
    REPEAT_INTERVAL_ELAPSED = "repeat_interval_elapsed"
    DO_NOT_NOTIFY = "do_not_notify"

    @property
    def notify(self) -> bool:
        return self is not Reason.DO_NOT_NOTIFY


@dataclass(frozen=True, slots=True)
class LogEntry:
    """What a channel was last told about a group: fingerprints firing and resolved, and when."""

    firing: frozenset[str]
    resolved: frozenset[str]
    at: float


def needs_update(
    entry: LogEntry | None,
    firing: Set[str],
    resolved: Set[str],
    *,
    send_resolved: bool,
    repeat_interval: float,
    now: float,
) -> Reason:
    """Whether the channel must hear about the group now; Alertmanager's rules, in its order.

    A reason that notifies also means "replace the entry", even where nothing is sent:
    when nothing fires and ``send_resolved`` is off, the entry is updated so that an
    alert firing again later counts as new.
    """
    if entry is None:
        return Reason.FIRST_NOTIFICATION if firing else Reason.DO_NOT_NOTIFY
    if not firing <= entry.firing:
        # After a notification that nothing fired, this starts the group anew.
        return Reason.NEW_ALERTS_IN_GROUP if entry.firing else Reason.FIRST_NOTIFICATION
    if not firing:
        # Whatever send_resolved says, so that the entry stops listing them as firing;
        # with nothing listed, the channel never heard of what fired and resolved since.
        return Reason.ALL_ALERTS_RESOLVED if entry.firing else Reason.DO_NOT_NOTIFY
    if send_resolved and not resolved <= entry.resolved:
        return Reason.NEW_RESOLVED_ALERTS
    if entry.at < now - repeat_interval:
        return Reason.REPEAT_INTERVAL_ELAPSED
    return Reason.DO_NOT_NOTIFY


def entry_ttl(firing: Set[str], repeat_interval: float) -> float:
    """How long a new entry is kept: 2 × ``repeat_interval``, longer while something fires."""
    if firing:
        return max(2 * repeat_interval, FIRING_ENTRY_RETENTION)
    return 2 * repeat_interval


@dataclass(frozen=True, slots=True)
class PlannedJob:
    """One channel's share of a payload: what to send, and what its log entry would become.

    ``firing`` and ``resolved`` hold the fingerprints of every alert of the payload
    routed to the channel; ``notification`` holds the alerts the channel is told about
    (resolved ones only where ``send_resolved`` holds), or is None when that leaves
    nothing to send (the store may still update the entry).
    """

    notification: Notification | None
    channel: str
    group: str  # group_identity() of the payload
    firing: frozenset[str]
    resolved: frozenset[str]
    send_resolved: bool
    repeat_interval: float  # seconds
    # Set when the channel's routes are muted with ``when_muted: defer`` (DESIGN §9): the
    # job waits until then, and replaces any deferred job of its (channel, group) that
    # still waits (``notifier.deferral``).
    not_before: float | None = None

    def needs_update(self, entry: LogEntry | None, now: float) -> Reason:
        """``needs_update`` for this job against the channel's current entry."""
        return needs_update(
            entry,
            self.firing,
            self.resolved,
            send_resolved=self.send_resolved,
            repeat_interval=self.repeat_interval,
            now=now,
        )

    def entry(self, now: float) -> LogEntry:
        """The entry that replaces the channel's when this job notifies at ``now``: what the
        channel will have been told, and when (a deferred job tells it at ``not_before``)."""
        return LogEntry(self.firing, self.resolved, self.sent_at(now))

    def sent_at(self, now: float) -> float:
        """When the job falls due: ``not_before``, else ``now``."""
        return now if self.not_before is None else max(now, self.not_before)

    @property
    def entry_ttl(self) -> float:
        return entry_ttl(self.firing, self.repeat_interval)

    def entry_expires_at(self, now: float) -> float:
        """Kept ``entry_ttl`` from when it is told, so it outlives a deferred job's wait."""
        return self.sent_at(now) + self.entry_ttl


def group_identity(payload: WebhookPayload) -> str:
    """``receiver`` + ``groupKey``; the sorted group labels stand in for a missing key."""
    if payload.group_key:
        return f"{payload.receiver}\x00{payload.group_key}"
    labels = ",".join(f"{k}={v}" for k, v in sorted(payload.group_labels.items()))
    return f"{payload.receiver}\x00{{{labels}}}"


@dataclass(slots=True)
class _Share:
    """What one channel gets of a payload, gathered alert by alert."""

    route: str  # the first alert's: its repeat_interval and send_resolved hold for the job
    alerts: list[Alert] = field(default_factory=list)
    firing: set[str] = field(default_factory=set)
    resolved: set[str] = field(default_factory=set)
    # Deferred while every alert came through a deferring muted route: until the first
    # of them reopens. One alert through an unmuted route sends the share now.
    not_before: float | None = None


def plan_notifications(
    payload: WebhookPayload,
    config: LoadedConfig,
    now: float,
    new_id: Callable[[], str],
) -> list[PlannedJob]:
    """One job per channel the payload's alerts route to, holding the alerts routed there.

    Resolved alerts are left out of the notification where ``send_resolved`` does not
    hold for their route; they still count in the job's ``resolved`` fingerprints.

    Time windows (DESIGN §9): an alert is left out for a channel, as if not routed there,
    when its route is muted with ``when_muted: drop`` (Alertmanager mutes before dedup,
    so the channel's log entry is not touched either); a share whose every alert came
    through a route muted with ``defer`` gets ``not_before``: the earliest reopening.
    """
    shares: dict[str, _Share] = {}
    windows = config.windows
    for alert in payload.alerts:
        decision = route_labels(alert.labels, config.routes, config.config.default_channels)
        for channel, route in decision.channels:
            muting = windows.muting(route, now) if windows.routes else None
            if muting is not None and muting.drops:
                continue
            until = None if muting is None else muting.until
            share = shares.get(channel)
            if share is None:
                share = shares[channel] = _Share(route, not_before=until)
            elif share.not_before is not None:
                share.not_before = None if until is None else min(share.not_before, until)
            if alert.status == "firing":
                share.firing.add(alert.fingerprint)
                share.alerts.append(alert)
            else:
                share.resolved.add(alert.fingerprint)
                if config.send_resolved(channel, route):
                    share.alerts.append(alert)

    group = group_identity(payload)
    jobs = []
    for channel, share in shares.items():
        notification = None
        if share.alerts:
            notification = Notification.for_channel(
                payload,
                tuple(share.alerts),
                job_id=new_id(),
                channel=channel,
                route=share.route,
                # Latency (metrics, report) counts from when a deferred job could be sent.
                received_at=now if share.not_before is None else max(now, share.not_before),
                group_key=payload.group_key or group,
            )
        jobs.append(
            PlannedJob(
                notification,
                channel=channel,
                group=group,
                firing=frozenset(share.firing),
                resolved=frozenset(share.resolved),
                send_resolved=config.send_resolved(channel, share.route),
                repeat_interval=config.repeat_interval(share.route).total_seconds(),
                not_before=share.not_before,
            )
        )
    return jobs
