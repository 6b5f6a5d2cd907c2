"""Building storm digests (DESIGN §10): which notifications fold, and the digest they fold into.

Pure: the store calls ``DigestFolder`` inside its fold transaction with the channel's
waiting notifications, and gets back the digest to enqueue, the ids to remove and a
``digested`` delivery record for each folded alert notification. A waiting digest of
the same storm is folded too (the new one replaces it), and the counts so far come from
the storm's last digest (``carried``), or else from that waiting one: every digest of a
storm counts each group folded since the storm began, as it replaces the one before in
the same message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from notifier.config import ChannelConfig, EmailChannel, SlackChannel, SmsChannel
from notifier.digest_summary import DigestGroup, DigestSummary
from notifier.notification import Notification
from notifier.store.base import DeliveryRecord, Fold

# A channel type's storm threshold when its config says nothing; None: no storm mode.
DEFAULT_MAX_DRAIN: dict[str, timedelta | None] = {
    "slack": timedelta(seconds=30),
    "sms": timedelta(seconds=60),
    "email": timedelta(minutes=2),
    "webhook": None,
    "log": None,
}
# The built-in digest template of each type, when the channel names none.
DEFAULT_TEMPLATE = {"slack": "digest.json", "sms": "digest.txt", "email": "digest.html"}
TOP_GROUPS = 10  # groups a digest lists by name; the rest are "+N more"
_SEVERITY_RANK = {"critical": 0, "page": 0, "error": 1, "high": 1, "warning": 2, "info": 4}


def max_drain(channel: ChannelConfig) -> float | None:
    """The channel's ``digest.max_drain`` in seconds, its type's default, or None when off."""
    if channel.digest == "off":
        return None
    if channel.digest is not None:
        return channel.digest.max_drain.total_seconds()
    default = DEFAULT_MAX_DRAIN.get(channel.type)
    return None if default is None else default.total_seconds()


def digest_template(channel: ChannelConfig) -> str | None:
    return channel.digest_template or DEFAULT_TEMPLATE.get(channel.type)


def template_for(
    notification: Notification, channel: EmailChannel | SlackChannel | SmsChannel
) -> str:
    """The template that renders ``notification`` on ``channel``: its digest template for a
    digest, else its own."""
    if notification.digest is not None:
        return digest_template(channel) or channel.template
    return channel.template


def foldable(notification: Notification) -> bool:
    """An ordinary alert notification, or an earlier digest. Escalation pages and incident
    announcements never fold: a person is waiting for exactly that message (DESIGN §10)."""
    return notification.kind == "alert"


def severity_rank(severity: str) -> int:
    return _SEVERITY_RANK.get(severity.lower(), 3)


@dataclass(frozen=True, slots=True)
class DigestFolder:
    """Folds a channel's waiting notifications into the digest of one storm."""

    channel: str
    channel_type: str
    storm: str
    started_at: float
    now: float
    not_before: float  # when a new digest may be sent (refreshes at most once a minute)
    # When the digest of this storm that still waits is due: folded into the new one, it
    # keeps its turn instead of starting a new one.
    pending_due: float | None = None
    console_url: str | None = None
    # The storm's last digest, sent or not: its counts carry over, as the new digest
    # replaces it in the same message. Without it, those of a digest still waiting do.
    carried: DigestSummary | None = None

    def __call__(self, waiting: Sequence[Notification]) -> Fold | None:
        taken = [
            n
            for n in waiting
            if foldable(n)
            and (n.digest is None or n.digest.storm == self.storm)
            # A notification deferred to a window's opening (its received_at) waits for it.
            and (n.digest is not None or n.received_at <= self.now)
        ]
        alerts = [n for n in taken if n.digest is None]
        if not alerts:
            return None  # nothing new: a waiting digest stays as it is
        digest_id = _digest_id(self.channel, self.storm, alerts)
        previous = [n.digest for n in taken if n.digest is not None]
        summary = self._summary([self.carried] if self.carried else previous, alerts)
        return Fold(
            folded=tuple(n.job_id for n in taken),
            records=tuple(self._record(n, digest_id) for n in alerts),
            digest=self._digest(digest_id, summary, alerts),
            not_before=(
                self.pending_due if previous and self.pending_due is not None else self.not_before
            ),
        )

    def _summary(
        self, previous: Sequence[DigestSummary], alerts: Sequence[Notification]
    ) -> DigestSummary:
        groups = [group for summary in previous for group in summary.top]
        groups += [_group(n) for n in alerts]
        groups.sort(key=lambda g: (g.status != "firing", severity_rank(g.severity)))
        firing = sum(s.firing for s in previous) + sum(n.status == "firing" for n in alerts)
        resolved = sum(s.resolved for s in previous) + sum(n.status == "resolved" for n in alerts)
        return DigestSummary(
            storm=self.storm,
            started_at=self.started_at,
            firing=firing,
            resolved=resolved,
            top=tuple(groups[:TOP_GROUPS]),
            console_url=self.console_url,
        )

    def _digest(
        self, job_id: str, summary: DigestSummary, alerts: Sequence[Notification]
    ) -> Notification:
        return Notification(
            job_id=job_id,
            channel=self.channel,
            route="digest",
            received_at=min(n.received_at for n in alerts),
            receiver="",
            status="firing" if summary.firing else "resolved",
            group_key=f"digest:{self.storm}",
            group_labels={},
            common_labels={
                "alertname": "AlertStorm",
                "severity": summary.top[0].severity if summary.top else "none",
            },
            common_annotations={},
            external_url="",
            alerts=(),
            digest=summary,
        )

    def _record(self, notification: Notification, digest_id: str) -> DeliveryRecord:
        return DeliveryRecord(
            job_id=notification.job_id,
            channel=self.channel,
            channel_type=self.channel_type,
            outcome="digested",
            reason=None,
            error=f"folded into storm digest {digest_id}",
            latency=0.0,
            at=self.now,
            received_at=notification.received_at,
            severity=notification.severity,
            status=notification.status,
            alerts=len(notification.alerts),
        )


def _group(notification: Notification) -> DigestGroup:
    first = notification.alerts[0] if notification.alerts else None
    labels = notification.common_labels
    alertname = labels.get("alertname") or (first.labels.get("alertname", "") if first else "")
    summary = notification.common_annotations.get("summary") or (
        first.annotations.get("summary", "") if first else ""
    )
    return DigestGroup(
        status=notification.status,
        severity=notification.severity,
        alertname=alertname,
        summary=summary,
        alerts=len(notification.alerts),
    )


def _digest_id(channel: str, storm: str, alerts: Sequence[Notification]) -> str:
    """A content hash, like every job id: the same fold run twice makes the same job."""
    digest = hashlib.blake2b(digest_size=12)
    for part in (channel, storm, *(n.job_id for n in alerts)):
        digest.update(part.encode())
        digest.update(b"\x00")
    return f"digest-{digest.hexdigest()}"


def sample_digest(notification: Notification, channel_type: str) -> Notification:
    """A digest folding ``notification``, for ``check-config`` to render digest templates."""
    at = notification.received_at
    fold = DigestFolder(
        channel=notification.channel,
        channel_type=channel_type,
        storm=f"{notification.channel}@sample",
        started_at=at,
        now=at,
        not_before=at,
        console_url="https://notifier.example.com/ui/",
    )([notification])
    assert fold is not None  # one alert notification always folds
    return fold.digest
