"""The delivery-engine benchmark: ingest, storm and single-alert latency of ``notifier serve``.

Run from the project root::

    .venv/bin/python bench/run.py [--only ingest|storm|single] [--quick] [--profile]
    .venv/bin/python bench/run.py --store redis [--replicas 2]
    .venv/bin/python bench/run.py --only storm --against alertmanager

It starts everything it measures (the sink, the bare handler, fresh ``notifier serve``
processes per part, on SQLite under a temp dir or on a private redis-server; with
``--against alertmanager`` also Alertmanager and the floor, ``bench/forwarder.py``), pins
the server to core 0 and the sink and load generators to core 1 when it can (two
replicas: one per core, the rest not pinned), prints a table with the targets and a
PASS/FAIL mark, and writes the figures to ``bench/results/latest.json``. Every load is
bounded in count and time; every process it starts is stopped on the way out, also on
an error or Ctrl-C. Only 127.0.0.1 is ever contacted. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import alertmanager
import floor
import ingest
import report
import servers
import single
import storm
from common import RESULTS_DIR, Bench, Row
from procs import Placement
from servers import ServiceOptions
from wrkrun import INSTALL_HINT, wrk_path, wrk_version

Part = Callable[[Bench, servers.Server], Awaitable[tuple[list[Row], dict[str, Any]]]]
PARTS: dict[str, Part] = {
    "ingest": ingest.run,
    "storm": storm.run,
    "single": single.run,
    "alertmanager": alertmanager.run,  # only with --against alertmanager
    "floor": floor.run,  # only with --against alertmanager, after it
}
RESULTS = RESULTS_DIR / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["ingest", "single", "storm"], help="run one part only")
    parser.add_argument("--quick", action="store_true", help="3 s measurements, 1 s warm-up")
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="ingest load generator (auto: wrk when installed)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the service's log level (its log goes to a file in the temp dir)",
    )
    parser.add_argument(
        "--store",
        choices=["sqlite", "memory", "redis"],
        default="sqlite",
        help="the service's store (memory: not durable, to see what SQLite costs; redis: a"
        " private redis-server started and stopped by the bench)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        choices=[1, 2],
        default=1,
        help="notifier serve processes on one store (2 needs --store redis)",
    )
    parser.add_argument("--workers", type=int, help="the service's storage.workers")
    parser.add_argument("--storm", type=int, default=5000, help="storm payloads")
    parser.add_argument("--single", type=int, default=300, help="single-alert samples")
    parser.add_argument("--profile", action="store_true", help="py-spy the service in the storm")
    parser.add_argument(
        "--against",
        choices=["alertmanager"],
        help="also run the storm through Alertmanager and through the floor (bench/forwarder.py)"
        " on the service's core and compare",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, db)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON results file")
    args = parser.parse_args(argv)
    if args.replicas > 1 and args.store != "redis":
        parser.error("--replicas 2 needs --store redis (the store replicas share)")
    if args.against and args.only not in (None, "storm"):
        parser.error("--against compares storms: use it with --only storm or no --only")
    return args


def choose_generator(wanted: str) -> str:
    if wanted == "python" or (wanted == "auto" and wrk_path() is None):
        if wanted == "auto":
            print(
                f"wrk not found ({INSTALL_HINT}); ingest uses the Python load generator,"
                " which may cap the figures",
                file=sys.stderr,
            )
        return "python"
    if wrk_path() is None:
        sys.exit(f"wrk not found; {INSTALL_HINT}")
    return "wrk"


def make_bench(
    args: argparse.Namespace, workdir: Path, placement: Placement, redis: servers.Server | None
) -> Bench:
    redis_url = redis.url if redis else None
    return Bench(
        workdir=workdir,
        placement=placement,
        run_id=uuid.uuid4().hex[:8],
        measure_s=3.0 if args.quick else 10.0,
        warmup_s=1.0 if args.quick else 2.0,
        generator=choose_generator(args.generator),
        service=ServiceOptions(args.log_level, args.store, args.workers, args.replicas, redis_url),
        storm_count=args.storm,
        single_count=args.single,
        profile=args.profile,
        redis=redis,
    )


async def run_parts(bench: Bench, names: list[str]) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    async with servers.sink(bench.workdir, bench.placement) as sink:
        for name in names:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            part_rows, figures[name] = await PARTS[name](bench, sink)
            rows += part_rows
            print(f"  {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    if "storm" in figures and "alertmanager" in figures:
        rows += alertmanager.compare(figures["storm"], figures["alertmanager"])
    if "storm" in figures and "alertmanager" in figures and "floor" in figures:
        rows += floor.compare(figures["storm"], figures["alertmanager"], figures["floor"])
    return rows, figures


def _terminate_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops its processes."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _terminate_on_sigterm()
    busy, usable_cores = report.busy_share(), len(os.sched_getaffinity(0))
    placement = Placement.detect(args.replicas)
    placement.pin_self()
    names = [args.only] if args.only else ["ingest", "storm", "single"]
    if args.against:
        names += [args.against, "floor"]
    with contextlib.ExitStack() as stack:
        tmp = tempfile.mkdtemp(prefix="notifier-bench-")
        if not args.keep:
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        redis = None
        if args.store == "redis":
            redis = stack.enter_context(servers.redis_server(Path(tmp), placement.load))
        bench = make_bench(args, Path(tmp), placement, redis)
        generator = f"{wrk_version()} (Lua request())" if bench.generator == "wrk" else "Python"
        if args.replicas > 1:
            generator += " one per replica, connections split, figures added"
        generator += "; storm and single: Python (bench/loadgen.py)"
        if args.replicas > 1:
            generator += ", connections round-robin over the replicas"
        info = report.machine(
            placement.describe(redis is not None),
            generator,
            usable_cores,
            busy,
            asdict(bench.service),
        )
        rows, figures = asyncio.run(run_parts(bench, names))
    print(report.render_machine(info))
    print(report.render_table(rows))
    if "profile" in figures.get("storm", {}):
        print(report.render_profile(figures["storm"]["profile"]))
    report.write_json(args.output, info, rows, figures)
    print(
        f"results: {os.path.relpath(args.output)}"
        + (f"; temp dir kept: {tmp}" if args.keep else "")
    )
    return 1 if any(row.passed is False for row in rows) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process started was stopped", file=sys.stderr)
        sys.exit(130)
