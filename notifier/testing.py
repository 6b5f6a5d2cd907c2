"""Helpers for tests, ours and users': realistic payloads, a recording channel, a config in a line.

Shipped in the package (as ``structlog.testing`` is), with a ``ManualClock`` for the
clock-injected parts, so a scenario reads as one line:
``make_payload(n=3, severity="warning")``. Everything here is a real implementation
(``RecordingChannel`` satisfies the ``Channel`` protocol), not a mock; nothing here is
used by the running service.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from notifier.channels.base import Receipt
from notifier.config import LoadedConfig, parse_config
from notifier.notification import Notification
from notifier.payload import Alert, Status, WebhookPayload

# The package's own templates (package data): an installed notifier has them, no checkout
# needed. Outside a zip this is their folder; inside one the built-in lookup still finds them.
TEMPLATES_DIR = str(files("notifier.builtin_templates"))
STARTS_AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

Scripted = Receipt | BaseException  # what one send answers


def make_payload(
    *,
    alerts: Sequence[Alert | Mapping[str, Any]] | None = None,
    status: Status | None = None,
    receiver: str = "test",
    group_key: str | None = None,
    severity: str = "critical",
    alertname: str = "TestAlert",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    n: int = 1,
    starts_at: datetime | None = None,
    fingerprint: str | None = None,
) -> WebhookPayload:
    """An Alertmanager v4 payload, built the way Alertmanager builds it, parsed by our model.

    Without ``alerts``, ``n`` alerts of ``alertname``/``severity`` on hosts ``host-0``...
    with ``status`` (default firing; resolved ones get an ``endsAt``). ``alerts`` takes
    ``Alert``s or dicts in Alertmanager's shape instead. ``fingerprint`` fixes the
    fingerprint of a single alert (``n=1``); otherwise it is derived from the labels.
    """
    start = starts_at or STARTS_AT
    if alerts is None:
        if fingerprint is not None and n != 1:
            raise ValueError("fingerprint applies to a single alert; pass alerts= for more")
        wire = [
            _wire_alert(
                status or "firing",
                {
                    "alertname": alertname,
                    "severity": severity,
                    "instance": f"host-{index}:9100",
                    "job": "node",
                    **(labels or {}),
                },
                {
                    "summary": f"{alertname} on host-{index}:9100",
                    "description": f"{alertname} {status or 'firing'} since {start:%H:%M} UTC.",
                    **(annotations or {}),
                },
                start,
                fingerprint,
            )
            for index in range(n)
        ]
    else:
        wire = [
            a.model_dump(mode="json", by_alias=True) if isinstance(a, Alert) else dict(a)
            for a in alerts
        ]
    firing = any(a.get("status") == "firing" for a in wire)
    common = _common(a.get("labels", {}) for a in wire)
    group_labels = {"alertname": common.get("alertname", alertname)}
    return WebhookPayload.model_validate(
        {
            "version": "4",
            "receiver": receiver,
            "status": status or ("firing" if firing else "resolved"),
            "alerts": wire,
            "groupLabels": group_labels,
            "commonLabels": common,
            "commonAnnotations": _common(a.get("annotations", {}) for a in wire),
            "externalURL": "http://alertmanager.example:9093",
            "groupKey": group_key
            if group_key is not None
            else f'{{}}:{{alertname="{group_labels["alertname"]}"}}',
            "truncatedAlerts": 0,
        }
    )


def _wire_alert(
    status: Status,
    labels: dict[str, str],
    annotations: dict[str, str],
    start: datetime,
    fingerprint: str | None,
) -> dict[str, Any]:
    ends = start + timedelta(minutes=5) if status == "resolved" else None
    alert: dict[str, Any] = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": start.isoformat().replace("+00:00", "Z"),
        "endsAt": ends.isoformat().replace("+00:00", "Z") if ends else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
    }
    if fingerprint is not None:
        alert["fingerprint"] = fingerprint
    return alert


def _common(label_sets: Iterable[Mapping[str, str]]) -> dict[str, str]:
    sets = list(label_sets)
    if not sets:
        return {}
    return {k: v for k, v in sets[0].items() if all(s.get(k) == v for s in sets[1:])}


class ManualClock:
    """A clock that moves only when told: pass it as ``clock=`` and ``advance()`` it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _as_payload(notification: Notification) -> WebhookPayload:
    """The notification as an Alertmanager payload (only the alerts routed to it)."""
    return WebhookPayload(
        version="4",
        receiver=notification.receiver,
        status=notification.status,
        alerts=list(notification.alerts),
        group_labels=notification.group_labels,
        common_labels=notification.common_labels,
        common_annotations=notification.common_annotations,
        external_url=notification.external_url,
        group_key=notification.group_key,
        truncated_alerts=notification.truncated_alerts,
    )


