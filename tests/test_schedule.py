"""Time intervals, against the cases of Alertmanager's own ``timeinterval`` tests.

The tables below are ported from prometheus/alertmanager ``timeinterval/timeinterval_test.go``
(times written as Go's RFC 822 with numeric zone), plus DST transitions and
``next_opening``, which Alertmanager does not have.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from notifier.schedule import (
    InclusiveRange,
    MinuteRange,
    TimeInterval,
    TimeIntervalError,
    holds,
    next_closing,
    next_opening,
    parse_time_interval,
)


def at(text: str) -> datetime:
    """Go's ``time.RFC822Z``: ``02 Jan 06 15:04 -0700``."""
    return datetime.strptime(text, "%d %b %y %H:%M %z")


def parse_list(text: str) -> list[TimeInterval]:
    loaded: list[dict[str, Any]] = yaml.safe_load(text)
    return [parse_time_interval(item) for item in loaded]


SYDNEY = ZoneInfo("Australia/Sydney")

# (interval, instants inside, instants outside): TestContainsTime's table.
CONTAINS_CASES = [
    (
        TimeInterval(),
        ["02 Jan 06 15:04 +0000", "03 Jan 07 10:04 +0000", "04 Jan 06 09:04 +0000"],
        [],
    ),
    (
        TimeInterval(times=(MinuteRange(540, 1020),), weekdays=(InclusiveRange(1, 5),)),
        ["04 May 20 15:04 +0000", "05 May 20 10:04 +0000", "09 Jun 20 09:04 +0000"],
        ["03 May 20 15:04 +0000", "04 May 20 08:59 +0000", "05 May 20 05:00 +0000"],
    ),
    (
        TimeInterval(
            days_of_month=(InclusiveRange(4, 6),),
            months=(InclusiveRange(4, 4),),
            years=(InclusiveRange(2020, 2020),),
        ),
        ["04 Apr 20 15:04 +0000", "05 Apr 20 00:00 +0000", "06 Apr 20 23:05 +0000"],
        [
            "03 May 18 15:04 +0000",
            "03 Apr 20 23:59 +0000",
            "04 Jun 20 23:59 +0000",
            "06 Apr 19 23:59 +0000",
            "07 Apr 20 00:00 +0000",
        ],
    ),
    (
        TimeInterval(days_of_month=(InclusiveRange(-3, -1),)),
        [
            "31 Jan 20 15:04 +0000",
            "30 Jan 20 15:04 +0000",
            "29 Jan 20 15:04 +0000",
            "30 Jun 20 00:00 +0000",
            "29 Feb 20 23:05 +0000",
        ],
        [
            "03 May 18 15:04 +0000",
            "27 Jan 20 15:04 +0000",
            "03 Apr 20 23:59 +0000",
            "04 Jun 20 23:59 +0000",
            "06 Apr 19 23:59 +0000",
            "07 Apr 20 00:00 +0000",
            "01 Mar 20 00:00 +0000",
        ],
    ),
    (
        TimeInterval(months=(InclusiveRange(6, 6),), days_of_month=(InclusiveRange(-31, 31),)),
        ["30 Jun 20 00:00 +0000", "01 Jun 20 00:00 +0000"],
        ["31 May 20 00:00 +0000", "01 Jul 20 00:00 +0000"],
    ),
    (
        TimeInterval(
            times=(MinuteRange(540, 1020),), weekdays=(InclusiveRange(1, 5),), location=SYDNEY
        ),
        ["06 Apr 21 13:00 +1000"],
        ["06 Apr 21 13:00 +0000"],
    ),
    (
        TimeInterval(
            times=(MinuteRange(540, 1020),),
            weekdays=(InclusiveRange(1, 5),),
            months=(InclusiveRange(11, 11),),
            location=SYDNEY,
        ),
        ["01 Nov 21 09:00 +1100", "31 Oct 21 22:00 +0000"],
        ["31 Oct 21 21:00 +0000"],
    ),
    (
        TimeInterval(
            days_of_month=(InclusiveRange(-1, -1),), location=ZoneInfo("America/New_York")
        ),
        ["31 Mar 21 12:00 -0400"],
        ["30 Mar 21 12:00 -0400"],
    ),
]


@pytest.mark.parametrize(("interval", "inside", "outside"), CONTAINS_CASES)
def test_contains_time(interval: TimeInterval, inside: list[str], outside: list[str]) -> None:
    for text in inside:
        assert interval.contains(at(text)), text
    for text in outside:
        assert not interval.contains(at(text)), text


