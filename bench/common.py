"""What the three parts of the benchmark share: the run context, percentiles, sink calls.

``Bench`` carries the settings of one run (durations, placement, load generator, a run id
that makes every payload of this run distinct). ``Row`` is one line of the final table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from procs import ROOT, Placement
from servers import Server, ServiceOptions

RESULTS_DIR = ROOT / "bench/results"


@dataclass(frozen=True)
class Bench:
    workdir: Path
    placement: Placement
    run_id: str
    measure_s: float
    warmup_s: float
    generator: str  # "wrk" or "python"
    service: ServiceOptions
    storm_count: int
    single_count: int
    profile: bool
    redis: Server | None = None  # the private redis-server, with --store redis


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, and its target when it has one."""

    part: str
    measure: str
    value: str
    target: str = ""
    passed: bool | None = None

    @property
    def mark(self) -> str:
        return {True: "PASS", False: "FAIL", None: ""}[self.passed]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def sink_call(
    session: aiohttp.ClientSession, sink_url: str, method: str, path: str
) -> dict[str, Any]:
    """One control call to the sink; its JSON answer."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with session.request(method, sink_url + path, timeout=timeout) as answer:
        answer.raise_for_status()
        data: dict[str, Any] = await answer.json()
        return data
