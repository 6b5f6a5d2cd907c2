"""The report's latency chart as inline SVG: P95 delivery time per bucket over the period.

Bars show how many notifications each bucket delivered (scaled to the busiest bucket),
the line their P95 delivery time, the dashed line the target; a legend says which is
which. Plain SVG 1.1 with no script, no font or stylesheet from outside, so it renders in
any browser and in most mail clients.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import timedelta
from html import escape

from notifier.durations import format_duration
from notifier.report.format import format_quantity
from notifier.report.model import LatencyBucket

WIDTH, HEIGHT = 720, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 64
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
LINE, OVER, BARS, GRID, INK = "#2563eb", "#dc2626", "#cbd5e1", "#e5e7eb", "#475569"


def latency_chart(buckets: Sequence[LatencyBucket], target: float) -> str:
    """The SVG element (a string of markup) for ``buckets``, which must not be empty."""
    empty = not any(b.delivered for b in buckets)
    label = "P95 delivery time per period bucket, with the number delivered"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {40 if empty else HEIGHT}" '
        f'width="100%" role="img" aria-label="{label}" font-family="inherit" font-size="11">'
    ]
    if empty:
        parts.append(_text(WIDTH / 2, 24, "no notification was delivered in this period", "middle"))
        parts.append("</svg>")
        return "".join(parts)
    top = _nice_ceiling(max([target, *(b.p95 for b in buckets if b.p95 is not None)]) * 1.1)
    most = max(b.delivered for b in buckets)
    slot = PLOT_W / len(buckets)

    def y_of(seconds: float) -> float:
        return TOP + PLOT_H * (1 - seconds / top)

    for tick in _ticks(top):
        y = y_of(tick)
        parts.append(_line(LEFT, y, LEFT + PLOT_W, y, GRID))
        parts.append(_text(LEFT - 6, y + 4, _seconds(tick), "end"))
    for i, bucket in enumerate(buckets):
        height = PLOT_H * bucket.delivered / most
        parts.append(
            f'<rect x="{LEFT + i * slot + 1:.1f}" y="{TOP + PLOT_H - height:.1f}" '
            f'width="{max(slot - 2, 1):.1f}" height="{height:.1f}" fill="{BARS}" opacity="0.6">'
            f"<title>{escape(_span(bucket))}: {bucket.delivered} delivered</title></rect>"
        )
    target_y = y_of(target)
    parts.append(_line(LEFT, target_y, LEFT + PLOT_W, target_y, OVER, dash=True))
    parts.append(_text(LEFT + PLOT_W - 4, target_y - 5, f"target {_seconds(target)}", "end"))
    for segment in _segments(buckets):
        points = " ".join(f"{LEFT + (i + 0.5) * slot:.1f},{y_of(p95):.1f}" for i, p95 in segment)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{LINE}" stroke-width="2" '
            'stroke-linejoin="round"/>'
        )
    for i, bucket in enumerate(buckets):
        if bucket.p95 is not None:
            colour = OVER if bucket.p95 >= target else LINE
            parts.append(
                f'<circle cx="{LEFT + (i + 0.5) * slot:.1f}" cy="{y_of(bucket.p95):.1f}" r="3" '
                f'fill="{colour}"><title>{escape(_span(bucket))}: P95 '
                f"{format_quantity(bucket.p95, 'seconds')}, {bucket.delivered} delivered"
                "</title></circle>"
            )
    parts.append(_line(LEFT, TOP + PLOT_H, LEFT + PLOT_W, TOP + PLOT_H, INK))
    for i in _label_positions(len(buckets)):
        x = LEFT + i * slot
        parts.append(_line(x, TOP + PLOT_H, x, TOP + PLOT_H + 4, INK))
        parts.append(_text(x, TOP + PLOT_H + 18, _clock(buckets[i].start, buckets), "middle"))
    parts.extend(_legend(buckets[0].end - buckets[0].start, most))
    parts.append("</svg>")
    return "".join(parts)


def _legend(bucket_seconds: float, most: int) -> list[str]:
    per = format_duration(timedelta(seconds=bucket_seconds))
    y = HEIGHT - 10
    return [
        _line(LEFT, y - 4, LEFT + 18, y - 4, LINE, width=2),
        _text(LEFT + 24, y, "P95 delivery time", "start"),
        f'<rect x="{LEFT + 150}" y="{y - 9}" width="14" height="10" fill="{BARS}"/>',
        _text(LEFT + 170, y, f"notifications delivered per {per} (highest bar: {most})", "start"),
        _line(LEFT + 480, y - 4, LEFT + 498, y - 4, OVER, dash=True),
        _text(LEFT + 504, y, "target", "start"),
    ]


def _seconds(value: float) -> str:
    """Axis labels: ``0``, ``250 ms``, ``2.5 s``, ``10 s`` (no trailing zeros)."""
    if value == 0:
        return "0"
    return f"{value * 1000:.4g} ms" if value < 1 else f"{value:.4g} s"


def _segments(buckets: Sequence[LatencyBucket]) -> list[list[tuple[int, float]]]:
    """Runs of consecutive buckets with a P95: the line breaks where nothing was delivered."""
    segments: list[list[tuple[int, float]]] = [[]]
    for i, bucket in enumerate(buckets):
        if bucket.p95 is None:
            segments.append([])
        else:
            segments[-1].append((i, bucket.p95))
    return [segment for segment in segments if segment]


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``value``."""
    magnitude = 10.0 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= value)


def _ticks(top: float) -> list[float]:
    return [top * i / 4 for i in range(5)]


def _label_positions(count: int, most: int = 7) -> range:
    return range(0, count, max(1, math.ceil(count / most)))


def _clock(at: float, buckets: Sequence[LatencyBucket]) -> str:
    spans_days = buckets[-1].end - buckets[0].start > 2 * 86400
    return time.strftime("%m-%d" if spans_days else "%H:%M", time.gmtime(at))


def _span(bucket: LatencyBucket) -> str:
    start = time.strftime("%m-%d %H:%M", time.gmtime(bucket.start))
    return f"{start}–{time.strftime('%H:%M', time.gmtime(bucket.end))} UTC"


def _line(
    x1: float, y1: float, x2: float, y2: float, colour: str, *, dash: bool = False, width: int = 1
) -> str:
    pattern = ' stroke-dasharray="6 4"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
        f'stroke="{colour}" stroke-width="{width}"{pattern}/>'
    )


def _text(x: float, y: float, text: str, anchor: str) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{INK}">{escape(text)}</text>'
    )
