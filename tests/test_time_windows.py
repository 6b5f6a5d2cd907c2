"""Routes muted by time windows (DESIGN §9), from planning to claim, with a fake clock.

The desk in Seoul: SMS only during KRX market hours (09:00-15:30, Monday to Friday),
deferred or dropped outside them; chat at all times. Each case runs on every store.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from notifier.config import LoadedConfig
from notifier.dedup import plan_notifications
from notifier.payload import WebhookPayload
from notifier.store.base import ClaimedJob, DeliveryRecord, Store
from notifier.testing import config_for_tests, make_payload
from tests.test_store_contract import store  # noqa: F401  (the fixture over all three stores)

MARKET_HOURS = {
    "name": "krx-market-hours",
    "time_intervals": [
        {
            "weekdays": ["monday:friday"],
            "times": [{"start_time": "09:00", "end_time": "15:30"}],
            "location": "Asia/Seoul",
        }
    ],
}


def desk(when_muted: str) -> LoadedConfig:
    return config_for_tests(
        {"sms": {}, "chat": {}},
        [
            {
                "name": "trading-sms",
                "matchers": ['desk="trading"'],
                "channels": ["sms"],
                "active_time_intervals": ["krx-market-hours"],
                "when_muted": when_muted,
                "continue": True,
            },
            {"name": "trading-chat", "matchers": ['desk="trading"'], "channels": ["chat"]},
        ],
        time_intervals=[MARKET_HOURS],
    )


def seoul(text: str) -> float:
    return datetime.fromisoformat(f"{text}+09:00").timestamp()


def payload(firing: str, resolved: str = "") -> WebhookPayload:
    alerts = [(name, "firing") for name in firing] + [(name, "resolved") for name in resolved]
    return make_payload(
        alerts=[
            make_payload(
                alertname="OrderLatency",
                labels={"desk": "trading", "venue": name},
                status=status,  # type: ignore[arg-type]
            )
            .alerts[0]
            .model_dump(mode="json", by_alias=True)
            for name, status in alerts
        ],
        group_key='{}:{alertname="OrderLatency"}',
    )


async def post(queue: Store, config: LoadedConfig, sent: WebhookPayload, at: str) -> None:
    now = seoul(at)
    ids = iter(range(1_000))
    jobs = plan_notifications(sent, config, now, lambda: f"{at}-{next(ids)}")
    await queue.enqueue(jobs, now)


async def sms_at(queue: Store, at: str) -> list[ClaimedJob]:
    """The SMS notifications a worker would send at ``at``; every claimed job is delivered."""
    claimed = await queue.claim(limit=100, lease=30.0, now=seoul(at))
    for job in claimed:
        await queue.complete(delivered(job, seoul(at)))
    return [job for job in claimed if job.notification.channel == "sms"]


def delivered(job: ClaimedJob, at: float) -> DeliveryRecord:
    sent = job.notification
    return DeliveryRecord(
        job.id,
        sent.channel,
        "log",
        "delivered",
        None,
        "ok",
        0.0,
        at,
        sent.received_at,
        sent.severity,
        sent.status,
        len(sent.alerts),
    )


def venues(job: ClaimedJob) -> list[tuple[str, str]]:
    return sorted((a.labels["venue"], a.status) for a in job.notification.alerts)


# Wednesday 2026-12-02, Seoul: the market closed at 15:30; it opens at 09:00 tomorrow.


async def test_deferred_sms_arrives_once_when_the_market_opens_with_the_latest_state(
    store: Store,  # noqa: F811
) -> None:
    config = desk("defer")
    await post(store, config, payload("A"), "2026-12-02T20:00")
    await post(store, config, payload("A"), "2026-12-02T20:00:30")  # the HA twin
    await post(store, config, payload("AB"), "2026-12-02T23:00")
    assert await sms_at(store, "2026-12-03T08:59:59") == []
    (job,) = await sms_at(store, "2026-12-03T09:00")
    assert venues(job) == [("A", "firing"), ("B", "firing")]
    assert await sms_at(store, "2026-12-03T12:00") == []
    # Told when sent: Alertmanager's repeat at the opening is deduplicated.
    await post(store, config, payload("AB"), "2026-12-03T09:00:10")
    assert await sms_at(store, "2026-12-03T09:00:10") == []


async def test_dropped_sms_never_arrives_and_the_log_is_left_as_it_was(
    store: Store,  # noqa: F811
) -> None:
    config = desk("drop")
    await post(store, config, payload("A"), "2026-12-02T20:00")
    assert await sms_at(store, "2026-12-03T09:00") == []
    # As Alertmanager: the channel was never told, so the next post in the window tells it.
    await post(store, config, payload("A"), "2026-12-03T10:00")
    (job,) = await sms_at(store, "2026-12-03T10:00")
    assert venues(job) == [("A", "firing")]


async def test_a_group_that_resolved_while_muted_and_was_never_told_sends_nothing(
    store: Store,  # noqa: F811
) -> None:
    config = desk("defer")
    await post(store, config, payload("A"), "2026-12-02T20:00")
    await post(store, config, payload("", "A"), "2026-12-02T22:00")
    assert await sms_at(store, "2026-12-03T09:00") == []


async def test_a_group_told_before_the_close_hears_its_resolution_at_the_opening(
    store: Store,  # noqa: F811
) -> None:
    config = desk("defer")
    await post(store, config, payload("A"), "2026-12-02T15:29")
    assert [venues(j) for j in await sms_at(store, "2026-12-02T15:29")] == [[("A", "firing")]]
    await post(store, config, payload("", "A"), "2026-12-02T22:00")
    (job,) = await sms_at(store, "2026-12-03T09:00")
    assert venues(job) == [("A", "resolved")]


def test_planning_defers_only_the_muted_route_s_channel() -> None:
    now = seoul("2026-12-04T16:00")  # Friday after the close
    jobs = {j.channel: j for j in plan_notifications(payload("A"), desk("defer"), now, str)}
    assert jobs["sms"].not_before == seoul("2026-12-07T09:00")
    # Delivery latency counts from the opening, not over the weekend.
    assert jobs["sms"].notification is not None
    assert jobs["sms"].notification.received_at == seoul("2026-12-07T09:00")
    assert jobs["chat"].not_before is None
    assert {j.channel for j in plan_notifications(payload("A"), desk("drop"), now, str)} == {"chat"}


@pytest.mark.parametrize("when_muted", ["defer", "drop"])
def test_an_alert_through_an_unmuted_route_sends_the_channel_s_share_now(
    when_muted: str,
) -> None:
    config = config_for_tests(
        {"sms": {}},
        [
            {
                "name": "trading",
                "matchers": ['desk="trading"'],
                "channels": ["sms"],
                "active_time_intervals": ["krx-market-hours"],
                "when_muted": when_muted,
            },
            {"name": "everything", "channels": ["sms"]},
        ],
        time_intervals=[MARKET_HOURS],
    )
    mixed = make_payload(
        alerts=[
            *payload("A").model_dump(mode="json", by_alias=True)["alerts"],
            make_payload(labels={"desk": "ops"}).alerts[0].model_dump(mode="json", by_alias=True),
        ]
    )
    (job,) = plan_notifications(mixed, config, seoul("2026-12-02T20:00"), str)
    assert job.not_before is None
    assert job.notification is not None
    expected = 2 if when_muted == "defer" else 1  # a dropped alert is left out
    assert len(job.notification.alerts) == expected
