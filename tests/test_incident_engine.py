"""The incident engine on the memory store with a manual clock: every transition path, the
notifications each one queues, and a compare-and-set conflict."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from notifier.incidents import machine
from notifier.incidents.engine import IncidentEngine, Refusal, StepWindow, always_open
from notifier.incidents.machine import Incident, State
from notifier.metrics import Metrics
from notifier.notification import Notification
from notifier.store.memory import MemoryStore
from notifier.testing import ManualClock, config_for_tests, make_payload
from notifier.timers import TimerLoop

POLICY = {
    "steps": [
        {"after": "0s", "channels": ["pager-slack"]},
        {"after": "5m", "channels": ["pager-sms", "pager-slack"]},
    ],
    "ack_timeout": "30m",
}


class Harness:
    def __init__(
        self,
        store: MemoryStore | None = None,
        repeat: int = 0,
        step_window: StepWindow = always_open,
    ) -> None:
        self.loaded = config_for_tests(
            {"console": {}, "pager-slack": {}, "pager-sms": {}},
            [
                {
                    "name": "critical",
                    "matchers": ['severity="critical"'],
                    "channels": ["console"],
                    "escalation": "oncall",
                }
            ],
            escalation_policies={"oncall": {**POLICY, "repeat": repeat}},
            responders=[{"name": "kim", "phone": "+821012345678"}, {"name": "lee"}],
            server={"public_url": "https://notifier.example.com"},
        )
        self.store = store or MemoryStore()
        self.clock = ManualClock()
        self.metrics = Metrics()
        ids = itertools.count(1)
        codes = iter(["1111", "1111", "2222", "3333", "4444"])
        self.engine = IncidentEngine(
            self.store,
            lambda: self.loaded,
            self.metrics,
            clock=self.clock,
            new_id=lambda: f"id{next(ids)}",
            new_code=lambda: next(codes),
            new_incident_id=lambda: f"inc{next(ids)}",
            step_window=step_window,
        )
        self.timers = TimerLoop(
            self.store, {"incident": self.engine.on_timer}, lease=60, clock=self.clock
        )

    def limit_step_2(self, *intervals: str) -> None:
        """Give the ``oncall`` policy's second step these ``active_time_intervals``."""
        policy = self.loaded.config.escalation_policies["oncall"]
        limited = policy.steps[1].model_copy(update={"active_time_intervals": list(intervals)})
        steps = {"steps": [policy.steps[0], limited]}
        config = self.loaded.config.model_copy(
            update={"escalation_policies": {"oncall": policy.model_copy(update=steps)}}
        )
        self.loaded = replace(self.loaded, config=config)

    async def fire(self, **kwargs: object) -> None:
        await self.engine.on_payload(make_payload(group_key="g1", **kwargs), self.clock())  # type: ignore[arg-type]

    async def resolve(self) -> None:
        await self.engine.on_payload(make_payload(group_key="g1", status="resolved"), self.clock())

    async def incident(self) -> Incident:
        incidents = await self.store.list_incidents()
        assert len(incidents) == 1
        return incidents[0]

    async def sent(self) -> list[Notification]:
        """The notifications queued since the last call (claimed and completed)."""
        jobs = await self.store.claim(1000, 60, self.clock())
        for job in jobs:
            await self.store.release(job.id, 1e12)  # out of the way of later claims
        return [job.notification for job in jobs]


def channels(notifications: list[Notification]) -> list[tuple[str, str, str | None]]:
    return sorted(
        (n.channel, n.kind, n.incident.announcement if n.incident else None) for n in notifications
    )


@pytest.fixture
def h() -> Iterator[Harness]:
    yield Harness()


async def test_a_firing_group_opens_one_incident_and_step_1_pages_at_once(h: Harness) -> None:
    await h.fire()
    await h.fire()  # Alertmanager again: still one incident
    incident = await h.incident()
    assert incident.state is State.OPEN and incident.ack_code == "1111"
    assert await h.timers.run_due() == 1
    pages = await h.sent()
    assert channels(pages) == [("pager-slack", "page", None)]
    context = pages[0].incident
    assert context is not None
    assert (context.id, context.step, context.steps, context.ack_code) == (
        incident.id,
        1,
        2,
        "1111",
    )
    assert context.ack_url == f"https://notifier.example.com/api/v1/incidents/{incident.id}/ack"
    assert pages[0].alerts[0].labels["severity"] == "critical"
    assert h.metrics.escalation_steps.labels("oncall", "1")._value.get() == 1


