"""The dedup decision (pure, clock passed in), then the marks it plans, kept by a MemoryStore."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from notifier.dedup import PlannedJob, dedup_key, group_identity, plan_notifications
from notifier.payload import Alert, WebhookPayload
from notifier.store.memory import MemoryStore
from notifier.testing import ManualClock, config_for_tests, make_payload

NOW = 1_800_000_000.0

# critical -> pager and chat (kept 1h); warning -> chat; the rest -> chat by default.
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


def keys(payload: WebhookPayload) -> dict[str, str]:
    return {job.notification.channel: job.dedup_key for job in plan(payload)}


def alert(name: str, status: str = "firing", severity: str = "critical") -> dict[str, Any]:
    """One alert in Alertmanager's wire shape."""
    return {
        "status": status,
        "labels": {"alertname": "Disk", "instance": name, "severity": severity},
        "annotations": {"summary": f"disk full on {name}"},
        "startsAt": "2026-01-01T12:00:00Z",
        "endsAt": "2026-01-01T12:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
    }


def test_same_payload_twice_gives_the_same_keys() -> None:
    payload = make_payload(n=3)
    first, again = plan(payload), plan(payload, now=NOW + 30)
    assert [j.dedup_key for j in first] == [j.dedup_key for j in again]
    # ...while the jobs themselves are new ones.
    assert {j.notification.received_at for j in again} == {NOW + 30}


def test_alert_order_does_not_change_the_key() -> None:
    a, b = alert("db-1"), alert("db-2")
    assert keys(make_payload(alerts=[a, b])) == keys(make_payload(alerts=[b, a]))


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param([alert("db-1"), alert("db-2"), alert("db-3")], id="one-more-firing"),
        pytest.param([alert("db-1"), alert("db-2", "resolved")], id="one-resolved"),
        pytest.param([alert("db-1")], id="one-gone"),
    ],
)
def test_a_changed_group_gets_new_keys(changed: list[dict[str, Any]]) -> None:
    before = keys(make_payload(alerts=[alert("db-1"), alert("db-2")]))
    after = keys(make_payload(alerts=changed))
    assert before.keys() == after.keys() == {"pager", "chat"}
    assert all(before[channel] != after[channel] for channel in before)


def test_restarted_alert_gets_a_new_key() -> None:
    first = make_payload(alerts=[alert("db-1")])
    restarted = make_payload(alerts=[{**alert("db-1"), "startsAt": "2026-01-01T13:00:00Z"}])
    assert keys(first)["pager"] != keys(restarted)["pager"]


def test_key_differs_by_channel_and_by_group() -> None:
    alerts = (Alert.model_validate(alert("db-1")),)
    group_a = group_identity(make_payload(group_key='{}:{alertname="A"}'))
    group_b = group_identity(make_payload(group_key='{}:{alertname="B"}'))
    assert dedup_key("pager", group_a, alerts) != dedup_key("chat", group_a, alerts)
    assert dedup_key("pager", group_a, alerts) != dedup_key("pager", group_b, alerts)


def test_group_without_a_group_key_is_identified_by_its_labels() -> None:
    payload = make_payload(group_key="")
    other = payload.model_copy(update={"group_labels": {"alertname": "Other"}})
    assert group_identity(payload) != group_identity(other)
    assert "alertname=TestAlert" in group_identity(payload)


def test_send_resolved_false_leaves_resolved_alerts_out() -> None:
    payload = make_payload(
        alerts=[alert("a", severity="info"), alert("b", "resolved", severity="info")]
    )
    jobs = {job.notification.channel: job.notification for job in plan(payload)}
    assert [a.labels["instance"] for a in jobs["quiet"].alerts] == ["a"]
    assert [a.labels["instance"] for a in jobs["chat"].alerts] == ["a", "b"]


def test_all_resolved_gives_no_job_where_send_resolved_is_false() -> None:
    payload = make_payload(n=2, severity="info", status="resolved")
    channels = [job.notification.channel for job in plan(payload)]
    assert channels == ["chat"]
    assert plan(payload)[0].notification.status == "resolved"


def test_one_payload_gives_at_most_one_notification_per_channel() -> None:
    payload = make_payload(
        alerts=[
            alert("db-1"),
            alert("db-2", severity="warning"),
            alert("db-3"),
            alert("db-4", severity="none"),
        ]
    )
    jobs = plan(payload)
    by_channel = {job.notification.channel: job for job in jobs}
    assert len(jobs) == len(by_channel) == 2
    pager, chat = by_channel["pager"].notification, by_channel["chat"].notification
    assert [a.labels["instance"] for a in pager.alerts] == ["db-1", "db-3"]
    assert [a.labels["instance"] for a in chat.alerts] == ["db-1", "db-2", "db-3", "db-4"]
    assert pager.route == "critical"
    # The pager's key covers only the alerts routed to it.
    assert (
        by_channel["pager"].dedup_key
        == keys(make_payload(alerts=[alert("db-1"), alert("db-3")]))["pager"]
    )


def test_ttl_is_the_route_repeat_interval() -> None:
    ttl = {job.notification.channel: job.dedup_ttl for job in plan(make_payload(n=1))}
    assert ttl == {"pager": 3600.0, "chat": 3600.0}
    default = plan(make_payload(severity="warning"))
    assert [job.dedup_ttl for job in default] == [4 * 3600.0]  # defaults.repeat_interval


async def test_store_drops_a_repeat_until_the_repeat_interval_has_passed() -> None:
    store, clock = MemoryStore(), ManualClock(NOW)
    payload = make_payload(n=2)  # critical: pager and chat, repeat_interval 1h

    first = await store.enqueue(plan(payload, clock()), clock())
    assert (len(first.enqueued), first.deduplicated) == (2, 0)

    clock.advance(10)  # the other Alertmanager of an HA pair, or a re-post
    repeat = await store.enqueue(plan(payload, clock()), clock())
    assert (repeat.enqueued, repeat.deduplicated) == ((), 2)

    clock.advance(3600 - 10 - 1)
    still = await store.enqueue(plan(payload, clock()), clock())
    assert still.deduplicated == 2

    clock.advance(2)  # past repeat_interval since the first
    later = await store.enqueue(plan(payload, clock()), clock())
    assert (len(later.enqueued), later.deduplicated) == (2, 0)


async def test_store_enqueues_a_changed_group_at_once() -> None:
    store, clock = MemoryStore(), ManualClock(NOW)
    await store.enqueue(plan(make_payload(alerts=[alert("db-1")]), clock()), clock())
    clock.advance(5)
    grown = make_payload(alerts=[alert("db-1"), alert("db-2")])
    result = await store.enqueue(plan(grown, clock()), clock())
    assert (len(result.enqueued), result.deduplicated) == (2, 0)
