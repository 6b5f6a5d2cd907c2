"""Part 3, single alert: receipt-to-sink latency with no load, one alert at a time.

Against a fresh service, each alert is posted only after the previous one reached the
sink: the driver asks the sink to tell it when alert ``id`` arrives (``GET /wait``),
posts the alert (stamped with ``time.time_ns()`` just before it is written), and takes
the sink's arrival time. Latency = sink arrival - send time. A few unmeasured alerts
warm the path first. With several replicas the alerts go to each in turn (any replica's
dispatcher may deliver it).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import servers
from common import Bench, Row, percentile, sink_call
from loadgen import Connection, Target
from payloads import SingleAlert

WARMUP_ALERTS = 20
WAIT_S = 5.0
MAX_LOST = 5  # stop early: something is broken, no point waiting 5 s per alert
P99_TARGET_MS = 10.0


async def _arrival(session: aiohttp.ClientSession, sink: servers.Server, ident: str) -> int | None:
    url = f"{sink.url}/wait?id={ident}&timeout={WAIT_S}"
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=WAIT_S + 5)) as answer:
        return int((await answer.json())["arrival_ns"]) if answer.status == 200 else None


async def _one(
    session: aiohttp.ClientSession,
    sink: servers.Server,
    connection: Connection,
    builder: SingleAlert,
    ident: str,
) -> float | None:
    """Latency (ms) of one alert, None if it did not arrive or was not accepted."""
    waiting = asyncio.create_task(_arrival(session, sink, ident))
    await asyncio.sleep(0)  # let the wait request leave first
    sent_ns = time.time_ns()
    status = await connection.post(builder.body(ident, sent_ns))
    arrival_ns = await waiting
    if status != 202 or arrival_ns is None:
        return None
    return (arrival_ns - sent_ns) / 1e6


async def _latencies(
    bench: Bench, sink: servers.Server, replicas: list[servers.Server]
) -> tuple[list[float], int]:
    builder = SingleAlert("BenchSingle")
    connections = [
        await Connection(Target("127.0.0.1", replica.port, "/api/v1/alerts")).open()
        for replica in replicas
    ]
    latencies: list[float] = []
    failures = 0
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(WARMUP_ALERTS + bench.single_count):
                connection = connections[i % len(connections)]
                latency = await _one(
                    session, sink, connection, builder, f"single-{bench.run_id}-{i}"
                )
                if i < WARMUP_ALERTS:
                    continue
                if latency is None:
                    failures += 1
                    if failures >= MAX_LOST:
                        break
                else:
                    latencies.append(latency)
    finally:
        for connection in connections:
            connection.close()
    return latencies, failures


async def run(bench: Bench, sink: servers.Server) -> tuple[list[Row], dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        await sink_call(session, sink.url, "POST", "/reset?record=1")
    async with servers.services(
        bench.workdir / "single", sink, bench.placement, bench.service
    ) as replicas:
        latencies, failures = await _latencies(bench, sink, replicas)
    figures = {
        "alerts": len(latencies),
        "failures": failures,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
    }
    rows = [
        Row(
            "single",
            "alerts measured (lost)",
            f"{len(latencies)} ({failures})",
            "0 lost",
            failures == 0,
        ),
        Row("single", "latency P50 (sink − send)", f"{figures['p50_ms']:.2f} ms"),
        Row(
            "single",
            "latency P99 (sink − send)",
            f"{figures['p99_ms']:.2f} ms",
            f"< {P99_TARGET_MS:.0f} ms",
            figures["p99_ms"] < P99_TARGET_MS,
        ),
        Row("single", "latency max", f"{figures['max_ms']:.2f} ms"),
    ]
    return rows, figures
