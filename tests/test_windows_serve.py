"""Time windows in a real ``notifier serve`` (DESIGN §9): a window that opens at a minute
boundary, with ``when_muted: defer`` and ``drop`` side by side.

Alertmanager's ``times`` have minute resolution, so the window opens at the next whole
minute in UTC (or the one after, leaving the service time to start and take the posts
before it). Before it opens, a group on an unmuted route is delivered (the service is
delivering) while the muted groups wait; after it opens, the deferred group arrives
once, with the state of its latest post, and the dropped one never does.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from notifier.testing import make_payload
from tests.processes import WebhookSink, running_notifier, serve_app, wait_until
from tests.stand_ins import write_config

# Time to start the service and post before the window opens; else the next minute.
_LEAD = timedelta(seconds=25)


def next_opening() -> datetime:
    """The first whole UTC minute at least ``_LEAD`` away."""
    now = datetime.now(UTC)
    opening = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return opening if opening - now >= _LEAD else opening + timedelta(minutes=1)


def window(opening: datetime) -> dict[str, Any]:
    start = opening.hour * 60 + opening.minute
    end = min(start + 10, 24 * 60)
    return {
        "name": "opens-soon",
        "time_intervals": [
            {
                "times": [
                    {
                        "start_time": f"{start // 60:02d}:{start % 60:02d}",
                        "end_time": f"{end // 60:02d}:{end % 60:02d}",
                    }
                ]
            }
        ],
    }


def payload(group: str, *venues: str) -> dict[str, object]:
    alerts = [
        make_payload(labels={"group": group, "venue": venue}, alertname="OrderLatency")
        .alerts[0]
        .model_dump(mode="json", by_alias=True)
        for venue in venues
    ]
    sent = make_payload(alerts=alerts, group_key=f'{{}}:{{group="{group}"}}')
    return sent.to_alertmanager_json()


def config(tmp_path: Path, sink_url: str, opening: datetime) -> Path:
    path = write_config(
        tmp_path / "notifier.yaml",
        {
            name: {"type": "webhook", "url": f"{sink_url}/{name}"}
            for name in ("deferred", "dropped", "control")
        },
        [
            {
                "name": "defer",
                "matchers": ['group="defer"'],
                "channels": ["deferred"],
                "active_time_intervals": ["opens-soon"],
            },
            {
                "name": "drop",
                "matchers": ['group="drop"'],
                "channels": ["dropped"],
                "active_time_intervals": ["opens-soon"],
                "when_muted": "drop",
            },
            {"name": "control", "matchers": ['group="control"'], "channels": ["control"]},
        ],
    )
    document = yaml.safe_load(path.read_text())
    document["time_intervals"] = [window(opening)]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


async def test_a_deferred_notification_arrives_once_when_its_window_opens(
    tmp_path: Path,
) -> None:
    sink = WebhookSink()
    opening = next_opening()
    async with (
        serve_app(sink.app()) as sink_url,
        running_notifier(config(tmp_path, sink_url, opening), tmp_path) as notifier,
    ):
        assert datetime.now(UTC) < opening, "the service took too long to start"
        for sent in (
            payload("defer", "A"),
            payload("drop", "A"),
            payload("defer", "A", "B"),  # the group grew while muted: its latest state
            payload("control", "A"),
        ):
            assert await notifier.post_alerts(sent) == 202
        assert datetime.now(UTC) < opening, "the posts took too long"

        def paths() -> list[str]:
            return [request.path for request in sink.requests]

        await wait_until(lambda: paths() == ["/control"], "the unmuted group's delivery")
        # Delivering, and the muted groups wait: the deferred one durably queued.
        status = await notifier.get_json("/api/v1/status")
        assert status["queue"]["queued"] == 1
        assert paths() == ["/control"]

        until_open = (opening - datetime.now(UTC)).total_seconds()
        await wait_until(
            lambda: "/deferred" in paths(), "the deferred notification", timeout=until_open + 30
        )
        await wait_until(notifier.idle, "every job's outcome")
        (deferred,) = [r for r in sink.requests if r.path == "/deferred"]
        wall_clock = time.time() - time.monotonic()
        assert datetime.fromtimestamp(deferred.at + wall_clock, UTC) >= opening - timedelta(
            seconds=0.5  # the two clocks' pairing above, not a speed
        )
        body = deferred.json()
        assert sorted(a["labels"]["venue"] for a in body["alerts"]) == ["A", "B"]
        assert {a["status"] for a in body["alerts"]} == {"firing"}
        assert sorted(paths()) == ["/control", "/deferred"]
        deliveries = (await notifier.get_json("/api/v1/deliveries"))["deliveries"]
        assert sorted(d["channel"] for d in deliveries) == ["control", "deferred"]
