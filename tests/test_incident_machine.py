"""The incident state machine: every transition, with the clock passed in."""

from __future__ import annotations

import pytest

from notifier.incidents.machine import (
    Announce,
    CancelTimers,
    Incident,
    Page,
    Policy,
    PolicyStep,
    StartTimer,
    State,
    Transition,
    ack_timed_out,
    acknowledge,
    open_incident,
    resolve,
    silence,
    silence_ended,
    step_due,
    unacknowledge,
)

POLICY = Policy(
    name="trading-critical",
    steps=(
        PolicyStep(0, ("alerts-slack",)),
        PolicyStep(300, ("oncall-sms",)),
        PolicyStep(900, ("oncall-sms-backup", "ops-email")),
    ),
    repeat=1,
    ack_timeout=1800,
)


def opened(now: float = 1000.0) -> Incident:
    return open_incident(
        POLICY, incident_id="inc1", route="critical", group_key="g", ack_code="4821", now=now
    ).incident


def run_steps(
    incident: Incident, count: int, now: float = 1000.0
) -> tuple[Incident, list[Transition]]:
    """Fire the next ``count`` step timers as they come due."""
    transitions = []
    for _ in range(count):
        timer = next_timer(transitions[-1] if transitions else None, incident, now)
        now = timer.at
        transition = step_due(
            POLICY, incident, epoch=timer.epoch, page_index=timer.page_index or 0, now=now
        )
        transitions.append(transition)
        incident = transition.incident
    return incident, transitions


def next_timer(last: Transition | None, incident: Incident, now: float) -> StartTimer:
    effects = (
        last.effects
        if last
        else open_incident(
            POLICY,
            incident_id=incident.id,
            route="critical",
            group_key="g",
            ack_code="4821",
            now=now,
        ).effects
    )
    return next(e for e in effects if isinstance(e, StartTimer))


def test_opening_starts_step_one_at_once() -> None:
    transition = open_incident(
        POLICY, incident_id="inc1", route="critical", group_key="g", ack_code="4821", now=1000.0
    )
    assert transition.incident.state is State.OPEN
    assert transition.effects == (StartTimer("step", 1000.0, 1, 0),)


def test_steps_page_in_order_each_after_the_one_before_and_repeat() -> None:
    incident, transitions = run_steps(opened(), 6)
    pages = [next(e for e in t.effects if isinstance(e, Page)) for t in transitions]
    assert [(p.page_index, p.step_number, p.channels) for p in pages] == [
        (0, 1, ("alerts-slack",)),
        (1, 2, ("oncall-sms",)),
        (2, 3, ("oncall-sms-backup", "ops-email")),
        (3, 1, ("alerts-slack",)),
        (4, 2, ("oncall-sms",)),
        (5, 3, ("oncall-sms-backup", "ops-email")),
    ]
    timers = [next((e for e in t.effects if isinstance(e, StartTimer)), None) for t in transitions]
    # Each step after its predecessor; the repeat pass waits the last step's 900 s since
    # step 1's own ``after`` is 0s; after the last page nothing more is scheduled.
    assert [t.at if t else None for t in timers] == [1300.0, 2200.0, 3100.0, 3400.0, 4300.0, None]
    assert incident.reached_last_step
    assert incident.paged_channels == (
        "alerts-slack",
        "oncall-sms",
        "oncall-sms-backup",
        "ops-email",
    )


def test_a_stale_step_timer_changes_nothing() -> None:
    incident, _ = run_steps(opened(), 1)
    for epoch, index in [(1, 0), (incident.epoch, 0), (incident.epoch - 1, 1)]:
        assert not step_due(POLICY, incident, epoch=epoch, page_index=index, now=2000.0).changed


def test_acknowledge_cancels_the_steps_and_tells_the_paged_channels() -> None:
    incident, _ = run_steps(opened(), 2)
    transition = acknowledge(POLICY, incident, by="kim", path="slack", now=1400.0)
    after = transition.incident
    assert after.state is State.ACKNOWLEDGED
    assert (after.acknowledged_by, after.acknowledged_at) == ("kim", 1400.0)
    assert transition.effects == (
        CancelTimers(),
        Announce("acknowledged", ("alerts-slack", "oncall-sms"), "kim"),
        StartTimer("ack_timeout", 3200.0, after.epoch),
    )
    # The step timer started before the acknowledgement is stale now.
    assert not step_due(POLICY, after, epoch=incident.epoch, page_index=2, now=2200.0).changed


