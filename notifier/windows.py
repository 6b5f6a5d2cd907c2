"""Named time intervals as the config gives them, and when each route is muted (DESIGN §9).

Pure: the time is always passed in. ``notifier.schedule`` evaluates one interval; this
module knows the config's names for them and Alertmanager's rule for a route:

    a route is muted at t when any of its ``mute_time_intervals`` holds, or when it has
    ``active_time_intervals`` and none of them holds.

Alertmanager drops what a muted route would send (``when_muted: drop``); the default,
``defer``, holds it until the route is next unmuted, so ``Muting.until`` says when that
is. Escalation steps (§8) ask ``TimeWindows.holds`` / ``next_opening`` for their own
``active_time_intervals``.

Parsing errors carry the key path (``time_intervals[0].time_intervals[1].weekdays[0]``),
found on the raw YAML tree so that they are reported with every other config problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from notifier.raw_lists import mapping_entries, repeated_name
from notifier.schedule import (
    TimeInterval,
    TimeIntervalError,
    holds,
    next_closing,
    next_opening,
    parse_time_interval,
)

WhenMuted = Literal["defer", "drop"]
# A route whose mute and active intervals keep alternating is looked at this far ahead at
# most (schedule's own horizon bounds each step); past it, it counts as never unmuted.
_HORIZON = timedelta(days=366 * 5)


@dataclass(frozen=True, slots=True)
class RouteWindow:
    """A route's ``active_time_intervals``, ``mute_time_intervals`` and ``when_muted``."""

    active: tuple[str, ...] = ()
    mute: tuple[str, ...] = ()
    when_muted: WhenMuted = "defer"


@dataclass(frozen=True, slots=True)
class Muting:
    """A route muted at some instant: what it does with a notification, and until when.

    ``until`` is when the route is next unmuted (unix seconds), None if not within five
    years; a deferring route that never opens drops, as it would have nothing to wait for.
    """

    when_muted: WhenMuted
    until: float | None

    @property
    def drops(self) -> bool:
        return self.when_muted == "drop" or self.until is None


@dataclass
class TimeWindows:
    """The config's named intervals and each route's window; routes not named are never muted."""

    intervals: Mapping[str, tuple[TimeInterval, ...]] = field(default_factory=dict)
    routes: Mapping[str, RouteWindow] = field(default_factory=dict)
    # Membership changes only at whole minutes, so one answer per route serves a minute.
    _cache: dict[str, Muting | None] = field(default_factory=dict, repr=False)
    _cache_minute: int = field(default=-1, repr=False)

    def _named(self, names: Sequence[str]) -> list[TimeInterval]:
        return [interval for name in names for interval in self.intervals[name]]

    def holds(self, names: Sequence[str], at: datetime) -> bool:
        """Whether any of the named intervals holds at the aware instant ``at``."""
        return holds(self._named(names), at)

    def next_opening(self, names: Sequence[str], after: datetime) -> datetime | None:
        """When any of the named intervals next holds, at or after ``after``; None if never."""
        return next_opening(self._named(names), after)

    def is_muted(self, route: str, at: datetime) -> bool:
        """Alertmanager's rule: a mute interval holds, or active intervals exist and none holds."""
        window = self.routes.get(route)
        if window is None:
            return False
        if window.mute and self.holds(window.mute, at):
            return True
        return bool(window.active) and not self.holds(window.active, at)

    def unmuted_from(self, route: str, at: datetime) -> datetime | None:
        """The first instant at or after ``at`` where ``route`` is not muted; None if never."""
        window = self.routes.get(route)
        if window is None:
            return at
        mute, active = self._named(window.mute), self._named(window.active)
        limit = at + _HORIZON
        candidate: datetime | None = at
        while candidate is not None and candidate <= limit:
            candidate = next_closing(mute, candidate) if mute else candidate
            if candidate is None or not active:
                return candidate
            opening = next_opening(active, candidate)
            if opening == candidate:
                return candidate
            candidate = opening  # a mute interval may hold there: look again
        return None

    def muting(self, route: str, now: float) -> Muting | None:
        """How ``route`` is muted at ``now`` (unix seconds), or None when it is not."""
        window = self.routes.get(route)
        if window is None:
            return None
        minute = int(now // 60)
        if minute != self._cache_minute:
            self._cache.clear()
            self._cache_minute = minute
        if route not in self._cache:
            self._cache[route] = self._muting(route, window, datetime.fromtimestamp(now, UTC))
        return self._cache[route]

    def _muting(self, route: str, window: RouteWindow, at: datetime) -> Muting | None:
        if not self.is_muted(route, at):
            return None
        until = self.unmuted_from(route, at)
        return Muting(window.when_muted, None if until is None else until.timestamp())


def build_windows(raw: Mapping[str, Any], routes: Mapping[str, RouteWindow]) -> TimeWindows:
    """The windows of a config that ``window_problems`` found nothing wrong with."""
    intervals = {
        entry["name"]: tuple(
            parse_time_interval(item) for item in entry.get("time_intervals") or []
        )
        for entry in raw.get("time_intervals") or []
    }
    return TimeWindows(intervals, {name: w for name, w in routes.items() if w.active or w.mute})


def window_problems(raw: Mapping[str, Any]) -> list[str]:
    """Every problem of ``time_intervals`` and of the routes' interval names, with key paths.

    Shapes (a name that is not a string, a list that is a mapping) are pydantic's to
    report; this checks what pydantic cannot: each interval's fields, and the names.
    """
    problems: list[str] = []
    names: set[str] = set()
    for index, entry in mapping_entries(raw.get("time_intervals")):
        name = repeated_name(entry, names)
        if name is not None:
            problems.append(f"time_intervals[{index}].name: duplicate name {name!r}")
        items = entry.get("time_intervals")
        for i_index, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, Mapping):
                continue
            try:
                parse_time_interval(item)
            except TimeIntervalError as exc:
                where = f"time_intervals[{index}].time_intervals[{i_index}]"
                problems.append(f"{where}{'.' + exc.path if exc.path else ''}: {exc}")
    for index, route in mapping_entries(raw.get("routes")):
        for key in ("active_time_intervals", "mute_time_intervals"):
            listed = route.get(key)
            for n_index, name in enumerate(listed if isinstance(listed, list) else []):
                if isinstance(name, str) and name not in names:
                    problems.append(
                        f"routes[{index}].{key}[{n_index}]: undefined time interval {name!r}"
                    )
    return problems
