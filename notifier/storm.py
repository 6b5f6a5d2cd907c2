"""When a channel is in storm mode (DESIGN §10): a pure detector with hysteresis, clock passed in.

A channel enters storm mode when its backlog would take longer than ``max_drain`` to
drain at its rate limit, and leaves it once the backlog would drain within a quarter of
``max_drain``. While it storms its backlog is folded on every look, so what the store
holds says little: the detector instead keeps the backlog the channel would have had,
had nothing been folded (what it saw arrive, less what its rate limit would have sent
since), counted up to the entering threshold. The storm therefore ends once arrivals
have stayed below the channel's rate for three quarters of ``max_drain``, and a quiet
second in the middle of a storm does not end it.
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
        self._backlog = 0.0  # in storm: the backlog had nothing been folded
        self._seen_at = 0.0

    def observe(self, backlog: int, now: float) -> StormChange:
        """``backlog``: the channel's waiting jobs now (in storm: those since the last fold)."""
        threshold = self.max_drain * self.rate
        if not self.in_storm:
            if backlog <= threshold:
                return StormChange(False, entered=False, left=False)
            self.in_storm, self.started_at = True, now
            self._backlog, self._seen_at = min(float(backlog), threshold), now
            return StormChange(True, entered=True, left=False)
        drained = max(0.0, self._backlog - self.rate * max(0.0, now - self._seen_at))
        self._backlog, self._seen_at = min(drained + backlog, threshold), now
        if self._backlog < threshold * LEAVE_FRACTION:
            self.in_storm, self.started_at = False, None
            return StormChange(False, entered=False, left=True)
        return StormChange(True, entered=False, left=False)