# TestParseTimeString's table: (start, end, minutes or None for an error).
TIME_RANGE_CASES = [
    ("00:00", "24:00", MinuteRange(0, 1440)),
    ("01:35", "17:39", MinuteRange(95, 1059)),
    ("09:35", "09:39", MinuteRange(575, 579)),
    ("17:31", "17:31", None),
    ("12:30", "24:01", None),
    ("09:30", "07:41", None),
    ("24:00", "17:41", None),
    ("14:03", None, None),
]


@pytest.mark.parametrize(("start", "end", "expected"), TIME_RANGE_CASES)
def test_time_range(start: str, end: str | None, expected: MinuteRange | None) -> None:
    raw = {"times": [{"start_time": start, "end_time": end}]}
    if expected is None:
        with pytest.raises(TimeIntervalError):
            parse_time_interval(raw)
    else:
        assert parse_time_interval(raw).times == (expected,)


# TestYamlUnmarshal's table: (yaml, intervals, inside, outside).
PARSE_CASES = [
    (
        "- weekdays: ['monday:friday']\n  times: [{start_time: '09:00', end_time: '17:00'}]",
        [TimeInterval(weekdays=(InclusiveRange(1, 5),), times=(MinuteRange(540, 1020),))],
        ["08 Jul 20 09:00 +0000", "08 Jul 20 16:59 +0000", "01 Apr 21 13:00 +0000"],
        ["08 Jul 20 05:00 +0000", "08 Jul 20 08:59 +0000"],
    ),
    (
        """
- weekdays: ['monday:friday', 'sunday']
  months: ['january:march']
  days_of_month: ['-7:-1']
  years: ['2020:2025', '2030:2035']
  times: [{start_time: '09:00', end_time: '17:00'}]
""",
        [
            TimeInterval(
                weekdays=(InclusiveRange(1, 5), InclusiveRange(0, 0)),
                times=(MinuteRange(540, 1020),),
                months=(InclusiveRange(1, 3),),
                days_of_month=(InclusiveRange(-7, -1),),
                years=(InclusiveRange(2020, 2025), InclusiveRange(2030, 2035)),
            )
        ],
        [
            "27 Jan 21 09:00 +0000",
            "28 Jan 21 16:59 +0000",
            "29 Jan 21 13:00 +0000",
            "31 Mar 25 13:00 +0000",
            "31 Jan 35 13:00 +0000",
        ],
        [
            "30 Jan 21 13:00 +0000",
            "01 Apr 21 13:00 +0000",
            "30 Jan 26 13:00 +0000",
            "31 Jan 35 17:01 +0000",
        ],
    ),
    ("- days_of_month: ['1:-1']", [TimeInterval(days_of_month=(InclusiveRange(1, -1),))], [], []),
    ("- months: ['January:december']", [TimeInterval(months=(InclusiveRange(1, 12),))], [], []),
    (
        "- years: ['2020:2022']\n  location: 'Australia/Sydney'",
        [TimeInterval(years=(InclusiveRange(2020, 2022),), location=SYDNEY)],
        [],
        [],
    ),
]


@pytest.mark.parametrize(("text", "expected", "inside", "outside"), PARSE_CASES)
def test_parse(
    text: str, expected: list[TimeInterval], inside: list[str], outside: list[str]
) -> None:
    intervals = parse_list(text)
    assert intervals == expected
    for instant in inside:
        assert holds(intervals, at(instant)), instant
    for instant in outside:
        assert not holds(intervals, at(instant)), instant


# TestYamlUnmarshal's error cases, with Alertmanager's messages.
PARSE_ERRORS = [
    (
        "- times: [{start_time: '01:99', end_time: '23:59'}]",
        "couldn't parse timestamp 01:99, invalid format",
    ),
    (
        "- times: [{start_time: '00:00', end_time: '99:99'}]",
        "couldn't parse timestamp 99:99, invalid format",
    ),
    ("- weekdays: ['friday:monday']", "start day cannot be before end day"),
    ("- weekdays: ['blurgsday:flurgsday']", "blurgsday is not a valid weekday"),
    ("- weekdays: ['1:3']", "1 is not a valid weekday"),
    ("- weekdays: ['-2:-1']", "-2 is not a valid weekday"),
    ("- days_of_month: ['0']", "0 is not a valid day of the month: out of range"),
    ("- days_of_month: ['-50:-20']", "-50 is not a valid day of the month: out of range"),
    ("- days_of_month: ['1:50']", "50 is not a valid day of the month: out of range"),
    ("- days_of_month: ['-15:5']", "end day must be negative if start day is negative"),
    ("- days_of_month: ['10:-25']", "end day -25 is always before start day 10"),
    ("- months: ['martius:june']", "martius is not a valid month"),
    ("- months: ['march:junius']", "junius is not a valid month"),
    ("- months: ['december:january']", "end month january is before start month december"),
    ("- years: ['2022:2020']", "end year 2020 is before start year 2022"),
    # Beyond Alertmanager's table: what it refuses elsewhere, and what we refuse.
    ("- location: 'Mars/Olympus_Mons'", "unknown time zone 'Mars/Olympus_Mons'"),
    ("- location: 'Local'", "location 'Local' is not supported: name the IANA zone"),
    ("- weekday: ['monday']", "unknown field 'weekday'"),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(TimeIntervalError) as caught:
        parse_list(text)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("- weekdays: ['monday', 'friyay']", "weekdays[1]"),
        ("- times: [{start_time: '10:00', end_time: '09:00'}]", "times[0]"),
        ("- location: 'Mars/Olympus_Mons'", "location"),
        ("- weekday: ['monday']", "weekday"),
        ("- months: 'march'", "months"),
    ],
)
def test_parse_errors_say_where_in_the_entry(text: str, path: str) -> None:
    with pytest.raises(TimeIntervalError) as caught:
        parse_list(text)
    assert caught.value.path == path


