"""The notification-log rule (pure, clock passed in), planning, and the two kept by a MemoryStore."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from notifier.dedup import (
    FIRING_ENTRY_RETENTION,
    PlannedJob,
    Reason,
    entry_ttl,
    group_identity,
    needs_update,
    plan_notifications,
)
from notifier.payload import WebhookPayload
from notifier.store.memory import MemoryStore
from notifier.testing import ManualClock, config_for_tests, make_payload
from tests.dedup_rules import CASES, REPEAT, Case

NOW = 1_800_000_000.0
HOUR = 3600.0

# critical -> pager and chat (repeat 1h); warning -> chat; info -> quiet (no
# send_resolved) and chat; the rest -> chat by default. The default repeat is 4h.
CONFIG = config_for_tests(
    {"pager": {}, "chat": {}, "quiet": {"send_resolved": False}},
    [
        {
            "name": "critical",
            "matchers": ['severity="critical"'],
            "channels": ["pager", "chat"],
            "repeat_interval": "1h",
        },
        {"name": "warning", "matchers": ['severity="warning"'], "channels": ["chat"]},
        {"name": "quiet", "matchers": ['severity="info"'], "channels": ["quiet", "chat"]},
    ],
    default_channels=["chat"],
)


def plan(payload: WebhookPayload, now: float = NOW) -> list[PlannedJob]:
    return plan_notifications(payload, CONFIG, now, lambda: uuid.uuid4().hex)


def by_channel(payload: WebhookPayload) -> dict[str, PlannedJob]:
    return {job.channel: job for job in plan(payload)}


def alert(name: str, status: str = "firing", severity: str = "critical") -> dict[str, Any]:
    """One alert in Alertmanager's wire shape; its fingerprint is its name."""
    return {
        "status": status,
        "labels": {"alertname": "Disk", "instance": name, "severity": severity},
        "annotations": {"summary": f"disk full on {name}"},
        "startsAt": "2026-01-01T12:00:00Z",
        "endsAt": "2026-01-01T12:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "fingerprint": name,
    }


def instances(job: PlannedJob) -> list[str]:
    assert job.notification is not None
    return [a.labels["instance"] for a in job.notification.alerts]


# The rule, case by case.


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_needs_update_follows_alertmanager_rule_by_rule(case: Case) -> None:
    reason = needs_update(
        case.entry,
        case.firing,
        case.resolved,
        send_resolved=case.send_resolved,
        repeat_interval=REPEAT,
        now=case.now,
    )
    assert reason == case.expected


def test_the_table_reaches_every_reason() -> None:
    assert {case.expected for case in CASES} == set(Reason)


def test_only_do_not_notify_keeps_the_entry() -> None:
    assert [reason for reason in Reason if not reason.notify] == [Reason.DO_NOT_NOTIFY]


def test_an_entry_that_lists_firing_alerts_outlives_alertmanager_s_repeat() -> None:
    assert entry_ttl({"A"}, HOUR) == FIRING_ENTRY_RETENTION
    assert entry_ttl({"A"}, 4 * 24 * HOUR) == 8 * 24 * HOUR
    assert entry_ttl(set(), HOUR) == 2 * HOUR  # the group resolved: swept sooner


# Planning.


def test_each_channel_gets_the_fingerprints_routed_to_it() -> None:
    payload = make_payload(
        alerts=[
            alert("a"),
            alert("b", "resolved"),
            alert("c", severity="warning"),
            alert("d", "resolved", severity="warning"),
        ]
    )
    jobs = by_channel(payload)
    assert (jobs["pager"].firing, jobs["pager"].resolved) == ({"a"}, {"b"})
    assert (jobs["chat"].firing, jobs["chat"].resolved) == ({"a", "c"}, {"b", "d"})
    assert {job.group for job in jobs.values()} == {group_identity(payload)}
    assert instances(jobs["pager"]) == ["a", "b"]
    assert instances(jobs["chat"]) == ["a", "b", "c", "d"]


def test_alert_order_does_not_change_the_job() -> None:
    forward = by_channel(make_payload(alerts=[alert("a"), alert("b", "resolved")]))["pager"]
    backward = by_channel(make_payload(alerts=[alert("b", "resolved"), alert("a")]))["pager"]
    assert (forward.firing, forward.resolved) == (backward.firing, backward.resolved)


def test_send_resolved_false_leaves_resolved_alerts_out_of_the_notification_only() -> None:
    payload = make_payload(
        alerts=[alert("a", severity="info"), alert("b", "resolved", severity="info")]
    )
    jobs = by_channel(payload)
    assert instances(jobs["quiet"]) == ["a"]
    assert jobs["quiet"].resolved == {"b"}  # still logged, as Alertmanager does
    assert not jobs["quiet"].send_resolved
    assert instances(jobs["chat"]) == ["a", "b"]
    assert jobs["chat"].send_resolved


def test_all_resolved_has_nothing_to_send_where_send_resolved_is_false() -> None:
    jobs = by_channel(make_payload(n=2, severity="info", status="resolved"))
    assert jobs["quiet"].notification is None
    assert (jobs["quiet"].firing, len(jobs["quiet"].resolved)) == (set(), 2)
    assert jobs["chat"].notification is not None
    assert jobs["chat"].notification.status == "resolved"