async def test_step_2_waits_for_its_after_then_names_who_else_was_paged(h: Harness) -> None:
    await h.fire()
    await h.timers.run_due()
    await h.sent()
    h.clock.advance(299)
    assert await h.timers.run_due() == 0
    h.clock.advance(1)
    assert await h.timers.run_due() == 1
    pages = await h.sent()
    assert channels(pages) == [("pager-slack", "page", None), ("pager-sms", "page", None)]
    sms = next(p for p in pages if p.channel == "pager-sms")
    assert sms.incident is not None
    assert (sms.incident.step, sms.incident.others_paged) == (2, ("pager-slack",))
    incident = await h.incident()
    assert incident.reached_last_step and incident.pages_sent == 2
    assert await h.store.next_timer_at() is None  # the last step: nothing more to send


async def test_acknowledging_stops_the_steps_and_tells_the_paged_channels(h: Harness) -> None:
    await h.fire()
    await h.timers.run_due()
    await h.sent()
    outcome = await h.engine.acknowledge((await h.incident()).id, "kim", "api")
    assert outcome.changed and outcome.incident is not None
    assert outcome.incident.acknowledged_by == "kim"
    told = await h.sent()
    assert channels(told) == [("pager-slack", "announcement", "acknowledged")]
    assert told[0].incident is not None and told[0].incident.by == "kim"
    h.clock.advance(600)  # past step 2's time: it was cancelled
    assert await h.timers.run_due() == 0
    assert await h.sent() == []
    assert h.metrics.incident_acknowledgements.labels("api")._value.get() == 1


async def test_a_second_acknowledgement_changes_nothing(h: Harness) -> None:
    await h.fire()
    await h.timers.run_due()
    incident_id = (await h.incident()).id
    first = await h.engine.acknowledge(incident_id, "kim", "api")
    second = await h.engine.acknowledge(incident_id, "lee", "sms")
    assert first.changed and not second.changed and second.refusal is None
    assert second.incident is not None and second.incident.acknowledged_by == "kim"


async def test_refusals_unknown_incident_and_not_a_responder(h: Harness) -> None:
    await h.fire()
    incident_id = (await h.incident()).id
    assert (await h.engine.acknowledge("nope", "kim", "api")).refusal is Refusal.UNKNOWN_INCIDENT
    outcome = await h.engine.acknowledge(incident_id, "mallory", "api")
    assert outcome.refusal is Refusal.NOT_A_RESPONDER and not outcome.changed
    assert (await h.incident()).state is State.OPEN
    unack = await h.engine.unacknowledge(incident_id, "kim", "api")
    assert unack.refusal is Refusal.NOT_APPLICABLE


async def test_resolving_before_step_2_cancels_it_and_tells_the_paged_channels(h: Harness) -> None:
    await h.fire()
    await h.timers.run_due()
    await h.sent()
    await h.resolve()
    incident = await h.incident()
    assert incident.state is State.RESOLVED
    told = await h.sent()
    assert channels(told) == [("pager-slack", "announcement", "resolved")]
    assert told[0].status == "resolved"
    h.clock.advance(600)
    assert await h.timers.run_due() == 0
    ack = await h.engine.acknowledge(incident.id, "kim", "api")
    assert ack.refusal is Refusal.RESOLVED


async def test_a_group_firing_again_after_resolving_opens_a_new_incident(h: Harness) -> None:
    await h.fire()
    await h.resolve()
    await h.fire()
    incidents = await h.store.list_incidents()
    assert [i.state for i in incidents] == [State.OPEN, State.RESOLVED]
    assert incidents[0].ack_code != incidents[1].ack_code or incidents[1].state is State.RESOLVED


async def test_a_colliding_ack_code_is_drawn_again(h: Harness) -> None:
    await h.fire()
    await h.engine.on_payload(make_payload(group_key="g2", alertname="Other"), h.clock())
    codes = sorted(i.ack_code for i in await h.store.list_incidents(open_only=True))
    assert codes == ["1111", "2222"]  # the second "1111" was taken: drawn again


async def test_ack_timeout_with_the_group_still_firing_reopens_and_pages_step_1(h: Harness) -> None:
    await h.fire()
    await h.timers.run_due()
    await h.sent()
    await h.engine.acknowledge((await h.incident()).id, "kim", "slack")
    await h.sent()
    h.clock.advance(30 * 60)
    assert await h.timers.run_due() == 2  # the timeout, then step 1 due at once
    told = await h.sent()
    assert channels(told) == [
        ("pager-slack", "announcement", "reopened"),
        ("pager-slack", "page", None),
    ]
    incident = await h.incident()
    assert incident.state is State.OPEN and incident.acknowledged_by is None


