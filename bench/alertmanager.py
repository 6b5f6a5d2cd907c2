"""``--against alertmanager``: the same storm through Debian's Alertmanager, side by side.

Alertmanager (``prometheus-alertmanager``) runs on the core the service had, clustering
off, its storage in the temp dir, on a generated config: every label set its own group
(``group_by: ['...']``), ``group_wait: 0s``, one webhook receiver pointing at the same
sink (``send_resolved: false``, ``max_alerts: 0``). The driver posts the same number of
distinct one-alert requests to its ``/api/v2/alerts`` over the same 64 connections, each
alert carrying the same ``bench_id`` label and ``sent_at_ns`` annotation, so the sink
measures both the same way: delivered notifications/s from the first post until the last
alert arrives, per-alert latency (sink arrival - send time), and the peak RSS (VmHWM).

Alertmanager keeps alerts in memory and snapshots them every 15 minutes; notifier makes
each alert durable before answering. The table compares what each delivers, not what
each promises.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import servers
import yaml
from common import Bench, Row, sink_call
from payloads import PrometheusAlert
from procs import free_port
from storm import contestant_rows, storm_through

BINARY = "prometheus-alertmanager"
INSTALL_HINT = "sudo apt-get install -y prometheus-alertmanager"
RATE_RATIO_TARGET = 1.5  # notifier's delivered notifications/s over Alertmanager's


def config(sink_port: int) -> str:
    """Every alert its own group, flushed at once, to the sink's webhook."""
    return yaml.safe_dump(
        {
            "route": {
                "receiver": "sink",
                "group_by": ["..."],
                "group_wait": "0s",
                "group_interval": "1s",
                # Below the notification log's 120 h retention (Alertmanager warns
                # otherwise); no group repeats within a run anyway.
                "repeat_interval": "100h",
            },
            "receivers": [
                {
                    "name": "sink",
                    "webhook_configs": [
                        {
                            "url": f"http://127.0.0.1:{sink_port}/hook",
                            "send_resolved": False,
                            "max_alerts": 0,
                        }
                    ],
                }
            ],
        },
        sort_keys=False,
    )


def binary() -> str:
    path = shutil.which(BINARY)
    if path is None:
        raise RuntimeError(f"{BINARY} not found; install it with: {INSTALL_HINT}")
    return path


@contextlib.asynccontextmanager
async def alertmanager(
    workdir: Path, sink: servers.Server, core: int | None
) -> AsyncIterator[servers.Server]:
    """A ready Alertmanager on a free 127.0.0.1 port, pinned to ``core``; always stopped."""
    folder = workdir / "alertmanager"
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "alertmanager.yml"
    config_file.write_text(config(sink.port))
    port = free_port()
    argv = [
        binary(),
        f"--config.file={config_file}",
        f"--storage.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # empty: no gossip, no peers
    ]
    log = folder / "alertmanager.log"
    async with servers.serve("alertmanager", argv, port, "/-/ready", core, log) as server:
        yield server


async def run(bench: Bench, sink: servers.Server) -> tuple[list[Row], dict[str, Any]]:
    """The storm through Alertmanager on the service's core, the same sink and load."""
    async with aiohttp.ClientSession() as session:
        await sink_call(session, sink.url, "POST", "/reset?record=1")
        async with alertmanager(bench.workdir, sink, bench.placement.server) as am:
            builder = PrometheusAlert("BenchStorm")
            figures = await storm_through(
                bench, session, sink, am, "/api/v2/alerts", builder.body, accepted_status=200
            )
        await sink_call(session, sink.url, "POST", "/reset?record=0")
    return _rows(bench, figures), figures


def _rows(bench: Bench, f: dict[str, Any]) -> list[Row]:
    duplicates = Row("alertmanager", "duplicates at sink", f"{len(f['duplicates'])}")
    return contestant_rows(
        "alertmanager", "Alertmanager", f, bench.storm_count, "alerts accepted (200)", duplicates
    )


def compare(service: dict[str, Any], am: dict[str, Any]) -> list[Row]:
    """notifier's storm against Alertmanager's, from the two parts' figures of one run."""
    complete = not service["missing"] and not service["unexpected"]
    ratio = service["notifications_per_s"] / am["notifications_per_s"] if am["distinct"] else 0.0
    rss = [value for value in service["peak_rss_mib"].values() if value is not None]
    am_rss = am["peak_rss_mib"]
    rss_text = " / ".join(f"{value:.0f}" for value in rss) or "n/a"
    return [
        Row(
            "versus",
            "notifications/s notifier ÷ Alertmanager",
            f"{ratio:.2f} ×",
            f"≥ {RATE_RATIO_TARGET} ×",
            ratio >= RATE_RATIO_TARGET and complete,
        ),
        Row(
            "versus",
            "CPU per notification notifier ÷ Alertmanager",
            f"{service['cpu_us_per_notification'] / am['cpu_us_per_notification']:.2f} ×",
        ),
        Row(
            "versus",
            "latency P99 notifier vs Alertmanager",
            f"{service['p99_ms']:.0f} vs {am['p99_ms']:.0f} ms",
            "below",
            service["p99_ms"] < am["p99_ms"],
        ),
        Row(
            "versus",
            "peak RSS notifier vs Alertmanager",
            f"{rss_text} vs {am_rss:.0f} MiB" if am_rss else f"{rss_text} vs n/a MiB",
            "below",
            bool(rss) and am_rss is not None and max(rss) < am_rss,
        ),
    ]
