"""The daily report's incident figures: MTTA and how many incidents reached their last step."""

from __future__ import annotations

import json

from notifier.incidents import machine
from notifier.incidents.machine import Incident, Policy, PolicyStep
from notifier.report import run_report
from notifier.report.incidents import summarise_incidents
from notifier.store.memory import MemoryStore

POLICY = Policy("oncall", (PolicyStep(0, ("slack",)), PolicyStep(300, ("sms",))))
NOW = 1_800_086_400.0
DAY = 86_400.0


def incident(opened_at: float, *, ack_after: float | None, last_step: bool, n: int) -> Incident:
    opened = machine.open_incident(
        POLICY,
        incident_id=f"i{n}",
        route="r",
        group_key=f"g{n}",
        ack_code=f"{n:04d}",
        now=opened_at,
    ).incident
    for index in range(2 if last_step else 1):
        opened = machine.step_due(
            POLICY, opened, epoch=opened.epoch, page_index=index, now=opened_at + 300 * index
        ).incident
    if ack_after is not None:
        opened = machine.acknowledge(
            POLICY, opened, by="kim", path="api", now=opened_at + ack_after
        ).incident
    return opened


INCIDENTS = [
    incident(NOW - 3600, ack_after=60, last_step=False, n=1),
    incident(NOW - 7200, ack_after=420, last_step=True, n=2),
    incident(NOW - 600, ack_after=None, last_step=True, n=3),
    incident(NOW - 2 * DAY, ack_after=5, last_step=False, n=4),  # before the period
]


def test_mtta_counts_the_first_acknowledgement_of_incidents_opened_in_the_period() -> None:
    summary = summarise_incidents(INCIDENTS, since=NOW - DAY, now=NOW)
    assert (summary.opened, summary.acknowledged, summary.reached_last_step) == (3, 2, 2)
    assert summary.mtta == 240.0  # (60 + 420) / 2


def test_no_acknowledgement_means_no_mtta() -> None:
    summary = summarise_incidents(INCIDENTS[2:3], since=NOW - DAY, now=NOW)
    assert summary.mtta is None and summary.reached_last_step == 1


async def test_the_report_prints_them() -> None:
    store = MemoryStore()
    for item in INCIDENTS:
        await store.open_incident(item, ())
    text = await run_report(store, DAY, "text", NOW)
    assert "MTTA (mean time to acknowledge): 4m" in text
    assert "reached their last escalation step: 2" in text
    data = json.loads(await run_report(store, DAY, "json", NOW))
    assert data["incidents"]["mtta"] == 240.0
    html = await run_report(store, DAY, "html", NOW)
    assert "reached their last escalation step: 2" in html
