"""Helpers for the channel tests: real configs, real payloads, real notifications.

Configs go through ``parse_config`` (the real models) with the repository's templates;
notifications come from ``plan_notifications`` over a captured Alertmanager payload or
one built here from a few labels.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from notifier.config import LoadedConfig, parse_config
from notifier.dedup import plan_notifications
from notifier.notification import Notification
from notifier.payload import WebhookPayload
from notifier.testing import TEMPLATES_DIR

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(TEMPLATES_DIR)
FIXTURES = ROOT / "tests/fixtures/alertmanager"
FIXTURE_NAMES = sorted(path.stem for path in FIXTURES.glob("*.json"))
NOW = 1_800_000_000.0


def load(
    tmp_path: Path, channels: dict[str, dict[str, Any]], *, templates: Path = TEMPLATES
) -> LoadedConfig:
    """A config with these channels, all on one match-all route, through the real models."""
    document = {
        "templates_dir": str(templates),
        "channels": channels,
        "routes": [{"name": "all", "channels": list(channels)}],
    }
    return parse_config(yaml.safe_dump(document), tmp_path / "notifier.yaml", {})


def fixture(name: str) -> WebhookPayload:
    return WebhookPayload.model_validate_json((FIXTURES / f"{name}.json").read_text())


def payload(
    *alerts: dict[str, Any], status: str | None = None, group_key: str = "{}:{alertname}"
) -> WebhookPayload:
    """A payload of alerts given as ``{"labels": ..., "annotations": ..., "status": ...}``."""
    built = [
        {
            "status": a.get("status", "firing"),
            "labels": a["labels"],
            "annotations": a.get("annotations", {}),
            "startsAt": "2026-11-26T05:25:12Z",
            "endsAt": "0001-01-01T00:00:00Z",
        }
        for a in alerts
    ]
    overall = status or ("firing" if any(a["status"] == "firing" for a in built) else "resolved")
    return WebhookPayload.model_validate(
        {
            "version": "4",
            "receiver": "test",
            "status": overall,
            "alerts": built,
            "groupLabels": {"alertname": alerts[0]["labels"].get("alertname", "")},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.example",
            "groupKey": group_key,
        }
    )


_ids = itertools.count(1)


def notification(loaded: LoadedConfig, channel: str, source: WebhookPayload) -> Notification:
    """The notification ``source`` produces for ``channel``."""
    jobs = plan_notifications(source, loaded, NOW, lambda: f"job-{next(_ids)}")
    return next(job.notification for job in jobs if job.notification and job.channel == channel)


def free_port() -> int:
    """A port nothing listens on (bound then released), for connection-refused cases."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts and never answers, for timeouts; yields its port."""
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        release.set()
        server.close()
        await server.wait_closed()
