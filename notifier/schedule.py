"""Alertmanager's ``time_intervals``, evaluated in their time zones (DESIGN §9).

Pure: no clock, no I/O beyond reading the IANA zone database through ``zoneinfo`` (the
``tzdata`` package ships it where the system has none). The meaning is Alertmanager's,
field by field (its ``timeinterval`` package):

- ``times``: ``HH:MM`` ranges, start inclusive, end exclusive, ``24:00`` allowed;
- ``weekdays``: names or ``monday:friday`` ranges;
- ``days_of_month``: ``1:31`` or counted back from the month's end (``-1`` is the last
  day); a range is clamped to the month it is evaluated in;
- ``months``: names or numbers, ``years``: numbers, both as inclusive ranges;
- ``location``: the zone the fields above are read in, UTC by default.

An interval holds at an instant when every field it names holds there; a named entry of
``time_intervals`` holds when any of its intervals does. Parse errors use Alertmanager's
own wording, so an operator can search for them.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_WEEKDAYS = {
    name: number
    for number, name in enumerate(
        ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
    )
}
_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_MONTH_NAMES = {number: name for name, number in _MONTHS.items()}
_CLOCK_TIME = re.compile(r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")
_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_MINUTE = timedelta(minutes=1)
_T = TypeVar("_T")
# How far ahead ``next_opening`` looks: beyond it an interval counts as never opening.
_HORIZON = timedelta(days=366 * 5)


class TimeIntervalError(ValueError):
    """A ``time_intervals`` entry that Alertmanager would refuse.

    ``path`` says where inside the entry (``weekdays[0]``), empty when it is the entry
    itself; the message is Alertmanager's own wording, without the path.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class MinuteRange:
    """Minutes of the day, ``start`` inclusive and ``end`` exclusive (``24:00`` is 1440)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class InclusiveRange:
    begin: int
    end: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.begin <= value <= self.end


@dataclass(frozen=True, slots=True)
class TimeInterval:
    """One entry of a named interval's list; an empty field places no condition."""

    times: tuple[MinuteRange, ...] = ()
    weekdays: tuple[InclusiveRange, ...] = ()  # 0 is Sunday, as in Go
    days_of_month: tuple[InclusiveRange, ...] = ()  # negative counts back from the end
    months: tuple[InclusiveRange, ...] = ()
    years: tuple[InclusiveRange, ...] = ()
    location: tzinfo = UTC

    def contains(self, at: datetime) -> bool:
        """Whether the aware instant ``at`` lies in this interval."""
        local = at.astimezone(self.location)
        return self._day_holds(local.date()) and self._minute_holds(local.hour * 60 + local.minute)

    def _minute_holds(self, minute: int) -> bool:
        return not self.times or any(r.start <= minute < r.end for r in self.times)

    def _day_holds(self, day: date) -> bool:
        weekday = (day.weekday() + 1) % 7  # Python counts from Monday, Alertmanager from Sunday
        return (
            (not self.weekdays or any(weekday in r for r in self.weekdays))
            and (not self.days_of_month or _day_of_month_holds(self.days_of_month, day))
            and (not self.months or any(day.month in r for r in self.months))
            and (not self.years or any(day.year in r for r in self.years))
        )

    def next_opening(self, after: datetime) -> datetime | None:
        """The first instant at or after ``after`` inside this interval; None within five
        years means never."""
        at = after
        limit = after + _HORIZON
        while at <= limit:
            if self.contains(at):
                return at
            at = self._earliest_candidate_after(at)
        return None

    def next_closing(self, after: datetime) -> datetime | None:
        """The first instant at or after ``after`` outside this interval; None within five
        years means it holds throughout."""
        at = after
        limit = after + _HORIZON
        while at <= limit:
            if not self.contains(at):
                return at
            at = self._end_of_stretch(at)
        return None

    def _end_of_stretch(self, at: datetime) -> datetime:
        """An instant after ``at`` (which this interval holds) up to which it holds for sure:
        the end of the ``times`` range holding ``at``, else the next local midnight, else
        (sooner) the instant the zone's offset changes."""
        local = at.astimezone(self.location)
        minute = local.hour * 60 + local.minute
        ends = [r.end for r in self.times if r.start <= minute < r.end]
        day = datetime.combine(local.date(), time())
        wall = day + timedelta(minutes=max(ends)) if ends else day + timedelta(days=1)
        candidate = _after(at, wall.replace(tzinfo=self.location))
        if local.utcoffset() != candidate.astimezone(self.location).utcoffset():
            return _offset_change(at, candidate, self.location)
        return candidate

    def _earliest_candidate_after(self, at: datetime) -> datetime:
        """The next instant after ``at`` where this interval may begin to hold: the next
        range start on this local day, else the next local midnight, else (sooner) the
        instant the zone's offset changes, since a DST change moves every wall time."""
        local = at.astimezone(self.location)
        minute = local.hour * 60 + local.minute
        starts = [r.start for r in self.times if r.start > minute]
        if self._day_holds(local.date()) and starts:
            wall = datetime.combine(local.date(), time()) + timedelta(minutes=min(starts))
        else:
            wall = datetime.combine(local.date() + timedelta(days=1), time())
        candidate = _after(at, wall.replace(tzinfo=self.location))
        if (
            at.astimezone(self.location).utcoffset()
            != candidate.astimezone(self.location).utcoffset()
        ):
            return _offset_change(at, candidate, self.location)
        return candidate


