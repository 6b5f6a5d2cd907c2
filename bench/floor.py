"""``--against alertmanager``, third contestant: the storm through the floor.

The floor (``bench/forwarder.py``) is the least a Python service on our stack can do per
alert: aiohttp's server reads and validates the payload, answers 202, and forwards the
body with one POST through notifier's libcurl client. It runs on the core the service
had, with the same storm (``storm_through``: the same bodies as notifier's storm, the
same 64 connections) and the same sink, so its figures bound any Python path with this
server and client on this core: "notifier ÷ floor" is what notifier's own work costs,
"floor ÷ Alertmanager" whether 1.5 × Alertmanager is within reach at all.
"""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import servers
from common import Bench, Row, sink_call
from payloads import SingleAlert
from storm import contestant_rows, storm_through


async def run(bench: Bench, sink: servers.Server) -> tuple[list[Row], dict[str, Any]]:
    """The storm through the floor on the service's core, the same sink and load."""
    async with aiohttp.ClientSession() as session:
        await sink_call(session, sink.url, "POST", "/reset?record=1")
        async with servers.forwarder(bench.workdir, bench.placement, sink) as floor:
            builder = SingleAlert("BenchStorm")
            figures = await storm_through(
                bench, session, sink, floor, "/api/v1/alerts", builder.body, accepted_status=202
            )
            async with session.get(f"{floor.url}/stats") as answer:
                figures["forwarder"] = await answer.json()
        await sink_call(session, sink.url, "POST", "/reset?record=0")
    return _rows(bench, figures), figures


def _rows(bench: Bench, f: dict[str, Any]) -> list[Row]:
    failed = Row("floor", "failed forwards", f"{f['forwarder']['failures']:,}")
    return contestant_rows(
        "floor", "floor", f, bench.storm_count, "payloads accepted (202)", failed
    )


def _ratio(numerator: float, denominator: float) -> str:
    if not denominator or not math.isfinite(denominator):
        return "n/a"
    return f"{numerator / denominator:.2f} ×"


def compare(service: dict[str, Any], am: dict[str, Any], floor: dict[str, Any]) -> list[Row]:
    """The floor against Alertmanager, and notifier against the floor (no targets)."""
    return [
        Row(
            "versus",
            "notifications/s floor ÷ Alertmanager",
            _ratio(floor["notifications_per_s"], am["notifications_per_s"]),
        ),
        Row(
            "versus",
            "notifications/s notifier ÷ floor",
            _ratio(service["notifications_per_s"], floor["notifications_per_s"]),
        ),
        Row(
            "versus",
            "CPU per notification notifier ÷ floor",
            _ratio(service["cpu_us_per_notification"], floor["cpu_us_per_notification"]),
        ),
    ]