# TestTimeIntervalComplete's table.
COMPLETE_CASES = [
    (
        """
weekdays: ['monday:wednesday', 'saturday', 'sunday']
times: [{start_time: '13:00', end_time: '15:00'}]
days_of_month: ['1', '10', '20:-1']
years: ['2020:2023']
months: ['january:march']
""",
        ["10 Jan 21 13:00 +0000", "30 Jan 21 14:24 +0000"],
        ["09 Jan 21 13:00 +0000", "20 Jan 21 12:59 +0000", "02 Feb 21 13:00 +0000"],
    ),
    (
        "days_of_month: ['30:31']\nyears: ['2020:2023']\nmonths: ['february']",
        [],
        ["28 Feb 21 13:00 +0000"],
    ),
]


@pytest.mark.parametrize(("text", "inside", "outside"), COMPLETE_CASES)
def test_complete(text: str, inside: list[str], outside: list[str]) -> None:
    interval = parse_time_interval(yaml.safe_load(text))
    for instant in inside:
        assert interval.contains(at(instant)), instant
    for instant in outside:
        assert not interval.contains(at(instant)), instant


# TestIntervener_Mutes: Sydney evenings and weekends.
EVENINGS = [TimeInterval(times=(MinuteRange(0, 540), MinuteRange(1020, 1440)), location=SYDNEY)]
WEEKENDS = [TimeInterval(weekdays=(InclusiveRange(6, 6), InclusiveRange(0, 0)), location=SYDNEY)]


@pytest.mark.parametrize(
    ("now", "muted_by"),
    [
        (datetime(2024, 1, 1, 0, 0, tzinfo=SYDNEY), {"evenings"}),
        (datetime(2024, 1, 1, 9, 0, tzinfo=SYDNEY), set()),
        (datetime(2024, 1, 6, 10, 0, tzinfo=SYDNEY), {"weekends"}),
        (datetime(2024, 1, 6, 17, 0, tzinfo=SYDNEY), {"evenings", "weekends"}),
        (datetime(2024, 1, 1, 10, 0, tzinfo=UTC), {"evenings"}),
        (datetime(2024, 1, 6, 10, 0, tzinfo=UTC), {"evenings", "weekends"}),
    ],
)
def test_named_intervals(now: datetime, muted_by: set[str]) -> None:
    named = {"evenings": EVENINGS, "weekends": WEEKENDS}
    assert {name for name, intervals in named.items() if holds(intervals, now)} == muted_by


