"""Prometheus-style durations (``500ms``, ``30s``, ``1h30m``, ``2d``), as Alertmanager
writes them."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365 * 86400.0,
}
_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
_ORDER = ("y", "w", "d", "h", "m", "s", "ms")


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m`` into a timedelta; units must appear largest first, as in Prometheus."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 5m, 1h30m, 2d)")
    seconds = 0.0
    for index, unit in enumerate(_ORDER):
        amount = match.group(2 * index + 2)
        if amount is not None:
            seconds += int(amount) * _UNITS[unit]
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest Prometheus-style spelling of a duration (``90s`` -> ``1m30s``)."""
    millis = round(value.total_seconds() * 1000)
    if millis == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit] * 1000)
        amount, millis = divmod(millis, size)
        if amount:
            parts.append(f"{amount}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)
