"""An incident's pages and announcements as notifications (DESIGN §8).

A ``Page`` effect becomes one notification per step channel, an ``Announce`` one per
channel already paged. Each carries the group as last heard (the incident's
``group_state``) and an ``IncidentContext``: which incident, which step of how many,
who else was paged, and how to acknowledge. Pure: ids and the clock come in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from notifier.incidents.machine import Announce, Incident, Page, Policy
from notifier.notification import IncidentContext, Notification, NotificationKind
from notifier.payload import Status


def sample_variants(notification: Notification) -> list[tuple[str, Notification]]:
    """``notification`` as an alert, a page and an announcement, for trial renders; each
    with the words that say which it was ("" for the alert)."""
    context = IncidentContext(
        id="a1b2c3d4e5f6",
        state="open",
        policy="sample",
        step=2,
        steps=3,
        opened_at=notification.received_at,
        ack_code="4821",
        paged_channels=("sample-slack", notification.channel),
        others_paged=("sample-slack",),
        ack_url="/api/v1/incidents/a1b2c3d4e5f6/ack",
        ack_command="notifier incidents ack a1b2c3d4e5f6 --by NAME",
    )
    told = context.model_copy(
        update={
            "state": "acknowledged",
            "announcement": "acknowledged",
            "by": "kim",
            "acknowledged_by": "kim",
            "acknowledged_at": notification.received_at,
        }
    )
    return [
        ("", notification),
        (
            " (as an escalation page)",
            notification.model_copy(update={"kind": "page", "incident": context}),
        ),
        (
            " (as an announcement)",
            notification.model_copy(update={"kind": "announcement", "incident": told}),
        ),
    ]


def group_notification(incident: Incident) -> Notification:
    """The group as the incident last heard it (a notification for no channel yet)."""
    return Notification.model_validate_json(incident.group_state)


def incident_context(
    incident: Incident,
    policy: Policy,
    channel: str,
    *,
    public_url: str | None,
    page: Page | None = None,
    announce: Announce | None = None,
) -> IncidentContext:
    steps = max(1, len(policy.steps))
    index = page.page_index if page is not None else max(0, incident.pages_sent - 1)
    path = f"/api/v1/incidents/{incident.id}/ack"
    return IncidentContext(
        id=incident.id,
        state=incident.state.value,
        policy=incident.policy,
        step=index % steps + 1,
        steps=steps,
        pass_number=index // steps + 1,
        passes=policy.repeat + 1,
        opened_at=incident.opened_at,
        ack_code=incident.ack_code,
        acknowledged_by=incident.acknowledged_by,
        acknowledged_at=incident.acknowledged_at,
        silenced_until=incident.silenced_until,
        paged_channels=incident.paged_channels,
        others_paged=tuple(c for c in incident.paged_channels if c != channel),
        announcement=None if announce is None else announce.kind,
        by=None if announce is None else announce.by,
        ack_url=(public_url.rstrip("/") + path) if public_url else path,
        ack_command=f"notifier incidents ack {incident.id} --by NAME",
    )


def effect_notifications(
    incident: Incident,
    policy: Policy,
    effect: Page | Announce,
    *,
    known_channels: Collection[str],
    public_url: str | None,
    new_id: Callable[[], str],
    now: float,
) -> list[Notification]:
    """One notification per channel the effect addresses (channels since removed from the
    config are skipped: nothing could deliver them)."""
    group = group_notification(incident)
    kind: NotificationKind = "page" if isinstance(effect, Page) else "announcement"
    status: Status = group.status
    if isinstance(effect, Announce) and effect.kind == "resolved":
        status = "resolved"
    notifications = []
    for channel in effect.channels:
        if channel not in known_channels:
            continue
        context = incident_context(
            incident,
            policy,
            channel,
            public_url=public_url,
            page=effect if isinstance(effect, Page) else None,
            announce=effect if isinstance(effect, Announce) else None,
        )
        notifications.append(
            group.model_copy(
                update={
                    "job_id": new_id(),
                    "channel": channel,
                    "received_at": now,
                    "status": status,
                    "kind": kind,
                    "incident": context,
                }
            )
        )
    return notifications
