"""Small descriptive statistics shared by the report and the load tester.

Pure functions over plain numbers; no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks.

    The same definition as numpy's default (``method="linear"``); ``None`` for no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0-100, got {q}")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean; ``None`` for no values."""
    return math.fsum(values) / len(values) if values else None


def peak_window_count(times: Iterable[float], window: float) -> tuple[int, float | None]:
    """The most events in any half-open window ``(t - window, t]``, and the ``t`` where it ends.

    A sliding window over the sorted times (the seed's throughput is "completed per
    second over a sliding 60 s window"); ``(0, None)`` for no events.
    """
    ordered = sorted(times)
    best, best_end = 0, None
    start = 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window:
            start += 1
        if end - start + 1 > best:
            best, best_end = end - start + 1, at
    return best, best_end
