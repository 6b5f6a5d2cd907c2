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
    redis_cpu: float = 0.0  # the private redis-server's, with --store redis

    @property
    def alerts_per_s(self) -> float:
        return self.req_per_s * ALERTS_PER_TEN_PAYLOAD


async def _with_wrk(
    bench: Bench,
    name: str,
    targets: list[servers.Server],
    connections: int,
    run: str,
    seconds: float,
    core: int | None,
) -> Figure:
    """One wrk per target at once, the connections split evenly; their figures added.

    Latency percentiles cannot be merged from wrk's summaries: the worst target's count.
    """
    share = connections // len(targets)
    runs = []
    for index, target in enumerate(targets):
        script = bench.workdir / f"ingest-{run}-{index}.lua"
        write_script(ten_alert_template(), f"{run}-{index}", PATH, script)
        runs.append(
            asyncio.to_thread(
                run_wrk, target.url, script, connections=share, seconds=seconds, core=core
            )
        )
    results = await asyncio.gather(*runs)
    return Figure(
        name,
        connections,
        sum(r.requests for r in results),
        sum(r.non_2xx for r in results),
        sum(r.socket_errors for r in results),
        max(r.duration_s for r in results),
        sum(r.ok_per_s for r in results),
        max(r.p50_ms for r in results),
        max(r.p99_ms for r in results),
    )


async def _with_python(
    name: str, targets: list[servers.Server], connections: int, run: str, seconds: float
) -> Figure:
    pieces = ten_alert_template().split(TAG)
    result = await post_bodies(
        [Target("127.0.0.1", target.port, PATH) for target in targets],
        lambda i: tagged_body(pieces, f"{run}-{i}"),
        connections=connections,
        duration=seconds,
    )
    latencies_ms = [ns / 1e6 for ns in result.latencies_ns]
    return Figure(
        name,
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
    bench: Bench,
    name: str,
    targets: list[servers.Server],
    connections: int,
    run: str,
    seconds: float,
) -> Figure:
    """One load run, with the CPU share the servers (added), the generator and Redis used."""
    pids = {f"server-{i}": target.proc.pid for i, target in enumerate(targets)}
    if bench.redis is not None and name == "service":
        pids["redis"] = bench.redis.proc.pid
    meter = CpuMeter(pids, generator=True)
    if bench.generator == "wrk":
        core = bench.placement.client if name == "bare" else bench.placement.load
        figure = await _with_wrk(bench, name, targets, connections, run, seconds, core)
    else:
        figure = await _with_python(name, targets, connections, run, seconds)
    shares = meter.shares()
    return replace(
        figure,
        server_cpu=sum(shares[pid_name] for pid_name in pids if pid_name.startswith("server-")),
        generator_cpu=shares["generator"],
        redis_cpu=shares.get("redis", 0.0),
    )


async def _measure_all(bench: Bench, name: str, targets: list[servers.Server]) -> list[Figure]:
    """For each connection count, a warm-up run then the measured run (fresh payloads each)."""
    figures = []
    for connections in CONNECTIONS:
        prefix = f"{bench.run_id}-{name}-c{connections}"
        await _run_once(bench, name, targets, connections, f"{prefix}-warm", bench.warmup_s)
        measure = f"{prefix}-measure"
        figures.append(await _run_once(bench, name, targets, connections, measure, bench.measure_s))
    return figures


async def run(bench: Bench, sink: servers.Server) -> tuple[list[Row], dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        await sink_call(session, sink.url, "POST", "/reset?record=0")
        async with servers.bare(bench.workdir, bench.placement) as bare:
            bare_figures = await _measure_all(bench, "bare", [bare])
        async with servers.services(
            bench.workdir / "ingest", sink, bench.placement, bench.service
        ) as replicas:
            service_figures = await _measure_all(bench, "service", replicas)
        delivered = await sink_call(session, sink.url, "GET", "/stats")
    replicas_label = f"{bench.service.replicas} replica" + (
        "s" if bench.service.replicas > 1 else ""
    )
    worst = bench.service.replicas > 1 and bench.generator == "wrk"
    rows = [
        row
        for bare_fig, service_fig in zip(bare_figures, service_figures, strict=True)
        for row in _rows(bare_fig, service_fig, replicas_label, worst)
    ]
    data = {
        "generator": bench.generator,
        "replicas": bench.service.replicas,
        "figures": [
            asdict(f) | {"alerts_per_s": f.alerts_per_s} for f in bare_figures + service_figures
        ],
        "sink_during_service_runs": delivered,
    }
    return rows, data


def _cpu(figure: Figure) -> str:
    redis = f" / {figure.redis_cpu:.2f}" if figure.redis_cpu else ""
    return f"{figure.server_cpu:.2f} / {figure.generator_cpu:.2f}{redis} core"


def _latency(figure: Figure) -> str:
    return f"{figure.p50_ms:.1f} / {figure.p99_ms:.1f} ms"


def _rows(bare: Figure, service: Figure, replicas: str, worst_replica: bool) -> list[Row]:
    conns = f"{service.connections} conn"
    ratio = service.req_per_s / bare.req_per_s if bare.req_per_s else 0.0
    worst = " (worst replica)" if worst_replica else ""
    redis = " / Redis CPU" if service.redis_cpu else ""
    rows = [
        Row("ingest", f"{conns}: bare handler req/s", f"{bare.req_per_s:,.0f}"),
        Row("ingest", f"{conns}: bare P50 / P99", _latency(bare)),
        Row("ingest", f"{conns}: bare CPU / load gen CPU", _cpu(bare)),
        Row("ingest", f"{conns}: service req/s", f"{service.req_per_s:,.0f}"),
        Row("ingest", f"{conns}: service alerts/s", f"{service.alerts_per_s:,.0f}"),
        Row("ingest", f"{conns}: service P50 / P99" + worst, _latency(service)),
        Row("ingest", f"{conns}: service CPU / load gen CPU" + redis, _cpu(service)),
        Row(
            "ingest",
            f"{conns}: service ({replicas}) ÷ bare (1 process), req/s",
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
