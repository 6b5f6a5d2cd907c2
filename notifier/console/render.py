"""The console's Jinja2 environment: templates shipped in this package, autoescaped."""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2
from markupsafe import Markup, escape


def _utc(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def when(at: float | None) -> Markup:
    """A moment as ``<time>`` in UTC; the page's script adds the browser's zone."""
    if at is None:
        return Markup("-")
    iso = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{}">{}</time>').format(iso, _utc(at))


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value < 120:
        return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.0f}m"
    if value < 172800:
        return f"{value / 3600:.1f}h"
    return f"{value / 86400:.1f}d"


def percent(value: float | None) -> str:
    return "no limit" if value is None else f"{value * 100:.0f}%"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("notifier.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, seconds=seconds, percent=percent, utc=_utc)
    env.globals["escape"] = escape
    return env
