"""``routes test --at`` and ``check-config`` on a config with time windows (DESIGN §3a, §9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import run

DESK = """
storage: {url: "memory://"}
channels:
  sms: {type: log}
  chat: {type: log}
time_intervals:
  - name: krx-market-hours
    time_intervals:
      - weekdays: ["monday:friday"]
        times: [{start_time: "09:00", end_time: "15:30"}]
        location: Asia/Seoul
  - name: year-2020
    time_intervals: [{years: ["2020"]}]
routes:
  - name: trading-sms
    matchers: ['desk="trading"']
    channels: [sms]
    active_time_intervals: [krx-market-hours]
    continue: true
  - name: trading-chat
    matchers: ['desk="trading"']
    channels: [chat]
    active_time_intervals: [krx-market-hours]
    when_muted: drop
"""


@pytest.fixture
def desk(tmp_path: Path) -> str:
    path = tmp_path / "desk.yaml"
    path.write_text(DESK)
    return str(path)


def test_routes_test_at_says_what_is_muted_then_and_until_when(desk: str) -> None:
    code, out, _ = run(
        ["routes", "test", "--config", desk, "desk=trading", "--at", "2026-12-04T20:00+09:00"]
    )
    assert code == 0
    assert "sms (route trading-sms): muted, deferred until 2026-12-07T09:00:00+09:00" in out
    assert "chat (route trading-chat): muted, dropped (opens 2026-12-07T09:00:00+09:00)" in out
    code, out, _ = run(
        ["routes", "test", "--config", desk, "desk=trading", "--at", "2026-12-07T00:00Z", "--json"]
    )
    assert code == 0
    assert json.loads(out)["windows"] == [
        {
            "channel": "sms",
            "route": "trading-sms",
            "active": True,
            "until": None,
            "when_muted": None,
        },
        {
            "channel": "chat",
            "route": "trading-chat",
            "active": True,
            "until": None,
            "when_muted": None,
        },
    ]


@pytest.mark.parametrize("at", ["2026-12-07T09:00", "next monday"])
def test_routes_test_at_needs_an_iso_time_with_its_offset(desk: str, at: str) -> None:
    code, _, err = run(["routes", "test", "--config", desk, "desk=trading", "--at", at])
    assert code == 2
    assert "--at" in err


def test_check_config_lists_the_intervals_and_route_windows(desk: str) -> None:
    code, out, _ = run(["check-config", "--config", desk])
    assert code == 0, out
    assert "[active: krx-market-hours; when muted: defer]" in out
    assert "[active: krx-market-hours; when muted: drop]" in out
    lines = out.splitlines()
    market = next(line for line in lines if line.startswith("  krx-market-hours: "))
    assert market.endswith("open now") or "next opens 20" in market
    assert "  year-2020: next opens never within five years" in lines
