"""Part 2, storm: N distinct single-alert payloads as fast as possible, end to end.

A fresh service (fresh SQLite database) delivers through its one webhook channel to the
sink. The load generator posts ``bench.storm_count`` payloads over 64 connections; each
alert carries its id (label ``bench_id``) and its send time (annotation ``sent_at_ns``).
Measured: the time from the first post until the sink holds every alert, the delivered
notifications/s over that time, per-alert latency (sink arrival - send time), and the
service's peak RSS (VmHWM). The sink's records are checked: exactly N distinct alerts,
duplicates listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import profiling
import servers
from common import RESULTS_DIR, Bench, Row, percentile, sink_call
from loadgen import LoadResult, Target, post_bodies
from payloads import SingleAlert
from procs import CpuMeter, peak_rss_mib, thread_cpu_seconds

CONNECTIONS = 64
POST_BUDGET_S = 120.0
DELIVERY_BUDGET_S = 120.0
RATE_TARGET = 4000.0
P99_TARGET_MS = 300.0
RSS_TARGET_MIB = 150.0
TIMELINE_STEP_S = 0.25


async def _post_storm(bench: Bench, replicas: list[servers.Server]) -> tuple[LoadResult, list[str]]:
    """Post the storm, the connections round-robin over the replicas."""
    builder = SingleAlert("BenchStorm")
    ids = [f"storm-{bench.run_id}-{i}" for i in range(bench.storm_count)]
    result = await post_bodies(
        [Target("127.0.0.1", replica.port, "/api/v1/alerts") for replica in replicas],
        lambda i: builder.body(ids[i], time.time_ns()),
        connections=CONNECTIONS,
        duration=POST_BUDGET_S,
        count=bench.storm_count,
    )
    return result, ids


async def wait_for_sink(
    session: aiohttp.ClientSession, sink: servers.Server, expected: int
) -> dict[str, Any]:
    """Poll the sink until it holds ``expected`` distinct alerts or the budget runs out."""
    deadline = time.monotonic() + DELIVERY_BUDGET_S
    while True:
        stats = await sink_call(session, sink.url, "GET", "/stats")
        if stats["distinct"] >= expected or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.1)


def analyse(records: list[dict[str, Any]], ids: list[str], first_post_ns: int) -> dict[str, Any]:
    seen: Counter[str] = Counter()
    first_arrival: dict[str, int] = {}
    latencies_ms: list[float] = []
    for record in records:
        for ident, sent_ns in record["alerts"]:
            seen[ident] += 1
            if ident not in first_arrival:
                first_arrival[ident] = record["arrival_ns"]
                latencies_ms.append((record["arrival_ns"] - sent_ns) / 1e6)
    expected = set(ids)
    all_in_s = (max(first_arrival.values()) - first_post_ns) / 1e9 if first_arrival else 0.0
    return {
        "notifications": len(records),
        "distinct": len(seen),
        "unexpected": sorted(set(seen) - expected)[:20],
        "missing": len(expected - set(seen)),
        "missing_examples": sorted(expected - set(seen))[:10],
        "duplicates": {ident: n for ident, n in seen.items() if n > 1},
        "all_in_s": all_in_s,
        "notifications_per_s": len(records) / all_in_s if all_in_s else 0.0,
        "p50_ms": percentile(latencies_ms, 50),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": max(latencies_ms, default=float("nan")),
    }


def timeline(records: list[dict[str, Any]], origin_ns: int) -> list[dict[str, float]]:
    """Alerts posted and delivered per ``TIMELINE_STEP_S`` since the first post."""
    step_ns = int(TIMELINE_STEP_S * 1e9)
    posted: Counter[int] = Counter()
    delivered: Counter[int] = Counter()
    for record in records:
        delivered[(record["arrival_ns"] - origin_ns) // step_ns] += 1
        for _ident, sent_ns in record["alerts"]:
            posted[(sent_ns - origin_ns) // step_ns] += 1
    last = max([*posted, *delivered], default=-1)
    return [
        {"t_s": round(i * TIMELINE_STEP_S, 3), "posted": posted[i], "delivered": delivered[i]}
        for i in range(last + 1)
    ]


def cpu_per_notification(share: float, wall: float, notifications: int) -> float:
    """CPU µs spent per notification delivered: a figure other work on the core barely moves."""
    return share * wall * 1e6 / notifications if notifications else float("nan")


async def storm_through(
    bench: Bench,
    session: aiohttp.ClientSession,
    sink: servers.Server,
    server: servers.Server,
    path: str,
    make_body: Callable[[str, int], bytes],
    accepted_status: int,
) -> dict[str, Any]:
    """The storm posted to ``server`` (a contestant other than notifier: one process), whose
    alerts go to ``sink``: the same load, figures and CPU accounting as the storm's own.

    ``make_body(bench_id, sent_at_ns)`` builds one request; ``accepted_status`` is the
    answer that means "taken". The CPU share and peak RSS are ``server``'s, by its name.
    """
    ids = [f"{server.name}-{bench.run_id}-{i}" for i in range(bench.storm_count)]
    meter = CpuMeter({server.name: server.proc.pid, "sink": sink.proc.pid}, generator=True)
    started = time.monotonic()
    posted = await post_bodies(
        [Target("127.0.0.1", server.port, path)],
        lambda i: make_body(ids[i], time.time_ns()),
        connections=CONNECTIONS,
        duration=POST_BUDGET_S,
        count=bench.storm_count,
    )
    await wait_for_sink(session, sink, bench.storm_count)
    cpu = meter.shares()
    wall = time.monotonic() - started
    records = (await sink_call(session, sink.url, "GET", "/records"))["records"]
    figures = analyse(records, ids, posted.first_sent_ns)
    figures["accepted"] = posted.statuses.get(accepted_status, 0)
    figures["statuses"] = {str(k): v for k, v in posted.statuses.items()}
    figures["post_errors"] = posted.errors
    figures["post_req_per_s"] = posted.answered / posted.elapsed_s if posted.elapsed_s else 0.0
    figures["peak_rss_mib"] = peak_rss_mib(server.proc.pid)
    figures["cpu_share"] = cpu
    figures["cpu_us_per_notification"] = cpu_per_notification(
        cpu[server.name], wall, figures["notifications"]
    )
    figures["timeline"] = timeline(records, posted.first_sent_ns)
    return figures


def _thread_shares(pid: int, before: dict[int, float], wall: float) -> dict[str, float]:
    """Each service thread's share of a core since ``before``, named when py-spy can tell."""
    names = profiling.thread_names(pid)
    shares = {}
    for tid, seconds in thread_cpu_seconds(pid).items():
        name = names.get(tid, "main" if tid == pid else f"thread {tid}")
        share = round((seconds - before.get(tid, 0.0)) / wall, 3)
        if share >= 0.01:
            shares[name.removeprefix("notifier-")] = share
    return dict(sorted(shares.items(), key=lambda item: -item[1]))


