"""An incident as JSON, the way the HTTP API answers and the CLI prints it."""

from __future__ import annotations

from typing import Any

from notifier.incidents.machine import Incident, Policy
from notifier.incidents.messages import group_notification


def incident_json(incident: Incident, policy: Policy) -> dict[str, Any]:
    steps = max(1, len(policy.steps))
    last = max(0, incident.pages_sent - 1)
    receiver, _, group_key = incident.group_key.partition("\x00")
    alerts: list[dict[str, Any]] = []
    if incident.group_state:
        group = group_notification(incident)
        alerts = [
            {"status": a.status, "labels": dict(a.labels), "fingerprint": a.fingerprint}
            for a in group.alerts
        ]
    return {
        "id": incident.id,
        "state": incident.state.value,
        "route": incident.route,
        "receiver": receiver,
        "group_key": group_key,
        "policy": incident.policy,
        "ack_code": incident.ack_code,
        "opened_at": incident.opened_at,
        "epoch": incident.epoch,
        "pages_sent": incident.pages_sent,
        "step": last % steps + 1 if incident.pages_sent else 0,
        "steps": steps,
        "paged_channels": list(incident.paged_channels),
        "acknowledged_by": incident.acknowledged_by,
        "acknowledged_at": incident.acknowledged_at,
        "silenced_until": incident.silenced_until,
        "resolved_at": incident.resolved_at,
        "reached_last_step": incident.reached_last_step,
        "timeline": [{"at": e.at, "event": e.event, "detail": e.detail} for e in incident.timeline],
        "alerts": alerts,
    }