class RecordingChannel:
    """A ``Channel`` that keeps what it was given and answers as scripted.

    Each ``send`` takes the next entry of ``outcomes``: an exception is raised, a
    ``Receipt`` returned; when the script is used up, every send succeeds. ``delay``
    seconds pass before each answer (``math.inf``: the send never answers, as a hung
    peer). ``calls`` holds every notification handed to ``send``, ``sent`` those that
    were delivered.
    """

    def __init__(
        self,
        name: str,
        type: str = "webhook",
        *,
        outcomes: Iterable[Scripted] = (),
        delay: float = 0.0,
    ) -> None:
        self.name = name
        self.type = type
        self.outcomes: list[Scripted] = list(outcomes)
        self.delay = delay
        self.calls: list[Notification] = []
        self.sent: list[Notification] = []
        self.closed = False
        self._changed = asyncio.Event()

    async def send(self, notification: Notification) -> Receipt:
        self.calls.append(notification)
        self._changed.set()
        if math.isinf(self.delay):
            await asyncio.get_running_loop().create_future()  # never resolves
        elif self.delay > 0:
            await asyncio.sleep(self.delay)
        outcome = self.outcomes.pop(0) if self.outcomes else Receipt(self.name, "recorded")
        if isinstance(outcome, BaseException):
            raise outcome
        self.sent.append(notification)
        self._changed.set()
        return outcome

    def preview(self, notification: Notification) -> str:
        return json.dumps(_as_payload(notification).to_alertmanager_json(), indent=2)

    async def close(self) -> None:
        self.closed = True

    async def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once ``count`` notifications were delivered; else ``TimeoutError``."""
        await self._wait(lambda: len(self.sent) >= count, timeout)

    async def wait_for_calls(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once ``send`` was called ``count`` times; else ``TimeoutError``."""
        await self._wait(lambda: len(self.calls) >= count, timeout)

    async def _wait(self, done: Callable[[], bool], seconds: float) -> None:
        async with asyncio.timeout(seconds):
            while not done():
                self._changed.clear()
                await self._changed.wait()


def config_for_tests(
    channels: Mapping[str, Mapping[str, Any]],
    routes: Sequence[Mapping[str, Any]],
    **overrides: Any,
) -> LoadedConfig:
    """A ``LoadedConfig`` parsed from these settings, as ``load_config`` would from a file.

    A channel without a ``type`` is a ``log`` channel (the tests hand the dispatcher
    ``RecordingChannel``s under the same names). Storage is ``memory://`` and templates
    are the built-in ones (``notifier/builtin_templates/``); ``overrides`` replace
    top-level keys (``templates_dir=`` for a folder of your own).
    """
    raw: dict[str, Any] = {
        "storage": {"url": "memory://"},
        "templates_dir": TEMPLATES_DIR,
        "channels": {name: {"type": "log", **settings} for name, settings in channels.items()},
        "routes": [dict(route) for route in routes],
        **overrides,
    }
    return parse_config(yaml.safe_dump(raw), Path("config_for_tests.yaml"), env={})