# Daylight saving time, in zones that have it (New York: 2021-03-14 02:00 EST -> 03:00
# EDT; 2021-11-07 02:00 EDT -> 01:00 EST).
NEW_YORK = ZoneInfo("America/New_York")
SEOUL_MARKET = parse_time_interval(
    {
        "weekdays": ["monday:friday"],
        "times": [{"start_time": "09:00", "end_time": "15:30"}],
        "location": "Asia/Seoul",
    }
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("interval", "after", "expected"),
    [
        # Inside already: the instant itself.
        (SEOUL_MARKET, "2026-12-02T10:00+09:00", "2026-12-02T10:00+09:00"),
        # 15:29 Friday in Seoul: inside; 15:30 is the exclusive end.
        (SEOUL_MARKET, "2026-12-04T15:29+09:00", "2026-12-04T15:29+09:00"),
        (SEOUL_MARKET, "2026-12-04T15:30+09:00", "2026-12-07T09:00+09:00"),
        # Evening: the next morning.
        (SEOUL_MARKET, "2026-12-02T15:29:30+09:00", "2026-12-02T15:29:30+09:00"),
        (SEOUL_MARKET, "2026-12-02T20:00:31+09:00", "2026-12-03T09:00+09:00"),
        # Spring forward: 02:30 New York time does not exist on 2021-03-14; the window
        # [02:30, 04:00) first holds when the clock jumps to 03:00 EDT.
        (
            TimeInterval(times=(MinuteRange(150, 240),), location=NEW_YORK),
            "2021-03-14T01:00-05:00",
            "2021-03-14T03:00-04:00",
        ),
        # Fall back: 01:00-01:30 happens twice on 2021-11-07; after the first pass, the
        # second (EST) is the next opening, not the next day's.
        (
            TimeInterval(times=(MinuteRange(60, 90),), location=NEW_YORK),
            "2021-11-07T01:45-04:00",
            "2021-11-07T01:00-05:00",
        ),
        # A daily window at 09:00 local keeps its wall time across the change.
        (
            TimeInterval(times=(MinuteRange(540, 600),), location=NEW_YORK),
            "2021-03-13T10:00-05:00",
            "2021-03-14T09:00-04:00",
        ),
        # Last day of the month, past February.
        (
            TimeInterval(days_of_month=(InclusiveRange(-1, -1),)),
            "2026-02-01T00:00Z",
            "2026-02-28T00:00Z",
        ),
    ],
)
def test_next_opening(interval: TimeInterval, after: str, expected: str) -> None:
    assert next_opening([interval], utc(after)) == utc(expected)


def test_next_opening_of_an_interval_that_never_holds_again() -> None:
    past = TimeInterval(years=(InclusiveRange(2020, 2021),))
    assert next_opening([past], utc("2026-12-02T00:00Z")) is None


def test_next_opening_is_the_earliest_of_a_named_list() -> None:
    weekend_mornings = parse_list(
        "- weekdays: ['saturday']\n  times: [{start_time: '08:00', end_time: '09:00'}]\n"
        "- weekdays: ['sunday']\n  times: [{start_time: '07:00', end_time: '08:00'}]"
    )
    # Wednesday 2026-12-02: Saturday 08:00 comes before Sunday 07:00.
    assert next_opening(weekend_mornings, utc("2026-12-02T12:00Z")) == utc("2026-12-05T08:00Z")
    assert next_opening(weekend_mornings, utc("2026-12-05T08:30Z")) == utc("2026-12-05T08:30Z")
    assert next_opening(weekend_mornings, utc("2026-12-05T09:00Z")) == utc("2026-12-06T07:00Z")


@pytest.mark.parametrize(
    ("intervals", "after", "expected"),
    [
        # Outside already: the instant itself.
        ([SEOUL_MARKET], "2026-12-02T08:59:59+09:00", "2026-12-02T08:59:59+09:00"),
        # Inside: the exclusive end of the range.
        ([SEOUL_MARKET], "2026-12-02T10:00:30+09:00", "2026-12-02T15:30+09:00"),
        # Two ranges that touch hold as one stretch.
        (
            parse_list(
                "- times: [{start_time: '09:00', end_time: '12:00'},"
                " {start_time: '12:00', end_time: '13:00'}]"
            ),
            "2026-12-02T10:00Z",
            "2026-12-02T13:00Z",
        ),
        # A range ending at 24:00 that goes on the next day (every weekday).
        (
            parse_list(
                "- weekdays: ['monday:friday']\n  times: [{start_time: '18:00', end_time: '24:00'}]\n"
                "- weekdays: ['tuesday:saturday']\n  times: [{start_time: '00:00', end_time: '08:00'}]"
            ),
            "2026-12-02T19:00Z",  # Wednesday
            "2026-12-03T08:00Z",
        ),
        # Weekends, from Friday night: the union of overlapping lists, closing on Monday.
        (
            parse_list(
                "- weekdays: ['saturday', 'sunday']\n"
                "- weekdays: ['friday']\n  times: [{start_time: '18:00', end_time: '24:00'}]"
            ),
            "2026-12-04T20:00Z",  # Friday
            "2026-12-07T00:00Z",
        ),
        # Fall back: 01:00-01:30 New York time happens twice; it closes at the first 01:30.
        (
            [TimeInterval(times=(MinuteRange(60, 90),), location=NEW_YORK)],
            "2021-11-07T01:10-04:00",
            "2021-11-07T01:30-04:00",
        ),
    ],
)
def test_next_closing(intervals: list[TimeInterval], after: str, expected: str) -> None:
    assert next_closing(intervals, utc(after)) == utc(expected)


def test_next_closing_of_intervals_that_always_hold() -> None:
    always = parse_list("- weekdays: ['sunday:saturday']")
    assert next_closing(always, utc("2026-12-02T00:00Z")) is None
