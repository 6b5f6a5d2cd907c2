"""A heartbeat on the real ``notifier serve`` (DESIGN §11): told once when its alerts stop,
once when they come back, and a SIGKILL and restart in between adds nothing.

One webhook channel points at a sink; the heartbeat's timeout is 3s. The processes run on
one SQLite file, each killed with SIGKILL once its queue is empty (so no send is under
way, and at-least-once delivery has nothing to repeat). Every wait is for an event;
"nothing more" is checked once the queue is empty after the last one, when anything
the heartbeat's state changes had enqueued would be there. Only the last renewal may
be followed by one more miss: the test does not stop the clock after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.processes import (
    NotifierProcess,
    WebhookSink,
    running_notifier,
    serve_app,
    wait_until,
    webhook_payload,
)
from tests.stand_ins import write_config

WAIT = 30.0  # a bound for a hang on a loaded machine, not a speed


def _config(tmp_path: Path, sink_url: str) -> Path:
    path = write_config(
        tmp_path / "notifier.yaml",
        {"sink": {"type": "webhook", "url": f"{sink_url}/hook"}},
        default_channels=["sink"],
    )
    document = yaml.safe_load(path.read_text())
    document["heartbeats"] = [
        {
            "name": "watchdog",
            "matchers": ['alertname="Watchdog"'],
            "timeout": "3s",
            "channels": ["sink"],
        }
    ]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _told(sink: WebhookSink) -> list[tuple[str, str]]:
    """(status, alertname) of every notification the sink got, in order."""
    told = []
    for request in sink.requests:
        body = request.json()
        told += [(body["status"], alert["labels"]["alertname"]) for alert in body["alerts"]]
    return told


async def _heartbeat(notifier: NotifierProcess) -> dict[str, Any]:
    (heartbeat,) = (await notifier.get_json("/api/v1/status"))["heartbeats"]
    assert heartbeat["name"] == "watchdog"
    return dict(heartbeat)


async def _renew(notifier: NotifierProcess) -> None:
    payload = webhook_payload("Watchdog", severity="none")
    assert await notifier.post_alerts(payload) == 202


async def _settled(notifier: NotifierProcess, sink: WebhookSink, count: int) -> None:
    await wait_until(lambda: len(sink.requests) >= count, f"{count} notifications", WAIT)
    await wait_until(notifier.idle, "an empty queue", WAIT)


async def test_a_silent_heartbeat_is_told_once_and_its_return_once_across_restarts(
    tmp_path: Path,
) -> None:
    sink = WebhookSink()
    async with serve_app(sink.app()) as sink_url:
        config = _config(tmp_path, sink_url)
        async with running_notifier(config, tmp_path, name="first") as first:
            await _renew(first)
            await _settled(first, sink, 1)  # the alerts stop: missed
            assert (await _heartbeat(first))["state"] == "missed"
            first.kill()

        async with running_notifier(config, tmp_path, name="second") as second:
            assert (await _heartbeat(second))["state"] == "missed"
            await _renew(second)
            await _settled(second, sink, 2)  # back
            second.kill()

        async with running_notifier(config, tmp_path, name="third") as third:
            # Its renewal's timer survived the kill: the silence since is told once.
            await _settled(third, sink, 3)
            await _renew(third)
            await _settled(third, sink, 4)

    told = _told(sink)
    missed, back = ("firing", "HeartbeatMissed"), ("resolved", "HeartbeatMissed")
    assert told[:4] == [missed, back, missed, back]
    # The alerts stopped again after the last renewal: a slow machine may tell that too.
    assert told[4:] in ([], [missed])
    assert sink.duplicates() == 0
    assert all(r.json()["notifier"]["route"] == "heartbeat" for r in sink.requests)