def test_one_payload_gives_at_most_one_job_per_channel() -> None:
    payload = make_payload(
        alerts=[
            alert("db-1"),
            alert("db-2", severity="warning"),
            alert("db-3"),
            alert("db-4", severity="none"),
        ]
    )
    jobs = plan(payload)
    channels = by_channel(payload)
    assert len(jobs) == len(channels) == 2
    assert instances(channels["pager"]) == ["db-1", "db-3"]
    assert instances(channels["chat"]) == ["db-1", "db-2", "db-3", "db-4"]
    assert channels["pager"].notification is not None
    assert channels["pager"].notification.route == "critical"


def test_repeat_interval_is_the_route_s() -> None:
    assert {ch: j.repeat_interval for ch, j in by_channel(make_payload(n=1)).items()} == {
        "pager": HOUR,
        "chat": HOUR,
    }
    [default] = plan(make_payload(severity="warning"))
    assert default.repeat_interval == 4 * HOUR  # defaults.repeat_interval


def test_group_without_a_group_key_is_identified_by_its_labels() -> None:
    payload = make_payload(group_key="")
    other = payload.model_copy(update={"group_labels": {"alertname": "Other"}})
    assert group_identity(payload) != group_identity(other)
    assert "alertname=TestAlert" in group_identity(payload)


def test_groups_differ_by_receiver_and_group_key() -> None:
    payload = make_payload(group_key='{}:{alertname="A"}')
    assert group_identity(payload) != group_identity(make_payload(group_key='{}:{alertname="B"}'))
    assert group_identity(payload) != group_identity(payload.model_copy(update={"receiver": "x"}))


# Planning and the log together, on a MemoryStore (every store: tests/store_contract.py).


class Ingest:
    """Plans and enqueues payloads at a manual clock; says which channels were told."""

    def __init__(self) -> None:
        self.store, self.clock = MemoryStore(), ManualClock(NOW)

    async def post(self, *alerts: dict[str, Any]) -> list[str]:
        jobs = plan(make_payload(alerts=list(alerts)), self.clock())
        result = await self.store.enqueue(jobs, self.clock())
        told = {job.notification.job_id: job.channel for job in jobs if job.notification}
        return sorted(told[job_id] for job_id in result.enqueued)


async def test_a_repeat_is_dropped_until_the_repeat_interval_has_passed() -> None:
    ingest = Ingest()
    assert await ingest.post(alert("a"), alert("b")) == ["chat", "pager"]
    ingest.clock.advance(10)  # the other Alertmanager of an HA pair, or a re-post
    assert await ingest.post(alert("a"), alert("b")) == []
    ingest.clock.advance(HOUR - 10)  # exactly repeat_interval: not past it yet
    assert await ingest.post(alert("a"), alert("b")) == []
    ingest.clock.advance(1)
    assert await ingest.post(alert("a"), alert("b")) == ["chat", "pager"]


async def test_a_new_alert_is_told_at_once_with_the_whole_group() -> None:
    ingest = Ingest()
    await ingest.post(alert("a"))
    ingest.clock.advance(5)
    assert await ingest.post(alert("a"), alert("b")) == ["chat", "pager"]


async def test_a_shrinking_group_never_re_pages_where_send_resolved_is_off() -> None:
    ingest = Ingest()
    a, b = alert("a", severity="info"), alert("b", severity="info")
    assert await ingest.post(a, b) == ["chat", "quiet"]
    ingest.clock.advance(60)
    # b resolves: chat (send_resolved) hears it; quiet must not hear about a again.
    assert await ingest.post(a, alert("b", "resolved", severity="info")) == ["chat"]
    ingest.clock.advance(60)
    # Alertmanager no longer lists the resolved b: nothing changed for anyone.
    assert await ingest.post(a) == []
    ingest.clock.advance(4 * HOUR)
    assert await ingest.post(a) == ["chat", "quiet"]  # the repeat, once it is due


async def test_all_resolved_updates_the_entry_so_a_re_fire_is_told_at_once() -> None:
    ingest = Ingest()
    a = alert("a", severity="info")
    assert await ingest.post(a) == ["chat", "quiet"]
    ingest.clock.advance(60)
    assert await ingest.post(alert("a", "resolved", severity="info")) == ["chat"]
    ingest.clock.advance(60)
    # quiet was sent nothing, but its entry no longer lists a as firing.
    assert await ingest.post(a) == ["chat", "quiet"]


async def test_a_resolution_long_after_the_last_notification_is_still_told() -> None:
    ingest = Ingest()
    await ingest.post(alert("a"))  # repeat 1h; Alertmanager itself may repeat every 4h
    ingest.clock.advance(3 * HOUR)
    assert await ingest.post(alert("a", "resolved")) == ["chat", "pager"]


async def test_entry_for_each_channel_and_group_apart() -> None:
    ingest = Ingest()
    store, now = ingest.store, ingest.clock()
    first = plan(make_payload(alerts=[alert("a")], group_key="{}:{g=1}"), now)
    other = plan(make_payload(alerts=[alert("a")], group_key="{}:{g=2}"), now)
    assert len((await store.enqueue(first, now)).enqueued) == 2
    assert len((await store.enqueue(other, now)).enqueued) == 2
