"""Alertmanager v4 payloads built from a few words: the CLI's ``fire`` and ``render``, and
``check-config``'s template trial render.

The payload is shaped exactly like Alertmanager's (fingerprint, groupKey, zero
``endsAt`` while firing), so everything downstream treats it as the real thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from notifier.payload import GO_ZERO_TIME, Alert, WebhookPayload, labels_fingerprint


def build_payload(
    *,
    alertname: str = "HighErrorRate",
    severity: str = "critical",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    resolved: bool = False,
    receiver: str = "notifier",
    external_url: str = "http://alertmanager.example.internal:9093",
    now: datetime | None = None,
) -> WebhookPayload:
    """One alert in one group, firing or resolved."""
    now = now or datetime.now(UTC)
    all_labels = {"alertname": alertname, "severity": severity, **(labels or {})}
    all_annotations = {
        "summary": f"{alertname} on {all_labels.get('instance', 'a test instance')}",
        "description": f"Test alert {alertname} ({severity}) fired by notifier.",
        **(annotations or {}),
    }
    status = "resolved" if resolved else "firing"
    alert = Alert.model_validate(
        {
            "status": status,
            "labels": all_labels,
            "annotations": all_annotations,
            "startsAt": now.isoformat(),
            "endsAt": now.isoformat() if resolved else GO_ZERO_TIME,
            "generatorURL": "http://prometheus.example.internal:9090/graph",
            "fingerprint": labels_fingerprint(all_labels),
        }
    )
    group_labels = {"alertname": alertname}
    return WebhookPayload(
        version="4",
        receiver=receiver,
        status=status,
        alerts=[alert],
        group_labels=group_labels,
        common_labels=all_labels,
        common_annotations=all_annotations,
        external_url=external_url,
        group_key=f'{{}}:{{alertname="{alertname}"}}',
        truncated_alerts=0,
    )


def sample_payload() -> WebhookPayload:
    """A realistic group for trial renders: two firing alerts and one resolved."""
    now = datetime.now(UTC)
    alerts = []
    for index, status in enumerate(("firing", "firing", "resolved")):
        labels = {
            "alertname": "HighErrorRate",
            "severity": "critical",
            "instance": f"api-{index}.example.internal:9100",
            "job": "api",
        }
        alerts.append(
            Alert.model_validate(
                {
                    "status": status,
                    "labels": labels,
                    "annotations": {
                        "summary": f"5xx ratio above 5% on api-{index}",
                        "description": "More than 5% of requests failed over the last 5 minutes.",
                        "runbook_url": "https://runbooks.example.internal/high-error-rate",
                    },
                    "startsAt": now.isoformat(),
                    "endsAt": now.isoformat() if status == "resolved" else GO_ZERO_TIME,
                    "generatorURL": "http://prometheus.example.internal:9090/graph",
                    "fingerprint": labels_fingerprint(labels),
                }
            )
        )
    return WebhookPayload(
        version="4",
        receiver="notifier",
        status="firing",
        alerts=alerts,
        group_labels={"alertname": "HighErrorRate"},
        common_labels={"alertname": "HighErrorRate", "severity": "critical", "job": "api"},
        common_annotations={},
        external_url="http://alertmanager.example.internal:9093",
        group_key='{}:{alertname="HighErrorRate"}',
    )
