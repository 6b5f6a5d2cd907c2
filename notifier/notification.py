"""The unit of delivery: one group of alerts for one channel.

A ``Notification`` is what the ingest path enqueues, what the store keeps (as JSON,
never pickle) and what a channel receives. It carries the group's data from the
Alertmanager payload, restricted to the alerts routed to its channel.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from notifier.payload import Alert, Labels, Status, WebhookPayload

# ``alert``: the routed group, as Alertmanager sent it; ``page``: an escalation step of an
# incident (DESIGN §8); ``announcement``: an incident acknowledged, silenced, re-opened or
# resolved, told to the channels that were paged.
NotificationKind = Literal["alert", "page", "announcement"]


class IncidentContext(BaseModel):
    """What a page or an announcement says about its incident (the templates' ``incident``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    state: str
    policy: str
    step: int  # 1-based within the policy: the step this page sends, or the last one sent
    steps: int  # steps in the policy
    pass_number: int = 1  # which pass over the steps (``repeat`` adds passes)
    passes: int = 1
    opened_at: float
    ack_code: str
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    silenced_until: float | None = None
    paged_channels: tuple[str, ...] = ()  # every channel paged so far, this one included
    others_paged: tuple[str, ...] = ()  # the paged channels but this one
    announcement: str | None = None  # acknowledged, unacknowledged, silenced, reopened, resolved
    by: str | None = None  # the responder behind the announcement
    ack_url: str = ""  # the API endpoint that acknowledges it
    ack_command: str = ""  # the CLI command that acknowledges it


class Notification(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, cache_strings="keys")  # as the payload

    job_id: str
    channel: str
    route: str
    received_at: float = Field(
        description="unix time the payload was accepted (deferred: when its window opened)"
    )
    receiver: str
    status: Status
    group_key: str
    group_labels: Labels
    common_labels: Labels
    common_annotations: Labels
    external_url: str
    truncated_alerts: int = 0
    alerts: tuple[Alert, ...]
    kind: NotificationKind = "alert"
    incident: IncidentContext | None = None

    @classmethod
    def for_channel(
        cls,
        payload: WebhookPayload,
        alerts: tuple[Alert, ...],
        *,
        job_id: str,
        channel: str,
        route: str,
        received_at: float,
        group_key: str | None = None,
    ) -> Notification:
        """The notification of ``payload``'s group for one channel, holding ``alerts``.

        Built without validating again: every part was validated with the payload
        (validation here was the larger part of planning a payload).
        """
        status: Status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
        return cls.model_construct(
            job_id=job_id,
            channel=channel,
            route=route,
            received_at=received_at,
            receiver=payload.receiver,
            status=status,
            group_key=payload.group_key if group_key is None else group_key,
            group_labels=payload.group_labels,
            common_labels=payload.common_labels,
            common_annotations=payload.common_annotations,
            external_url=payload.external_url,
            truncated_alerts=payload.truncated_alerts,
            alerts=alerts,
        )

    @property
    def severity(self) -> str:
        """The group's severity: the common label, else the first alert's, else ``none``."""
        return self.common_labels.get("severity") or self.alerts[0].labels.get("severity", "none")

    @property
    def thread_key(self) -> str:
        """Identifies the group across notifications (Slack keeps one thread per group);
        an incident's pages and announcements share one thread of their own."""
        if self.incident is not None:
            return f"{self.channel}\x00incident\x00{self.incident.id}"
        return f"{self.channel}\x00{self.receiver}\x00{self.group_key}"
