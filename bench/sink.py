"""The benchmark's webhook sink: an aiohttp server (own process) that records deliveries.

Run: ``python bench/sink.py --listen 127.0.0.1:PORT``. The service's webhook channel
POSTs to ``/hook``; the sink keeps, per notification, its arrival time
(``time.time_ns()``, comparable with the sender's wall clock on one machine) and the raw
body, and parses bodies only when asked, so that the hot path stays a read and an append.

Control endpoints for ``bench/run.py`` (all JSON):

- ``POST /reset?record=1|0``: forget everything; with ``record=0`` keep only counts.
- ``GET /stats``: notifications, alerts, distinct alert ids so far.
- ``GET /records``: every notification as ``{"arrival_ns", "alerts": [[id, sent_ns]...]}``.
- ``GET /wait?id=X&timeout=S``: answers ``{"arrival_ns"}`` once alert ``X`` has arrived
  (at once if it already has), 504 after ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

from aiohttp import web
from payloads import alert_ids
from standalone import serve_main

Parsed = tuple[int, list[tuple[str, int]]]


class Sink:
    """Received notifications, raw first, parsed on demand (incrementally)."""

    def __init__(self) -> None:
        self.reset(record=True)

    def reset(self, *, record: bool) -> None:
        self.record = record
        self.raw: list[tuple[int, bytes]] = []
        self.parsed: list[Parsed] = []
        self.seen: Counter[str] = Counter()
        self.first_arrival: dict[str, int] = {}
        self.waiters: dict[str, asyncio.Future[int]] = {}
        self.count = 0
        self.bytes = 0

    def add(self, arrival_ns: int, body: bytes) -> None:
        self.count += 1
        self.bytes += len(body)
        if self.record:
            self.raw.append((arrival_ns, body))
            if self.waiters:
                self.catch_up()

    def catch_up(self) -> None:
        """Parse the bodies received since the last call; wake the waiters they satisfy."""
        for arrival_ns, body in self.raw[len(self.parsed) :]:
            alerts = list(alert_ids(json.loads(body)))
            self.parsed.append((arrival_ns, alerts))
            for ident, _sent in alerts:
                self.seen[ident] += 1
                self.first_arrival.setdefault(ident, arrival_ns)
                waiter = self.waiters.pop(ident, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(arrival_ns)

    def stats(self) -> dict[str, Any]:
        self.catch_up()
        return {
            "notifications": self.count,
            "bytes": self.bytes,
            "alerts": sum(self.seen.values()),
            "distinct": len(self.seen),
        }


SINK = web.AppKey("sink", Sink)


async def hook(request: web.Request) -> web.Response:
    body = await request.read()
    request.app[SINK].add(time.time_ns(), body)
    return web.Response(status=200)


async def reset(request: web.Request) -> web.Response:
    request.app[SINK].reset(record=request.query.get("record", "1") != "0")
    return web.json_response({"reset": True})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[SINK].stats())


async def records(request: web.Request) -> web.Response:
    sink = request.app[SINK]
    sink.catch_up()
    rows = [{"arrival_ns": arrival, "alerts": alerts} for arrival, alerts in sink.parsed]
    return web.json_response({"records": rows})


async def wait(request: web.Request) -> web.Response:
    sink = request.app[SINK]
    ident = request.query["id"]
    sink.catch_up()
    if ident in sink.first_arrival:
        return web.json_response({"arrival_ns": sink.first_arrival[ident]})
    waiter = sink.waiters.setdefault(ident, asyncio.get_running_loop().create_future())
    try:
        async with asyncio.timeout(float(request.query.get("timeout", "5"))):
            arrival_ns = await asyncio.shield(waiter)
    except TimeoutError:
        sink.waiters.pop(ident, None)
        return web.json_response({"error": f"{ident} did not arrive"}, status=504)
    return web.json_response({"arrival_ns": arrival_ns})


def make_app() -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[SINK] = Sink()
    app.router.add_post("/hook", hook)
    app.router.add_post("/reset", reset)
    app.router.add_get("/stats", stats)
    app.router.add_get("/records", records)
    app.router.add_get("/wait", wait)
    return app


def main() -> None:
    serve_main(make_app, __doc__.splitlines()[0], "127.0.0.1:9099")


if __name__ == "__main__":
    main()
