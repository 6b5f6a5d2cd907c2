"""The seed's load tester: N concurrent users posting Alertmanager payloads to a receiver.

Every request carries a realistic Alertmanager v4 payload for a group of its own (a
``loadtest_run`` label and a per-request ``group`` label give every alert a fresh
fingerprint), so notifier's dedup lets each one through and every request costs a real
route, dedup check and durable enqueue. Severities are mixed like real traffic; the
``loadtest_run`` label lets a routing rule send load-test alerts somewhere harmless.

The run is bounded twice: no request starts after ``duration`` and none after
``max_requests``; a request already in flight at the deadline finishes (within
``timeout``). Nothing here retries: each response time and status is recorded as it
came. Only the given URL is contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from notifier.payload import labels_fingerprint
from notifier.stats import mean, percentile

SEVERITY_MIX = ("warning", "info", "critical", "warning", "info", "info")
TRANSPORT_ERROR = "error"  # the status recorded when no HTTP answer came (refused, timeout)
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class LoadtestOptions:
    url: str  # the receiver, e.g. http://127.0.0.1:9095/api/v1/alerts
    duration: float = 30.0  # seconds
    concurrency: int = 64
    alerts_per_payload: int = 10
    max_requests: int = 1_000_000
    token: str | None = None  # bearer token
    timeout: float = 10.0  # seconds, per request

    def __post_init__(self) -> None:
        if self.duration <= 0 or self.timeout <= 0:
            raise ValueError("duration and timeout must be positive")
        if min(self.concurrency, self.alerts_per_payload, self.max_requests) < 1:
            raise ValueError("concurrency, alerts_per_payload and max_requests must be at least 1")

    @property
    def progress_steps(self) -> int:
        """What the ``progress`` calls of a run add up to: one per second of ``duration``."""
        return max(1, round(self.duration))


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float  # request start to response complete
    status: str  # the HTTP status code, or TRANSPORT_ERROR


@dataclass(frozen=True, slots=True)
class LoadtestResult:
    """The seed's load-test figures; times in seconds, ``error_rate`` a ratio (0-1)."""

    url: str
    concurrent_users: int
    alerts_per_payload: int
    total_requests: int
    total_time: float
    throughput: float  # requests completed per second
    alerts_per_second: float
    avg_response_time: float | None
    p95_response_time: float | None
    p99_response_time: float | None
    error_rate: float  # non-2xx answers and transport errors / all requests
    status_codes: dict[str, int]  # status code (or "error") -> requests


async def run_loadtest(
    options: LoadtestOptions, progress: Progress | None = None
) -> LoadtestResult:
    """Run the load test; ``progress(n)`` hears that ``n`` more seconds of it have passed.

    The calls add up to ``options.progress_steps`` (the rest arrives at the end when the
    request limit stops the run early), so they can drive ``click.progressbar.update``.
    """
    run_id = uuid.uuid4().hex[:12]
    headers = {"Content-Type": "application/json"}
    if options.token:
        headers["Authorization"] = f"Bearer {options.token}"
    samples: list[Sample] = []
    issued = 0
    start = time.monotonic()
    deadline = start + options.duration

    async def user(session: aiohttp.ClientSession) -> None:
        nonlocal issued
        while issued < options.max_requests and time.monotonic() < deadline:
            body = json.dumps(build_payload(run_id, issued, options.alerts_per_payload)).encode()
            issued += 1
            began = time.perf_counter()
            try:
                async with session.post(options.url, data=body, headers=headers) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError):
                status = TRANSPORT_ERROR
            samples.append(Sample(time.perf_counter() - began, status))

    timeout = aiohttp.ClientTimeout(total=options.timeout)
    connector = aiohttp.TCPConnector(limit=options.concurrency)
    done = asyncio.Event()
    ticker = asyncio.create_task(_tick(progress, start, options.progress_steps, done))
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await asyncio.gather(*(user(session) for _ in range(options.concurrency)))
    finally:
        done.set()
        await ticker
    return summarise(samples, time.monotonic() - start, options)


