"""What the time windows say at a moment, as ``routes test --at`` and ``check-config`` print it.

Reads the loaded config's ``TimeWindows`` only (``notifier.windows``); prints nothing itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from notifier.config import LoadedConfig
from notifier.routing import RoutingDecision


def parse_instant(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``--at``: an ISO 8601 time with its offset (``2026-12-03T09:00+09:00``, or ``Z``)."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no UTC offset: add one (+09:00) or Z")
    return at


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _in_offset_of(at: datetime, instant: datetime | None) -> str | None:
    return None if instant is None else instant.astimezone(at.tzinfo).isoformat()


def channel_states(
    loaded: LoadedConfig, decision: RoutingDecision, at: datetime
) -> list[dict[str, Any]]:
    """Each channel the alert reaches, through which route, and whether that route is muted
    at ``at``: until when (in ``at``'s offset), and whether it defers or drops meanwhile."""
    windows = loaded.windows
    states = []
    for channel, route in decision.channels:
        muted = windows.is_muted(route, at)
        window = windows.routes.get(route)
        states.append(
            {
                "channel": channel,
                "route": route,
                "active": not muted,
                "until": _in_offset_of(at, windows.unmuted_from(route, at)) if muted else None,
                "when_muted": window.when_muted if muted and window is not None else None,
            }
        )
    return states


def state_text(state: dict[str, Any]) -> str:
    """One ``channel_states`` entry as a line."""
    head = f"{state['channel']} (route {state['route']})"
    if state["active"]:
        return f"{head}: active"
    opens = state["until"] or "never within five years"
    if state["when_muted"] == "defer" and state["until"]:
        return f"{head}: muted, deferred until {opens}"
    return f"{head}: muted, dropped (opens {opens})"


def interval_lines(loaded: LoadedConfig, now: datetime) -> list[str]:
    """One line per named interval: open now, or when it next opens."""
    lines = []
    for name in loaded.windows.intervals:
        if loaded.windows.holds([name], now):
            lines.append(f"  {name}: open now")
        else:
            opening = _iso(loaded.windows.next_opening([name], now))
            lines.append(f"  {name}: next opens {opening or 'never within five years'}")
    return lines


def route_window_text(loaded: LoadedConfig, route: str) -> str:
    """`` [active: a; mute: b; when muted: defer]`` for a route with windows, else ''."""
    window = loaded.windows.routes.get(route)
    if window is None:
        return ""
    parts = []
    if window.active:
        parts.append(f"active: {', '.join(window.active)}")
    if window.mute:
        parts.append(f"mute: {', '.join(window.mute)}")
    parts.append(f"when muted: {window.when_muted}")
    return f" [{'; '.join(parts)}]"
