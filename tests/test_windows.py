"""Routes' time windows from a config: Alertmanager's muting rule, and when a route reopens."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifier.config import parse_config
from notifier.schedule import parse_time_interval
from notifier.windows import Muting, RouteWindow, TimeWindows

CONFIG = """
channels:
  log: {type: log}
time_intervals:
  - name: krx-market-hours
    time_intervals:
      - weekdays: ["monday:friday"]
        times: [{start_time: "09:00", end_time: "15:30"}]
        location: Asia/Seoul
  - name: lunch
    time_intervals:
      - times: [{start_time: "12:00", end_time: "13:00"}]
        location: Asia/Seoul
  - name: weekends
    time_intervals: [{weekdays: [saturday, sunday], location: Asia/Seoul}]
routes:
  - name: market
    matchers: ['desk="trading"']
    channels: [log]
    active_time_intervals: [krx-market-hours]
    mute_time_intervals: [lunch]
  - name: quiet-weekends
    matchers: ['desk="ops"']
    channels: [log]
    mute_time_intervals: [weekends]
    when_muted: drop
  - name: always
    channels: [log]
"""


@pytest.fixture
def windows() -> TimeWindows:
    return parse_config(CONFIG, Path("/etc/notifier.yaml"), {}).windows


def seoul(text: str) -> datetime:
    return datetime.fromisoformat(f"{text}+09:00")


@pytest.mark.parametrize(
    ("route", "at", "muted", "unmuted_from"),
    [
        # Wednesday 2026-12-02 in Seoul.
        ("market", "2026-12-02T10:00", False, "2026-12-02T10:00"),
        ("market", "2026-12-02T08:59", True, "2026-12-02T09:00"),
        # A mute interval inside the active one: muted until it closes.
        ("market", "2026-12-02T12:15", True, "2026-12-02T13:00"),
        # After the close on Friday: Monday morning.
        ("market", "2026-12-04T15:30", True, "2026-12-07T09:00"),
        ("quiet-weekends", "2026-12-05T10:00", True, "2026-12-07T00:00"),
        ("quiet-weekends", "2026-12-07T10:00", False, "2026-12-07T10:00"),
        ("always", "2026-12-05T10:00", False, "2026-12-05T10:00"),
    ],
)
def test_muted_and_unmuted_from(
    windows: TimeWindows, route: str, at: str, muted: bool, unmuted_from: str
) -> None:
    assert windows.is_muted(route, seoul(at)) is muted
    assert windows.unmuted_from(route, seoul(at)) == seoul(unmuted_from)


def test_muting_says_how_and_until_when(windows: TimeWindows) -> None:
    friday_evening = seoul("2026-12-04T20:00:30").timestamp()
    assert windows.muting("market", friday_evening) == Muting(
        "defer", seoul("2026-12-07T09:00").timestamp()
    )
    saturday = seoul("2026-12-05T10:00").timestamp()
    muting = windows.muting("quiet-weekends", saturday)
    assert muting is not None and muting.drops
    assert windows.muting("market", seoul("2026-12-02T10:00").timestamp()) is None
    assert windows.muting("always", saturday) is None


def test_a_deferring_route_that_never_opens_drops() -> None:
    windows = TimeWindows(
        {"always": (parse_time_interval({}),)}, {"muted": RouteWindow(mute=("always",))}
    )
    muting = windows.muting("muted", datetime(2026, 12, 2, tzinfo=UTC).timestamp())
    assert muting == Muting("defer", None) and muting.drops


def test_named_intervals_for_escalation_steps(windows: TimeWindows) -> None:
    assert windows.holds(["krx-market-hours"], seoul("2026-12-02T09:00"))
    assert not windows.holds(["krx-market-hours", "weekends"], seoul("2026-12-02T20:00"))
    assert windows.next_opening(["krx-market-hours", "weekends"], seoul("2026-12-04T16:00")) == (
        seoul("2026-12-05T00:00")
    )
