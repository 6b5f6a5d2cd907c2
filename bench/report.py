"""The benchmark's output: the machine it ran on, the table, the JSON results file."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common import Row

BUSY_SHARE = 0.1  # CPU use by others (all cores) above which the machine is not quiet


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all cores, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(seconds: float = 1.0) -> float:
    """How busy the machine's CPUs were over ``seconds`` (0..1), before we start anything."""
    try:
        busy0, total0 = _cpu_times()
        time.sleep(seconds)
        busy1, total1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return 0.0
    return (busy1 - busy0) / max(total1 - total0, 1)


def machine(
    placement: str, generator: str, usable_cores: int, busy: float, service: dict[str, Any]
) -> dict[str, Any]:
    return {
        "service": service,
        "nproc": os.cpu_count(),
        "usable_cores": usable_cores,
        "cpu_busy_before_start": round(busy, 3),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "placement": placement,
        "load_generator": generator,
    }


def render_table(rows: Sequence[Row]) -> str:
    header = ("part", "measure", "value", "target", "")
    table = [header] + [(r.part, r.measure, r.value, r.target, r.mark) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_machine(info: dict[str, Any]) -> str:
    text = (
        f"machine: {info['nproc']} cpus ({info['usable_cores']} usable), {info['cpu']}, "
        f"Python {info['python']}, Linux {info['kernel']}\n"
        f"placement: {info['placement']}\nload generator: {info['load_generator']}\n"
        "service: {replicas} × notifier serve, {store} store, storage.workers {workers},"
        " log level {log_level}".format(
            **info["service"] | {"workers": info["service"]["workers"] or "default"}
        )
    )
    if info["service"].get("redis_url"):
        text += (
            f" (private redis-server at {info['service']['redis_url']}, appendonly yes,"
            " appendfsync everysec, no snapshots, keys flushed before each part)"
        )
    if info["cpu_busy_before_start"] > BUSY_SHARE:
        text += (
            f"\nWARNING: the CPUs were {info['cpu_busy_before_start']:.0%} busy before the start:"
            " other work shares these cores, so the figures are likely low and noisy"
        )
    return text


def render_profile(profile: dict[str, Any]) -> str:
    lines = [f"storm profile (py-spy, {profile.get('samples', 0)} samples): {profile['raw']}"]
    for kind in ("threads", "self", "inclusive (project code)"):
        lines.append(f"  by {kind}:")
        lines += [f"    {pct:5.1f}%  {name}" for name, pct in profile.get(kind, [])]
    parts = profile.get("cpu µs per notification, by part", {})
    if parts:
        lines.append(f"  CPU µs per notification, by part (total {sum(parts.values()):,.0f}):")
        lines += [f"    {us:7.1f}  {part}" for part, us in parts.items()]
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_json(
    path: Path, info: dict[str, Any], rows: Sequence[Row], parts: dict[str, Any]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "table": [asdict(row) | {"mark": row.mark} for row in rows],
        "parts": parts,
    }
    path.write_text(json.dumps(_finite(document), indent=2, ensure_ascii=False) + "\n")