async def _storm(
    bench: Bench,
    session: aiohttp.ClientSession,
    sink: servers.Server,
    replicas: list[servers.Server],
) -> dict[str, Any]:
    pids = {replica.name: replica.proc.pid for replica in replicas} | {"sink": sink.proc.pid}
    if bench.redis is not None:
        pids["redis"] = bench.redis.proc.pid
    meter = CpuMeter(pids, generator=True)
    threads_before = {r.name: thread_cpu_seconds(r.proc.pid) for r in replicas}
    started = time.monotonic()
    posted, ids = await _post_storm(bench, replicas)
    await wait_for_sink(session, sink, bench.storm_count)
    cpu = meter.shares()
    wall = time.monotonic() - started
    records = (await sink_call(session, sink.url, "GET", "/records"))["records"]
    figures = analyse(records, ids, posted.first_sent_ns)
    figures["accepted"] = posted.statuses.get(202, 0)
    figures["statuses"] = {str(k): v for k, v in posted.statuses.items()}
    figures["post_errors"] = posted.errors
    figures["post_req_per_s"] = posted.answered / posted.elapsed_s if posted.elapsed_s else 0.0
    figures["peak_rss_mib"] = {r.name: peak_rss_mib(r.proc.pid) for r in replicas}
    figures["cpu_share"] = cpu | {"service": sum(cpu[r.name] for r in replicas)}
    figures["cpu_us_per_notification"] = cpu_per_notification(
        figures["cpu_share"]["service"], wall, figures["notifications"]
    )
    first = replicas[0].proc.pid  # the one --profile records
    figures["thread_cpu_s"] = {
        tid: seconds - threads_before[replicas[0].name].get(tid, 0.0)
        for tid, seconds in thread_cpu_seconds(first).items()
    }
    figures["service_cpu_by_thread"] = {
        r.name: _thread_shares(r.proc.pid, threads_before[r.name], wall) for r in replicas
    }
    if bench.redis is not None:
        figures["redis_commandstats"] = await servers.redis_commandstats(bench.redis.url)
    figures["timeline"] = timeline(records, posted.first_sent_ns)
    return figures


