"""Part 1, ingest: requests/s and alerts/s of 10-alert payloads, service vs bare handler.

For each server (the bare handler first, then the real service with its dispatcher
delivering to the sink) and each connection count, a warm-up run then a measured run,
each with its own run id so every body is new to the dedup store. The load comes from
wrk (a Lua ``request()`` building a distinct body per request) or, without wrk, from
``loadgen`` (which may then cap the figures: it is Python on one core).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, replace
from typing import Any

import aiohttp
import servers
from common import Bench, Row, percentile, sink_call
from loadgen import Target, post_bodies
from payloads import ALERTS_PER_TEN_PAYLOAD, TAG, tagged_body, ten_alert_template
from procs import CpuMeter
from wrkrun import run_wrk, write_script

CONNECTIONS = (16, 64)
PATH = "/api/v1/alerts"
RATIO_TARGET = 0.5


@dataclass(frozen=True)
class Figure:
    server: str
    connections: int
    requests: int
    non_2xx: int
    errors: int
    seconds: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu: float = 0.0  # share of one core over the measured run
    generator_cpu: float = 0.0

    @property
    def alerts_per_s(self) -> float:
        return self.req_per_s * ALERTS_PER_TEN_PAYLOAD


async def _with_wrk(
    bench: Bench, server: servers.Server, connections: int, run: str, seconds: float
) -> Figure:
    script = bench.workdir / f"ingest-{run}.lua"
    write_script(ten_alert_template(), run, PATH, script)
    result = await asyncio.to_thread(
        run_wrk,
        server.url,
        script,
        connections=connections,
        seconds=seconds,
        core=bench.placement.client,
    )
    return Figure(
        server.name,
        connections,
        result.requests,
        result.non_2xx,
        result.socket_errors,
        result.duration_s,
        result.ok_per_s,
        result.p50_ms,
        result.p99_ms,
    )


async def _with_python(
    server: servers.Server, connections: int, run: str, seconds: float
) -> Figure:
    pieces = ten_alert_template().split(TAG)
    result = await post_bodies(
        Target("127.0.0.1", server.port, PATH),
        lambda i: tagged_body(pieces, f"{run}-{i}"),
        connections=connections,
        duration=seconds,
    )
    latencies_ms = [ns / 1e6 for ns in result.latencies_ns]
    return Figure(
        server.name,
        connections,
        result.answered,
        result.answered - result.ok,
        result.errors,
        result.elapsed_s,
        result.ok / result.elapsed_s,
        percentile(latencies_ms, 50),
        percentile(latencies_ms, 99),
    )


async def _run_once(
    bench: Bench, server: servers.Server, connections: int, run: str, seconds: float
) -> Figure:
    """One load run, with the CPU share the server and the generator used meanwhile."""
    meter = CpuMeter({"server": server.proc.pid}, generator=True)
    if bench.generator == "wrk":
        figure = await _with_wrk(bench, server, connections, run, seconds)
    else:
        figure = await _with_python(server, connections, run, seconds)
    shares = meter.shares()
    return replace(figure, server_cpu=shares["server"], generator_cpu=shares["generator"])


async def _measure(bench: Bench, server: servers.Server, connections: int) -> Figure:
    """A warm-up run, then the measured run (each with fresh payloads)."""
    prefix = f"{bench.run_id}-{server.name}-c{connections}"
    await _run_once(bench, server, connections, f"{prefix}-warm", bench.warmup_s)
    return await _run_once(bench, server, connections, f"{prefix}-measure", bench.measure_s)


async def _measure_all(bench: Bench, server: servers.Server) -> list[Figure]:
    return [await _measure(bench, server, c) for c in CONNECTIONS]


async def run(bench: Bench, sink: servers.Server) -> tuple[list[Row], dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        await sink_call(session, sink.url, "POST", "/reset?record=0")
        async with servers.bare(bench.workdir, bench.placement) as bare:
            bare_figures = await _measure_all(bench, bare)
        async with servers.service(
            bench.workdir / "ingest", sink, bench.placement, bench.service
        ) as service:
            service_figures = await _measure_all(bench, service)
        delivered = await sink_call(session, sink.url, "GET", "/stats")
    rows = [
        row
        for bare_fig, service_fig in zip(bare_figures, service_figures, strict=True)
        for row in _rows(bare_fig, service_fig)
    ]
    data = {
        "generator": bench.generator,
        "figures": [
            asdict(f) | {"alerts_per_s": f.alerts_per_s} for f in bare_figures + service_figures
        ],
        "sink_during_service_runs": delivered,
    }
    return rows, data


def _cpu(figure: Figure) -> str:
    return f"{figure.server_cpu:.2f} / {figure.generator_cpu:.2f} core"


def _latency(figure: Figure) -> str:
    return f"{figure.p50_ms:.1f} / {figure.p99_ms:.1f} ms"


def _rows(bare: Figure, service: Figure) -> list[Row]:
    conns = f"{service.connections} conn"
    ratio = service.req_per_s / bare.req_per_s if bare.req_per_s else 0.0
    rows = [
        Row("ingest", f"{conns}: bare handler req/s", f"{bare.req_per_s:,.0f}"),
        Row("ingest", f"{conns}: bare P50 / P99", _latency(bare)),
        Row("ingest", f"{conns}: bare CPU / load gen CPU", _cpu(bare)),
        Row("ingest", f"{conns}: service req/s", f"{service.req_per_s:,.0f}"),
        Row("ingest", f"{conns}: service alerts/s", f"{service.alerts_per_s:,.0f}"),
        Row("ingest", f"{conns}: service P50 / P99", _latency(service)),
        Row("ingest", f"{conns}: service CPU / load gen CPU", _cpu(service)),
        Row(
            "ingest",
            f"{conns}: service ÷ bare (req/s)",
            f"{ratio:.2f}",
            f"≥ {RATIO_TARGET}",
            ratio >= RATIO_TARGET,
        ),
    ]
    for fig in (bare, service):
        if fig.non_2xx or fig.errors:
            rows.append(
                Row(
                    "ingest",
                    f"{conns}: {fig.server} non-2xx / socket errors",
                    f"{fig.non_2xx} / {fig.errors}",
                    "0 / 0",
                    False,
                )
            )
    return rows
