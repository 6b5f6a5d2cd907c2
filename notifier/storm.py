"""When a channel is in storm mode (DESIGN §10): a pure detector with hysteresis, clock passed in.

A channel enters storm mode when its backlog would take longer than ``max_drain`` to
drain at its rate limit, and leaves it only once the backlog would drain within a
quarter of ``max_drain``: between the two it keeps its mode, so a backlog hovering
near the threshold does not flip it on every look. While in storm mode the channel's
backlog is folded on every look, so the backlog seen is what arrived since the last
look: the storm ends when arrivals slow below a quarter of the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

LEAVE_FRACTION = 0.25


@dataclass(frozen=True, slots=True)
class StormChange:
    in_storm: bool
    entered: bool  # this look started a storm
    left: bool  # this look ended one


class StormDetector:
    """Storm mode of one channel, from its backlog and its rate limit (messages per second)."""

    def __init__(self, max_drain: float, rate: float) -> None:
        if max_drain <= 0 or rate <= 0:
            raise ValueError("max_drain and rate must be positive")
        self.max_drain = max_drain
        self.rate = rate
        self.in_storm = False
        self.started_at: float | None = None

    def observe(self, backlog: int, now: float) -> StormChange:
        drain = backlog / self.rate
        if not self.in_storm and drain > self.max_drain:
            self.in_storm, self.started_at = True, now
            return StormChange(True, entered=True, left=False)
        if self.in_storm and drain < self.max_drain * LEAVE_FRACTION:
            self.in_storm, self.started_at = False, None
            return StormChange(False, entered=False, left=True)
        return StormChange(self.in_storm, entered=False, left=False)