async def run(bench: Bench, sink: servers.Server) -> tuple[list[Row], dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        await sink_call(session, sink.url, "POST", "/reset?record=1")
        async with servers.services(
            bench.workdir / "storm", sink, bench.placement, bench.service
        ) as replicas:
            profile = (
                profiling.py_spy(  # the first replica only
                    replicas[0].proc.pid,
                    RESULTS_DIR / "storm-profile.txt",
                    bench.placement.load,
                    bench.workdir / "py-spy.log",
                )
                if bench.profile
                else contextlib.nullcontext(None)
            )
            with profile as raw_profile:
                figures = await _storm(bench, session, sink, replicas)
        await sink_call(session, sink.url, "POST", "/reset?record=0")
    if raw_profile is not None and raw_profile.exists():
        figures["profile"] = {"raw": str(raw_profile), **profiling.summarize(raw_profile)}
        figures["profile"]["cpu µs per notification, by part"] = profiling.parts_per_notification(
            raw_profile,
            figures["thread_cpu_s"],
            figures["notifications"] // len(figures["peak_rss_mib"]),
        )
    return _rows(bench, figures), figures


def _rows(bench: Bench, f: dict[str, Any]) -> list[Row]:
    n = bench.storm_count
    rss = list(f["peak_rss_mib"].values())
    known = [value for value in rss if value is not None]
    complete = f["distinct"] == n and not f["unexpected"]
    rows = [
        Row(
            "storm",
            "payloads accepted (202)",
            f"{f['accepted']:,} / {n:,}",
            f"{n:,}",
            f["accepted"] == n,
        ),
        Row("storm", "posting rate", f"{f['post_req_per_s']:,.0f} req/s"),
        Row("storm", "distinct alerts at sink", f"{f['distinct']:,}", f"= {n:,}", complete),
        Row("storm", "duplicates at sink", f"{len(f['duplicates'])}"),
        Row("storm", f"time until all {n:,} at sink", f"{f['all_in_s']:.2f} s"),
        Row(
            "storm",
            "delivered notifications/s",
            f"{f['notifications_per_s']:,.0f}",
            f"≥ {RATE_TARGET:,.0f}",
            f["notifications_per_s"] >= RATE_TARGET and complete,
        ),
        Row("storm", "latency P50 (sink − post)", f"{f['p50_ms']:.0f} ms"),
        Row(
            "storm",
            "latency P99 (sink − post)",
            f"{f['p99_ms']:.0f} ms",
            f"< {P99_TARGET_MS:.0f} ms",
            f["p99_ms"] < P99_TARGET_MS,
        ),
        Row(
            "storm",
            "CPU service / load gen / sink" + (" / Redis" if bench.redis else ""),
            " / ".join(
                f"{f['cpu_share'][name]:.2f}"
                for name in ("service", "generator", "sink", "redis")
                if name in f["cpu_share"]
            )
            + " core",
        ),
        Row(
            "storm",
            "service CPU per notification",
            f"{f['cpu_us_per_notification']:,.0f} µs",
        ),
        *(
            Row(
                "storm",
                f"{name} CPU by thread",
                ", ".join(f"{thread} {share:.2f}" for thread, share in threads.items()),
            )
            for name, threads in f["service_cpu_by_thread"].items()
        ),
        Row(
            "storm",
            "service peak RSS (VmHWM)" + (", per replica" if len(rss) > 1 else ""),
            " / ".join(f"{value:.0f}" if value else "n/a" for value in rss) + " MiB",
            f"< {RSS_TARGET_MIB:.0f} MiB",
            len(known) == len(rss) and max(known) < RSS_TARGET_MIB,
        ),
    ]
    if "redis_commandstats" in f:
        rows.append(Row("storm", "Redis time by command", _redis_time(f["redis_commandstats"])))
    return rows


def _redis_time(stats: dict[str, dict[str, Any]], top: int = 3) -> str:
    """The commands Redis spent most time in: total, calls, µs per call."""
    parts = []
    for name, stat in list(stats.items())[:top]:
        seconds, calls, per_call = (
            float(stat["usec"]) / 1e6,
            int(stat["calls"]),
            stat["usec_per_call"],
        )
        parts.append(f"{name} {seconds:.2f} s / {calls:,} calls ({float(per_call):.0f} µs each)")
    return ", ".join(parts)


def contestant_rows(
    part: str, who: str, f: dict[str, Any], count: int, accepted: str, check: Row
) -> list[Row]:
    """The table rows of a peer's storm (``storm_through``'s figures under ``part``):
    ``accepted`` names its accepted status, ``check`` is its own correctness row."""
    rss = f["peak_rss_mib"]
    shares = " / ".join(f"{f['cpu_share'][name]:.2f}" for name in (part, "generator", "sink"))
    return [
        Row(part, accepted, f"{f['accepted']:,} / {count:,}"),
        Row(part, "distinct alerts at sink", f"{f['distinct']:,} / {count:,}"),
        check,
        Row(part, "delivered notifications/s", f"{f['notifications_per_s']:,.0f}"),
        Row(part, "latency P50 / P99", f"{f['p50_ms']:.0f} / {f['p99_ms']:.0f} ms"),
        Row(part, f"CPU {who} / load gen / sink", f"{shares} core"),
        Row(part, f"{who} CPU per notification", f"{f['cpu_us_per_notification']:,.0f} µs"),
        Row(part, "peak RSS (VmHWM)", f"{rss:.0f} MiB" if rss else "n/a"),
    ]