async def test_silence_pauses_the_steps_until_it_ends(h: Harness) -> None:
    await h.fire()
    await h.timers.run_due()
    await h.sent()
    outcome = await h.engine.silence((await h.incident()).id, "lee", 3600, "api")
    assert outcome.changed and outcome.incident is not None
    assert outcome.incident.timeline[-1].detail.startswith("by lee via api until")
    told = await h.sent()
    assert channels(told) == [("pager-slack", "announcement", "silenced")]
    assert told[0].incident is not None and told[0].incident.by == "lee"
    h.clock.advance(600)
    assert await h.timers.run_due() == 0  # step 2 was due, but it is silenced
    h.clock.advance(3000)
    assert await h.timers.run_due() == 1  # the silence ended: step 2 is scheduled anew
    h.clock.advance(300)
    assert await h.timers.run_due() == 1
    assert channels(await h.sent()) == [("pager-slack", "page", None), ("pager-sms", "page", None)]


async def test_unacknowledging_escalates_again_from_step_1(h: Harness) -> None:
    await h.fire()
    await h.timers.run_due()
    incident_id = (await h.incident()).id
    await h.engine.acknowledge(incident_id, "kim", "api")
    await h.sent()
    outcome = await h.engine.unacknowledge(incident_id, "kim", "api")
    assert outcome.changed
    await h.timers.run_due()
    assert channels(await h.sent()) == [
        ("pager-slack", "announcement", "unacknowledged"),
        ("pager-slack", "page", None),
    ]


async def test_repeat_passes_count_in_the_page_context() -> None:
    h = Harness(repeat=1)
    await h.fire()
    for _ in range(4):
        await h.timers.run_due()
        h.clock.advance(300)
    pages = [n for n in await h.sent() if n.channel == "pager-sms"]
    assert [(p.incident.pass_number, p.incident.passes) for p in pages if p.incident] == [
        (1, 2),
        (2, 2),
    ]


class RacingStore(MemoryStore):
    """Another replica acknowledges between our read and our write, once."""

    raced = False

    async def get_incident(self, incident_id: str) -> Incident | None:
        incident = await super().get_incident(incident_id)
        if incident is not None and not self.raced and incident.state is State.OPEN:
            self.raced = True
            policy = machine.Policy("oncall", (machine.PolicyStep(0, ("pager-slack",)),))
            other = machine.acknowledge(policy, incident, by="lee", path="sms", now=1.0)
            self._incidents[incident_id] = other.incident
        return incident


async def test_a_lost_compare_and_set_reloads_and_decides_again() -> None:
    h = Harness(store=RacingStore())
    await h.fire()
    incident_id = (await h.store.list_incidents())[0].id
    outcome = await h.engine.acknowledge(incident_id, "kim", "api")
    # Our write lost to lee's; reloaded, the incident is acknowledged: nothing to change.
    assert not outcome.changed and outcome.refusal is None
    assert outcome.incident is not None and outcome.incident.acknowledged_by == "lee"


async def test_a_refresh_keeps_the_latest_alerts_for_later_pages(h: Harness) -> None:
    await h.fire()
    await h.fire(n=2)
    await h.timers.run_due()
    pages = await h.sent()
    assert len(pages[0].alerts) == 2
    incident = await h.incident()
    assert incident.epoch == 2  # the refresh did not move the epoch (opened 1, step 2)
    assert replace(incident, group_state="") != incident


async def test_a_step_outside_its_time_window_waits_for_the_opening() -> None:
    opening = 1_800_000_000.0 + 3600
    asked: list[tuple[str, ...]] = []

    def window(names: Sequence[str], now: float) -> float | None:
        asked.append(tuple(names))
        return now if now >= opening else opening

    h = Harness(step_window=window)
    h.limit_step_2("market-hours")
    await h.fire()
    await h.timers.run_due()
    await h.sent()
    h.clock.advance(300)  # step 2 is due, but its window opens at `opening`
    assert await h.timers.run_due() == 1
    assert await h.sent() == []
    assert asked == [("market-hours",)]
    assert await h.store.next_timer_at() == opening
    h.clock.now = opening
    assert await h.timers.run_due() == 1
    assert channels(await h.sent()) == [("pager-slack", "page", None), ("pager-sms", "page", None)]


async def test_an_acknowledgement_cancels_a_step_waiting_for_its_window() -> None:
    h = Harness(step_window=lambda names, now: now + 3600)
    h.limit_step_2("night")
    await h.fire()
    await h.timers.run_due()
    h.clock.advance(300)
    await h.timers.run_due()  # step 2 moved to its window
    await h.engine.acknowledge((await h.incident()).id, "kim", "api")
    assert await h.store.next_timer_at() == h.clock() + 30 * 60  # only the ack timeout is left
