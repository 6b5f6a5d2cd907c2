"""The report's incident figures (DESIGN §8): MTTA and how many reached their last step.

Pure: incidents in, a summary out. An incident counts when it was opened in the period.
Its time to acknowledge runs from the opening to its *first* acknowledgement (a timeline
entry, so an acknowledgement that later timed out still counts as the first response).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from notifier.incidents.machine import Incident
from notifier.stats import mean


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    opened: int
    acknowledged: int  # of those opened, how many someone acknowledged
    mtta: float | None  # mean seconds to the first acknowledgement; None when none was
    reached_last_step: int  # escalated to their policy's last step (nobody answered sooner)


def summarise_incidents(
    incidents: Sequence[Incident], *, since: float, now: float
) -> IncidentSummary:
    chosen = [i for i in incidents if since <= i.opened_at <= now]
    waits = []
    for incident in chosen:
        first = next((e.at for e in incident.timeline if e.event == "acknowledged"), None)
        if first is not None:
            waits.append(max(0.0, first - incident.opened_at))
    return IncidentSummary(
        opened=len(chosen),
        acknowledged=len(waits),
        mtta=mean(waits),
        reached_last_step=sum(1 for i in chosen if i.reached_last_step),
    )
