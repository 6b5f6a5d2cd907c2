"""The load tester against small real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from notifier.loadtest import (
    LoadtestOptions,
    Sample,
    render_json,
    render_text,
    run_loadtest,
    summarise,
)
from notifier.payload import WebhookPayload

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
TOKEN = "load-test-token"


@dataclass
class Receiver:
    """What the fake receiver saw; every ``fail_every``-th request is answered 503."""

    fail_every: int = 0
    requests: int = 0
    failed: int = 0
    group_keys: set[str] = field(default_factory=set)
    fingerprints: set[str] = field(default_factory=set)
    severities: set[str] = field(default_factory=set)
    alerts_per_payload: set[int] = field(default_factory=set)
    unauthorised: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.unauthorised += 1
        assert request.content_type == "application/json"
        payload = WebhookPayload.model_validate_json(await request.read())
        self.group_keys.add(payload.group_key)
        self.fingerprints.update(a.fingerprint for a in payload.alerts)
        self.severities.update(a.labels["severity"] for a in payload.alerts)
        self.alerts_per_payload.add(len(payload.alerts))
        if self.fail_every and self.requests % self.fail_every == 0:
            self.failed += 1
            return web.json_response({"error": "store unavailable"}, status=503)
        return web.json_response({"accepted": len(payload.alerts)}, status=202)


async def _serve(aiohttp_server: ServerFactory, receiver: Receiver) -> str:
    app = web.Application()
    app.router.add_post("/api/v1/alerts", receiver.handle)
    server = await aiohttp_server(app)
    assert server.host == "127.0.0.1"
    return str(server.make_url("/api/v1/alerts"))


async def test_a_timed_run_stops_by_itself_and_counts_what_the_server_saw(
    aiohttp_server: ServerFactory,
) -> None:
    receiver = Receiver()
    url = await _serve(aiohttp_server, receiver)
    ticks: list[int] = []
    options = LoadtestOptions(
        url=url, duration=1.0, concurrency=8, alerts_per_payload=3, token=TOKEN
    )
    began = time.monotonic()
    async with asyncio.timeout(30):  # a run that does not stop by itself fails here
        result = await run_loadtest(options, ticks.append)
    elapsed = time.monotonic() - began

    # It ran its whole duration, and its own clock agrees with ours.
    assert options.duration <= result.total_time <= elapsed
    assert result.total_requests == receiver.requests > 8
    assert result.status_codes == {"202": receiver.requests}
    assert result.error_rate == 0.0
    assert result.concurrent_users == 8
    assert result.throughput == pytest.approx(result.total_requests / result.total_time)
    assert result.alerts_per_second == pytest.approx(3 * result.throughput)
    assert result.avg_response_time is not None and result.p95_response_time is not None
    assert result.p99_response_time is not None
    assert 0 < result.avg_response_time <= result.total_time
    assert result.p95_response_time <= result.p99_response_time <= result.total_time
    # Each request is its own group with fresh alerts, so notifier's dedup drops none.
    assert len(receiver.group_keys) == receiver.requests
    assert len(receiver.fingerprints) == 3 * receiver.requests
    assert receiver.severities == {"critical", "warning", "info"}
    assert receiver.alerts_per_payload == {3}
    assert receiver.unauthorised == 0
    assert sum(ticks) == options.progress_steps == 1


async def test_the_request_limit_ends_the_run_early(aiohttp_server: ServerFactory) -> None:
    receiver = Receiver()
    url = await _serve(aiohttp_server, receiver)
    ticks: list[int] = []
    options = LoadtestOptions(url=url, duration=30.0, concurrency=5, max_requests=37, token=TOKEN)
    result = await run_loadtest(options, ticks.append)

    assert result.total_time < options.duration  # it did not run its whole duration
    assert result.total_requests == receiver.requests == 37
    assert receiver.alerts_per_payload == {10}
    assert sum(ticks) == 30  # the progress bar is completed when the run ends early


async def test_503_answers_count_as_errors(aiohttp_server: ServerFactory) -> None:
    receiver = Receiver(fail_every=4)
    url = await _serve(aiohttp_server, receiver)
    options = LoadtestOptions(url=url, duration=1.0, concurrency=4, max_requests=200, token=TOKEN)
    result = await run_loadtest(options, None)

    assert result.total_requests == receiver.requests
    assert receiver.failed == receiver.requests // 4 > 0
    assert result.status_codes == {
        "202": receiver.requests - receiver.failed,
        "503": receiver.failed,
    }
    assert result.error_rate == pytest.approx(receiver.failed / receiver.requests)
    assert "503 ×" in render_text(result)


async def test_an_unreachable_receiver_is_all_errors() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = LoadtestOptions(
        url=f"http://127.0.0.1:{port}/api/v1/alerts", duration=5.0, concurrency=2, max_requests=6
    )
    result = await run_loadtest(options, None)
    assert result.total_requests == 6
    assert result.status_codes == {"error": 6}
    assert result.error_rate == 1.0


def test_summary_figures_and_renderings() -> None:
    options = LoadtestOptions(
        url="http://127.0.0.1:9/api/v1/alerts", concurrency=3, alerts_per_payload=10
    )
    samples = [Sample(0.010 * (i + 1), "202") for i in range(99)] + [Sample(5.0, "error")]
    result = summarise(samples, 10.0, options)

    assert (result.total_requests, result.throughput, result.alerts_per_second) == (
        100,
        10.0,
        100.0,
    )
    assert result.error_rate == pytest.approx(0.01)
    assert result.avg_response_time == pytest.approx((0.01 * 99 * 100 / 2 + 5.0) / 100)
    assert result.p95_response_time == pytest.approx(0.9505)  # rank 94.05: 0.95 s .. 0.96 s
    assert result.p99_response_time == pytest.approx(0.99 + 0.01 * (5.0 - 0.99))

    data = json.loads(render_json(result))
    assert {
        k: data[k] for k in ("total_requests", "total_time", "concurrent_users", "error_rate")
    } == {
        "total_requests": 100,
        "total_time": 10.0,
        "concurrent_users": 3,
        "error_rate": 0.01,
    }
    assert data["status_codes"] == {"202": 99, "error": 1}
    text = render_text(result)
    assert "10.0 req/s (100 alerts/s, 10 per payload)" in text
    assert "P95 response time   950.5 ms" in text
    assert "error rate          1.00%" in text


def test_nonsense_options_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LoadtestOptions(url="http://127.0.0.1:9/", concurrency=0)
    with pytest.raises(ValueError, match="positive"):
        LoadtestOptions(url="http://127.0.0.1:9/", duration=0)