def _after(at: datetime, wall: datetime) -> datetime:
    """``wall`` as an instant later than ``at``: the second of a repeated wall time if the
    first has passed, the next minute if both have."""
    for fold in (0, 1):
        instant = wall.replace(fold=fold).astimezone(UTC)
        if instant > at:
            return instant
    return at.replace(second=0, microsecond=0) + _MINUTE


def _offset_change(start: datetime, end: datetime, zone: tzinfo) -> datetime:
    """The first whole minute after ``start`` (and at most ``end``) whose UTC offset in
    ``zone`` differs from ``start``'s, by bisection."""
    before = start.astimezone(zone).utcoffset()
    low, high = start.replace(second=0, microsecond=0), end
    while high - low > _MINUTE:
        middle = low + (high - low) / 2
        middle = middle.replace(second=0, microsecond=0)
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high


def _day_of_month_holds(ranges: Sequence[InclusiveRange], day: date) -> bool:
    length = calendar.monthrange(day.year, day.month)[1]
    for r in ranges:
        begin = length + r.begin + 1 if r.begin < 0 else r.begin
        end = length + r.end + 1 if r.end < 0 else r.end
        if begin > length:  # a range that starts past this month's end is not clamped into it
            continue
        if max(begin, -length) <= day.day <= min(end, length):
            return True
    return False


def holds(intervals: Sequence[TimeInterval], at: datetime) -> bool:
    """Whether a named interval (a list of ``TimeInterval``) holds at ``at``."""
    return any(interval.contains(at) for interval in intervals)


def next_opening(intervals: Sequence[TimeInterval], after: datetime) -> datetime | None:
    """When a named interval next holds, at or after ``after``; None if never."""
    openings = [o for o in (i.next_opening(after) for i in intervals) if o is not None]
    return min(openings, default=None)


def next_closing(intervals: Sequence[TimeInterval], after: datetime) -> datetime | None:
    """The first instant at or after ``after`` where none of ``intervals`` holds; None if
    they cover the next five years.

    While some hold, jump to the latest of their closings: the one closing last holds
    all the way there, so no gap is jumped over.
    """
    at = after
    limit = after + _HORIZON
    while at <= limit:
        closings = [i.next_closing(at) for i in intervals if i.contains(at)]
        if not closings:
            return at
        if None in closings:
            return None
        at = max(c for c in closings if c is not None)
    return None