async def _tick(progress: Progress | None, start: float, steps: int, done: asyncio.Event) -> None:
    """Report each whole second that passes, then the rest of ``steps`` once ``done`` is set."""
    if progress is None:
        return
    reported = 0
    while not done.is_set():
        elapsed = time.monotonic() - start
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), math.floor(elapsed) + 1 - elapsed)
        due = min(steps, math.floor(time.monotonic() - start)) - reported
        if due > 0:
            progress(due)
            reported += due
    if reported < steps:
        progress(steps - reported)


def summarise(
    samples: Sequence[Sample], total_time: float, options: LoadtestOptions
) -> LoadtestResult:
    """The result figures from the recorded samples (pure: table-testable)."""
    times = [s.seconds for s in samples]
    errors = sum(1 for s in samples if not s.status.startswith("2"))
    total = len(samples)
    return LoadtestResult(
        url=options.url,
        concurrent_users=options.concurrency,
        alerts_per_payload=options.alerts_per_payload,
        total_requests=total,
        total_time=total_time,
        throughput=total / total_time if total_time > 0 else 0.0,
        alerts_per_second=total * options.alerts_per_payload / total_time
        if total_time > 0
        else 0.0,
        avg_response_time=mean(times),
        p95_response_time=percentile(times, 95),
        p99_response_time=percentile(times, 99),
        error_rate=errors / total if total else 0.0,
        status_codes=dict(sorted(Counter(s.status for s in samples).items())),
    )


def build_payload(run_id: str, sequence: int, alerts: int) -> dict[str, object]:
    """An Alertmanager v4 payload for group ``sequence`` of run ``run_id``, ``alerts`` firing."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    group = {"alertname": "NotifierLoadTest", "loadtest_run": run_id, "group": str(sequence)}
    items = []
    for index in range(alerts):
        labels = {
            **group,
            "severity": SEVERITY_MIX[(sequence + index) % len(SEVERITY_MIX)],
            "instance": f"loadtest-{index}.example.internal:9100",
            "job": "loadtest",
        }
        items.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {
                    "summary": f"Load test alert {index} of group {sequence}",
                    "description": f"Synthetic alert from `notifier loadtest` run {run_id}.",
                },
                "startsAt": now,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example.internal:9090/graph?g0.expr=up",
                "fingerprint": labels_fingerprint(labels),
            }
        )
    group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group.items())) + "}"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "notifier",
        "groupLabels": group,
        "commonLabels": {**group, "job": "loadtest"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.internal:9093",
        "alerts": items,
    }


def render_text(result: LoadtestResult) -> str:
    codes = ", ".join(f"{code} ×{count}" for code, count in result.status_codes.items()) or "none"
    rows = [
        ("concurrent users", f"{result.concurrent_users}"),
        ("total requests", f"{result.total_requests}"),
        ("total time", f"{result.total_time:.2f} s"),
        (
            "throughput",
            f"{result.throughput:.1f} req/s ({result.alerts_per_second:.0f} alerts/s, "
            f"{result.alerts_per_payload} per payload)",
        ),
        ("avg response time", _ms(result.avg_response_time)),
        ("P95 response time", _ms(result.p95_response_time)),
        ("P99 response time", _ms(result.p99_response_time)),
        ("error rate", f"{result.error_rate * 100:.2f}%"),
        ("status codes", codes),
    ]
    lines = [f"notifier load test against {result.url}"]
    lines += [f"  {name:<20}{value}" for name, value in rows]
    return "\n".join(lines) + "\n"


def render_json(result: LoadtestResult) -> str:
    return (
        json.dumps(
            {
                "url": result.url,
                "total_requests": result.total_requests,
                "total_time": result.total_time,
                "throughput": result.throughput,
                "alerts_per_second": result.alerts_per_second,
                "avg_response_time": result.avg_response_time,
                "p95_response_time": result.p95_response_time,
                "p99_response_time": result.p99_response_time,
                "error_rate": result.error_rate,
                "concurrent_users": result.concurrent_users,
                "alerts_per_payload": result.alerts_per_payload,
                "status_codes": result.status_codes,
                "units": {"time": "seconds", "throughput": "per second", "error_rate": "ratio"},
            },
            indent=2,
        )
        + "\n"
    )


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"
