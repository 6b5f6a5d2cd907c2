"""What the console's pages show, read from the runtime and shaped for the templates.

Pure reads: nothing here changes the store. The delivery log and the dead letters are
paged here: the first page reads ``limit + 1`` rows; a later page (``before``, a cursor)
or a filtered one reads one bounded window of the newest (``WINDOW`` rows), then filters
and pages it, so no page costs more than that window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from notifier.dead_letter_view import dead_letter_json
from notifier.heartbeats.state import matching
from notifier.heartbeats.status import heartbeats_json
from notifier.incidents.machine import State
from notifier.incidents.views import incident_json
from notifier.routing import RoutingDecision, route_labels
from notifier.runtime import Runtime
from notifier.store.base import DeliveryRecord, StoreUnavailable

WINDOW = 10_000  # newest rows a delivery or dead-letter page looks through
PAGE = 50
RECENT_INCIDENTS = 50


@dataclass(frozen=True, slots=True)
class Paged:
    rows: list[Any]
    next_before: str | None  # the cursor of the next (older) page, None on the last
    total: int | None  # rows matching the filters within the window; None: not counted


def page_of(rows: list[Any], cursor_of: Any, limit: int, before: str | None) -> Paged:
    """``limit`` rows after the row whose cursor is ``before`` (rows are newest first)."""
    start = 0
    if before:
        start = next((i + 1 for i, row in enumerate(rows) if cursor_of(row) == before), len(rows))
    chosen = rows[start : start + limit]
    more = start + limit < len(rows)
    return Paged(chosen, cursor_of(chosen[-1]) if chosen and more else None, len(rows))


async def status_strip(runtime: Runtime) -> dict[str, Any]:
    now = runtime.clock()
    try:
        stats: dict[str, Any] | None = asdict(await runtime.store.stats(now))
    except StoreUnavailable:
        stats = None
    return {"queue": stats, "uptime": now - runtime.started_at}


async def incidents(runtime: Runtime) -> dict[str, Any]:
    engine = runtime.incidents
    open_ = await engine.incidents(open_only=True, limit=PAGE * 4)
    recent = [
        i for i in await engine.incidents(limit=RECENT_INCIDENTS) if i.state is State.RESOLVED
    ]
    return {
        "open": [incident_json(i, engine.policy(i)) for i in open_],
        "recent": [incident_json(i, engine.policy(i)) for i in recent],
        "responders": [r.name for r in runtime.loaded.config.responders],
    }


def _rows_read(limit: int, whole_window: bool) -> int:
    return WINDOW if whole_window else limit + 1


async def dead_letters(runtime: Runtime, limit: int, before: str | None) -> Paged:
    letters = await runtime.store.dead_letters(_rows_read(limit, before is not None))
    paged = page_of(letters, lambda d: d.id, limit, before)
    total = paged.total if before is not None else None
    return Paged([dead_letter_json(d) for d in paged.rows], paged.next_before, total)


def _delivery_cursor(record: DeliveryRecord) -> str:
    return f"{record.at!r}:{record.job_id}:{record.channel}"


def _matches(record: DeliveryRecord, channel: str, outcome: str, text: str) -> bool:
    if channel and record.channel != channel:
        return False
    if outcome and record.outcome != outcome:
        return False
    if text:
        haystack = " ".join(
            (record.job_id, record.channel, record.error, record.reason or "", record.severity)
        ).lower()
        return text.lower() in haystack
    return True


async def deliveries(
    runtime: Runtime, channel: str, outcome: str, text: str, limit: int, before: str | None
) -> Paged:
    scan = before is not None or bool(channel or outcome or text)
    records = await runtime.store.deliveries(_rows_read(limit, scan))
    chosen = [r for r in records if _matches(r, channel, outcome, text)]
    paged = page_of(chosen, _delivery_cursor, limit, before)
    rows = [{**asdict(r), "cursor": _delivery_cursor(r)} for r in paged.rows]
    return Paged(rows, paged.next_before, paged.total if scan else None)


async def channels(runtime: Runtime) -> list[dict[str, Any]]:
    dispatcher = runtime.dispatcher
    now = runtime.clock()
    circuits = dispatcher.circuit_states() if dispatcher else {}
    limits = dispatcher.rate_limit_use(now) if dispatcher else {}
    # Only channels with storm digests have a storm mode (DESIGN §10).
    storms = runtime.storm_watch.in_storm() if runtime.storm_watch else {}
    last_error: dict[str, DeliveryRecord] = {}
    for record in await runtime.store.deliveries(1000):
        if record.outcome != "delivered":
            last_error.setdefault(record.channel, record)
    return [
        {
            "name": name,
            "type": config.type,
            "circuit": str(circuits.get(name, "-")),
            "rate_limit_use": limits.get(name),
            "storm": storms.get(name),
            "last_error": last_error.get(name),
        }
        for name, config in runtime.loaded.config.channels.items()
    ]


def routes(runtime: Runtime) -> dict[str, Any]:
    loaded = runtime.loaded
    config = loaded.config
    now = datetime.fromtimestamp(runtime.clock(), UTC)
    windows = loaded.windows
    intervals = []
    for name in windows.intervals:
        open_now = windows.holds([name], now)
        opens = None if open_now else windows.next_opening([name], now)
        intervals.append({"name": name, "open": open_now, "next": opens})
    return {
        "routes": [
            {
                "name": r.name,
                "matchers": [str(m) for m in r.matchers],
                "channels": list(r.channels),
                "continue": r.continue_matching,
                "muted_now": windows.is_muted(r.name, now),
                "window": windows.routes.get(r.name),
                "escalation": next((c.escalation for c in config.routes if c.name == r.name), None),
            }
            for r in loaded.routes
        ],
        "default_channels": list(config.default_channels),
        "policies": {
            name: {
                "steps": [
                    {"after": s.after.total_seconds(), "channels": list(s.channels)}
                    for s in policy.steps
                ],
                "repeat": policy.repeat,
                "ack_timeout": policy.ack_timeout.total_seconds() if policy.ack_timeout else None,
            }
            for name, policy in config.escalation_policies.items()
        },
        "intervals": intervals,
    }


def route_test(runtime: Runtime, labels: dict[str, str]) -> dict[str, Any]:
    """Which routes and channels an alert with ``labels`` reaches now: ``routes test``."""
    loaded = runtime.loaded
    renews = [h.name for h in matching(loaded.heartbeats, labels)]
    decision = (
        RoutingDecision((), ())
        if renews
        else route_labels(labels, loaded.routes, loaded.config.default_channels)
    )
    now = datetime.fromtimestamp(runtime.clock(), UTC)
    policies = {r.name: r.escalation for r in loaded.config.routes if r.escalation}
    return {
        "routes": list(decision.routes),
        "escalations": [(r, policies[r]) for r in decision.routes if r in policies],
        "heartbeats": renews,
        "channels": [
            {
                "channel": channel,
                "route": route,
                "active": not loaded.windows.is_muted(route, now),
            }
            for channel, route in decision.channels
        ],
    }


async def heartbeats(runtime: Runtime) -> list[dict[str, Any]] | None:
    try:
        return heartbeats_json(await runtime.heartbeats.states())
    except StoreUnavailable:
        return None