def parse_time_interval(raw: Mapping[str, Any]) -> TimeInterval:
    """One entry of a ``time_intervals[].time_intervals`` list, as YAML gives it."""
    known = {"times", "weekdays", "days_of_month", "months", "years", "location"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TimeIntervalError(
            f"unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})", unknown[0]
        )
    try:
        location = _parse_location(raw.get("location"))
    except TimeIntervalError as exc:
        raise TimeIntervalError(str(exc), "location") from None
    return TimeInterval(
        times=_parse_each(raw, "times", _parse_minute_range),
        weekdays=_parse_each(raw, "weekdays", _parse_weekdays),
        days_of_month=_parse_each(raw, "days_of_month", _parse_days_of_month),
        months=_parse_each(raw, "months", _parse_months),
        years=_parse_each(raw, "years", _parse_years),
        location=location,
    )


def _parse_each(raw: Mapping[str, Any], key: str, parse: Callable[[Any], _T]) -> tuple[_T, ...]:
    """``parse`` over the list at ``key``, an error naming the item that failed."""
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TimeIntervalError(f"{key} must be a list", key)
    parsed = []
    for index, item in enumerate(value):
        try:
            parsed.append(parse(item))
        except TimeIntervalError as exc:
            raise TimeIntervalError(str(exc), f"{key}[{index}]") from None
    return tuple(parsed)


def _parse_minute_range(item: Any) -> MinuteRange:
    if not isinstance(item, Mapping):
        raise TimeIntervalError("times entries need start_time and end_time")
    start_text, end_text = item.get("start_time"), item.get("end_time")
    if not start_text or not end_text:
        raise TimeIntervalError("both start and end times must be provided")
    start, end = _clock_minute(str(start_text)), _clock_minute(str(end_text))
    if start >= end:
        raise TimeIntervalError("start time cannot be equal or greater than end time")
    return MinuteRange(start, end)


def _clock_minute(text: str) -> int:
    if not _CLOCK_TIME.match(text):
        raise TimeIntervalError(f"couldn't parse timestamp {text}, invalid format")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _split_range(item: Any) -> tuple[str, str]:
    text = str(item).lower()
    if ":" not in text:
        return text, text
    parts = text.split(":")
    if len(parts) != 2:
        raise TimeIntervalError(f"couldn't parse range {text}, invalid format")
    return parts[0], parts[1]


def _integer(text: str, what: str) -> int:
    if not _INTEGER.match(text):
        raise TimeIntervalError(f"{text} is not a valid {what}")
    return int(text)


def _parse_weekdays(item: Any) -> InclusiveRange:
    begin_text, end_text = _split_range(item)
    numbers = []
    for text in (begin_text, end_text):
        if text not in _WEEKDAYS:
            raise TimeIntervalError(f"{text} is not a valid weekday")
        numbers.append(_WEEKDAYS[text])
    begin, end = numbers
    if begin > end:
        raise TimeIntervalError("start day cannot be before end day")
    return InclusiveRange(begin, end)


def _parse_days_of_month(item: Any) -> InclusiveRange:
    begin_text, end_text = _split_range(item)
    begin, end = _integer(begin_text, "day"), _integer(end_text, "day")
    for day in (begin, end):
        if day == 0 or not -31 <= day <= 31:
            raise TimeIntervalError(f"{day} is not a valid day of the month: out of range")
    if begin < 0 < end:
        raise TimeIntervalError("end day must be negative if start day is negative")
    # With negative days, whether begin <= end depends on the month; 28 days (the
    # shortest month) catches the ranges that are wrong in every month.
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        raise TimeIntervalError(f"end day {end} is always before start day {begin}")
    return InclusiveRange(begin, end)


def _month(text: str) -> int:
    if text in _MONTHS:
        return _MONTHS[text]
    if not _INTEGER.match(text):
        raise TimeIntervalError(f"{text} is not a valid month")
    return int(text)


def _parse_months(item: Any) -> InclusiveRange:
    begin_text, end_text = _split_range(item)
    begin, end = _month(begin_text), _month(end_text)
    for month in (begin, end):
        if not 1 <= month <= 12:
            raise TimeIntervalError(f"{month} is not a valid month: out of range")
    if begin > end:
        raise TimeIntervalError(
            f"end month {_MONTH_NAMES[end]} is before start month {_MONTH_NAMES[begin]}"
        )
    return InclusiveRange(begin, end)


def _parse_years(item: Any) -> InclusiveRange:
    begin_text, end_text = _split_range(item)
    begin, end = _integer(begin_text, "year"), _integer(end_text, "year")
    if begin > end:
        raise TimeIntervalError(f"end year {end} is before start year {begin}")
    return InclusiveRange(begin, end)


def _parse_location(value: Any) -> tzinfo:
    if value is None or value == "UTC":
        return UTC
    name = str(value)
    if name == "Local":
        # Alertmanager reads the host's zone; a router that moves between hosts and
        # containers should not change its windows with them.
        raise TimeIntervalError("location 'Local' is not supported: name the IANA zone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeIntervalError(f"unknown time zone {name!r}") from None
