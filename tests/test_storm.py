"""The storm detector (DESIGN §10): enter past ``max_drain``, leave below a quarter of it."""

from __future__ import annotations

import pytest

from notifier.storm import StormDetector

# (seconds later, backlog seen, in storm after it), Slack's default: 30 s at 1 message/s.
# In storm the backlog seen is what arrived since the last look (the rest was folded).
STEPS = [
    (1, 30, False),  # drains in exactly 30 s: not past the threshold
    (1, 31, True),  # past it: storm; counted as 30 (the threshold)
    (1, 0, True),  # a quiet second: 29 would still wait
    (20, 0, True),  # 9 would wait: above a quarter (7.5)
    (2, 0, False),  # 7 would wait: over
    (1, 20, False),  # calm again below the threshold
    (1, 100, True),  # a new storm
    (1, 1, True),  # arriving at the rate it drains: the storm holds
    (1, 1, True),
]


def test_enters_past_max_drain_and_leaves_below_a_quarter_of_it() -> None:
    detector = StormDetector(max_drain=30.0, rate=1.0)
    now, seen = 1000.0, []
    for later, backlog, _ in STEPS:
        now += later
        seen.append(detector.observe(backlog, now).in_storm)
    assert seen == [expected for _, _, expected in STEPS]


def test_reports_entering_and_leaving_once_and_when_the_storm_began() -> None:
    detector = StormDetector(max_drain=60.0, rate=2.0)  # 120 jobs to enter, below 30 to leave
    assert detector.observe(121, now=10.0).entered
    assert detector.started_at == 10.0
    change = detector.observe(500, now=11.0)
    assert (change.in_storm, change.entered, change.left) == (True, False, False)
    assert detector.started_at == 10.0
    assert not detector.observe(0, now=56.0).left  # 120 - 90 = 30 would wait
    assert detector.observe(0, now=57.0).left
    assert detector.started_at is None
    assert not detector.observe(29, now=58.0).left


def test_rejects_a_threshold_or_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        StormDetector(max_drain=0.0, rate=1.0)
    with pytest.raises(ValueError, match="positive"):
        StormDetector(max_drain=30.0, rate=0.0)
