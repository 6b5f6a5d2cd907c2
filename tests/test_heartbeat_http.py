"""Heartbeats through the real app: matching alerts are taken out of routing, the status
lists each heartbeat, and a reload that adds one starts watching it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from notifier.testing import make_payload
from tests.conftest import LOG_CONFIG, AppFactory
from tests.processes import wait_until

AUTH = {"Authorization": "Bearer s3cret-token", "Content-Type": "application/json"}
WATCHDOG = """
heartbeats:
  - {name: watchdog, matchers: ['alertname="Watchdog"'], timeout: 10m, channels: [console]}
"""
DEADMAN = """
  - {name: deadman, matchers: ['alertname="DeadMansSwitch"'], timeout: 5m, channels: [console]}
"""


def _body(*alertnames: str) -> str:
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": name, "severity": "none"},
            "startsAt": "2026-01-01T12:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
        }
        for name in alertnames
    ]
    return json.dumps(make_payload(alerts=alerts).to_alertmanager_json())


async def test_a_heartbeat_alert_renews_and_is_not_routed(app_client: AppFactory) -> None:
    client = await app_client(LOG_CONFIG + WATCHDOG)
    (before,) = (await (await client.get("/api/v1/status", headers=AUTH)).json())["heartbeats"]
    assert before["state"] == "waiting"
    assert before["due_at"] is not None  # armed at start: a silence from now on counts

    response = await client.post("/api/v1/alerts", data=_body("Watchdog", "DiskFull"), headers=AUTH)
    assert response.status == 202
    assert await response.json() == {"accepted": 2, "notifications": 1, "deduplicated": 0}

    async def delivered() -> list[dict[str, Any]]:
        body = await (await client.get("/api/v1/deliveries", headers=AUTH)).json()
        return list(body["deliveries"])

    async def any_delivered() -> bool:
        return bool(await delivered())

    await wait_until(any_delivered, "the delivery of DiskFull")
    assert [d["alerts"] for d in await delivered()] == [1]  # DiskFull alone
    alone = await client.post("/api/v1/alerts", data=_body("Watchdog"), headers=AUTH)
    assert await alone.json() == {"accepted": 1, "notifications": 0, "deduplicated": 0}

    (after,) = (await (await client.get("/api/v1/status", headers=AUTH)).json())["heartbeats"]
    assert after["state"] == "ok"
    assert after["last_seen"] is not None
    assert after["due_at"] == after["last_seen"] + 600
    assert after["channels"] == ["console"]


async def test_a_reload_that_adds_a_heartbeat_starts_watching_it(
    app_client: AppFactory, write_config: Callable[[str], Path]
) -> None:
    client = await app_client(LOG_CONFIG + WATCHDOG)
    write_config(LOG_CONFIG + WATCHDOG + DEADMAN)
    assert (await client.post("/-/reload", headers=AUTH)).status == 200
    status = await (await client.get("/api/v1/status", headers=AUTH)).json()
    heartbeats = {h["name"]: h for h in status["heartbeats"]}
    assert set(heartbeats) == {"watchdog", "deadman"}
    assert heartbeats["deadman"]["state"] == "waiting"
    assert heartbeats["deadman"]["due_at"] is not None