def test_two_acknowledgements_are_one() -> None:
    incident, _ = run_steps(opened(), 1)
    first = acknowledge(POLICY, incident, by="kim", path="slack", now=1100.0).incident
    second = acknowledge(POLICY, first, by="lee", path="sms", now=1100.0)
    assert not second.changed
    assert second.incident.acknowledged_by == "kim"


def test_unacknowledge_escalates_again_from_step_one() -> None:
    incident, _ = run_steps(opened(), 2)
    acked = acknowledge(POLICY, incident, by="kim", path="api", now=1400.0).incident
    transition = unacknowledge(POLICY, acked, by="kim", now=1500.0)
    assert transition.incident.state is State.OPEN
    assert transition.incident.pages_sent == 0
    assert transition.effects[-1] == StartTimer("step", 1500.0, transition.incident.epoch, 0)
    assert not unacknowledge(POLICY, incident, by="kim", now=1500.0).changed


def test_ack_timeout_reopens_an_incident_that_still_fires() -> None:
    incident, _ = run_steps(opened(), 1)
    acked = acknowledge(POLICY, incident, by="kim", path="sms", now=1100.0)
    timer = next(e for e in acked.effects if isinstance(e, StartTimer))
    transition = ack_timed_out(POLICY, acked.incident, epoch=timer.epoch, now=timer.at)
    assert transition.incident.state is State.OPEN
    assert transition.incident.acknowledged_by is None
    assert Announce("reopened", ("alerts-slack",), None) in transition.effects
    assert transition.effects[-1] == StartTimer("step", 2900.0, transition.incident.epoch, 0)


def test_silence_pauses_and_resumes_with_the_next_step() -> None:
    incident, _ = run_steps(opened(), 2)
    silenced = silence(incident, by="kim", until=5000.0, now=1400.0)
    assert silenced.incident.state is State.SILENCED
    assert silenced.effects[0] == CancelTimers()
    timer = silenced.effects[-1]
    assert timer == StartTimer("silence_end", 5000.0, silenced.incident.epoch)
    resumed = silence_ended(POLICY, silenced.incident, epoch=silenced.incident.epoch, now=5000.0)
    assert resumed.incident.state is State.OPEN
    # Step 3 was next; it waits its own ``after`` from the end of the silence.
    assert resumed.effects[-1] == StartTimer("step", 5900.0, resumed.incident.epoch, 2)


def test_a_silence_ended_by_an_acknowledgement_does_not_resume() -> None:
    incident, _ = run_steps(opened(), 1)
    silenced = silence(incident, by="kim", until=5000.0, now=1100.0).incident
    acked = acknowledge(POLICY, silenced, by="kim", path="api", now=1200.0).incident
    assert acked.silenced_until is None
    assert not silence_ended(POLICY, acked, epoch=silenced.epoch, now=5000.0).changed


@pytest.mark.parametrize("until", [1000.0, 900.0])
def test_a_silence_that_is_already_over_changes_nothing(until: float) -> None:
    assert not silence(opened(), by="kim", until=until, now=1000.0).changed


def test_resolve_stops_and_tells_the_paged_channels_once() -> None:
    incident, _ = run_steps(opened(), 2)
    transition = resolve(incident, now=1500.0)
    assert transition.incident.state is State.RESOLVED
    assert transition.effects == (
        CancelTimers(),
        Announce("resolved", ("alerts-slack", "oncall-sms")),
    )
    assert not resolve(transition.incident, now=1600.0).changed
    assert not acknowledge(POLICY, transition.incident, by="kim", path="api", now=1600.0).changed


def test_resolving_before_any_page_announces_nothing() -> None:
    transition = resolve(opened(), now=1000.0)
    assert transition.effects == (CancelTimers(),)


def test_every_change_bumps_the_epoch_and_is_on_the_timeline() -> None:
    incident, _ = run_steps(opened(), 1)
    acked = acknowledge(POLICY, incident, by="kim", path="slack", now=1100.0).incident
    resolved = resolve(acked, now=1200.0).incident
    assert [incident.epoch, acked.epoch, resolved.epoch] == [2, 3, 4]
    assert [e.event for e in resolved.timeline] == ["opened", "step", "acknowledged", "resolved"]
    assert resolved.timeline[2].detail == "by kim via slack"
