"""The incident state machine (DESIGN §8): pure, the clock passed in.

An incident is one route's group that fires under an escalation policy. A transition
takes the incident and an event and returns the incident as it is afterwards with the
effects the engine must carry out: cancel the incident's timers, start new ones, page a
step's channels, announce a change to the channels already paged. It never does I/O.

Every change bumps ``epoch``. Timers carry the epoch they were started in, so a timer
that fires after the incident moved on (a step of a superseded pass, a silence that was
lifted) is stale and changes nothing; the store writes an incident with compare-and-set
on its epoch, so two acknowledgements racing on two replicas make one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal


class State(StrEnum):
    OPEN = "open"  # escalating: steps are being sent until someone acknowledges
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"
    RESOLVED = "resolved"


TimerKind = Literal["step", "ack_timeout", "silence_end"]
AnnouncementKind = Literal["acknowledged", "unacknowledged", "silenced", "reopened", "resolved"]
AckPath = Literal["slack", "sms", "api", "console"]


@dataclass(frozen=True, slots=True)
class PolicyStep:
    after: float  # seconds after the step before it (the first: after the opening)
    channels: tuple[str, ...]
    active_time_intervals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    steps: tuple[PolicyStep, ...]
    repeat: int = 0  # further passes over the steps while nobody acknowledges
    ack_timeout: float | None = None  # acknowledged but still firing this long: re-opened

    @property
    def total_steps(self) -> int:
        """Steps over every pass: what "step 4 of 6" counts against."""
        return len(self.steps) * (self.repeat + 1)

    def step(self, index: int) -> PolicyStep:
        """The policy step that the ``index``-th page (0-based, over every pass) sends."""
        return self.steps[index % len(self.steps)]

    def delay_before(self, index: int) -> float:
        """Seconds between page ``index - 1`` (or the opening) and page ``index``.

        A repeat pass begins with its first step's ``after``, or where that is 0s (page at
        once on opening) with the last step's, so a repeat does not follow the last page
        in the same instant.
        """
        step = self.step(index)
        if index >= len(self.steps) and index % len(self.steps) == 0 and step.after == 0:
            return self.steps[-1].after
        return step.after


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: float
    event: str  # opened, step, acknowledged, silenced, reopened, resolved, ...
    detail: str = ""  # who, through which path, which step and channels


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    route: str
    group_key: str
    policy: str
    ack_code: str
    opened_at: float
    state: State = State.OPEN
    epoch: int = 1
    pages_sent: int = 0  # pages sent in the current escalation (0-based index of the next)
    paged_channels: tuple[str, ...] = ()
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    silenced_until: float | None = None
    resolved_at: float | None = None
    reached_last_step: bool = False
    timeline: tuple[TimelineEntry, ...] = field(default=())
    # The group as last heard from Alertmanager (a ``Notification`` as JSON, kept by the
    # engine so a page sent later shows the alerts): carried along, never read here.
    group_state: str = ""

    @property
    def is_open(self) -> bool:
        return self.state is not State.RESOLVED


@dataclass(frozen=True, slots=True)
class StartTimer:
    kind: TimerKind
    at: float
    epoch: int
    page_index: int | None = None  # for ``step`` timers


@dataclass(frozen=True, slots=True)
class CancelTimers:
    """Cancel every timer of the incident (as a set); stale ones would be ignored anyway."""


@dataclass(frozen=True, slots=True)
class Page:
    page_index: int  # 0-based over every pass
    step_number: int  # 1-based within the policy
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Announce:
    kind: AnnouncementKind
    channels: tuple[str, ...]  # those already paged
    by: str | None = None


Effect = StartTimer | CancelTimers | Page | Announce


@dataclass(frozen=True, slots=True)
class Transition:
    incident: Incident
    effects: tuple[Effect, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.effects)


def open_incident(
    policy: Policy, *, incident_id: str, route: str, group_key: str, ack_code: str, now: float
) -> Transition:
    """A group under ``policy`` fires with no open incident: open one, start step 1's timer."""
    incident = Incident(
        id=incident_id,
        route=route,
        group_key=group_key,
        policy=policy.name,
        ack_code=ack_code,
        opened_at=now,
        timeline=(TimelineEntry(now, "opened", f"policy {policy.name}"),),
    )
    return Transition(incident, (_step_timer(policy, incident, 0, now),))


def step_due(
    policy: Policy, incident: Incident, *, epoch: int, page_index: int, now: float
) -> Transition:
    """A step timer fired: page its channels and start the next step's timer."""
    if (
        epoch != incident.epoch
        or incident.state is not State.OPEN
        or page_index != incident.pages_sent
    ):
        return Transition(incident)
    step = policy.step(page_index)
    step_number = page_index % len(policy.steps) + 1
    last = page_index + 1 >= policy.total_steps
    paged = incident.paged_channels + tuple(
        c for c in step.channels if c not in incident.paged_channels
    )
    entry = TimelineEntry(
        now, "step", f"step {step_number} of {len(policy.steps)}: {', '.join(step.channels)}"
    )
    changed = _changed(
        incident,
        entry,
        pages_sent=page_index + 1,
        paged_channels=paged,
        reached_last_step=incident.reached_last_step or last,
    )
    effects: list[Effect] = [Page(page_index, step_number, step.channels)]
    if not last:
        effects.append(_step_timer(policy, changed, page_index + 1, now))
    return Transition(changed, tuple(effects))


def acknowledge(
    policy: Policy, incident: Incident, *, by: str, path: AckPath, now: float
) -> Transition:
    """A responder acknowledged: stop escalating, tell every paged channel, and watch for
    ``ack_timeout``. Acknowledging an acknowledged or resolved incident changes nothing."""
    if incident.state not in (State.OPEN, State.SILENCED):
        return Transition(incident)
    changed = _changed(
        incident,
        TimelineEntry(now, "acknowledged", f"by {by} via {path}"),
        state=State.ACKNOWLEDGED,
        acknowledged_by=by,
        acknowledged_at=now,
        silenced_until=None,
    )
    effects: list[Effect] = [CancelTimers(), Announce("acknowledged", incident.paged_channels, by)]
    if policy.ack_timeout is not None:
        effects.append(StartTimer("ack_timeout", now + policy.ack_timeout, changed.epoch))
    return Transition(changed, tuple(effects))


def unacknowledge(policy: Policy, incident: Incident, *, by: str, now: float) -> Transition:
    """An acknowledgement taken back: escalate again from step 1."""
    if incident.state is not State.ACKNOWLEDGED:
        return Transition(incident)
    return _escalate_again(policy, incident, now, "unacknowledged", f"by {by}", by)


def silence(
    incident: Incident, *, by: str, until: float, now: float, path: AckPath | None = None
) -> Transition:
    """Pause the steps until ``until``; they resume then if the group still fires."""
    if incident.state not in (State.OPEN, State.ACKNOWLEDGED) or until <= now:
        return Transition(incident)
    changed = _changed(
        incident,
        TimelineEntry(now, "silenced", f"by {by}{_via(path)} until {until:.0f}"),
        state=State.SILENCED,
        silenced_until=until,
    )
    return Transition(
        changed,
        (
            CancelTimers(),
            Announce("silenced", incident.paged_channels, by),
            StartTimer("silence_end", until, changed.epoch),
        ),
    )


def silence_ended(policy: Policy, incident: Incident, *, epoch: int, now: float) -> Transition:
    """The silence ran out with the group still firing (a resolved incident has no timers
    left): resume with the step that was next."""
    if epoch != incident.epoch or incident.state is not State.SILENCED:
        return Transition(incident)
    changed = _changed(
        incident,
        TimelineEntry(now, "silence_ended"),
        state=State.OPEN,
        silenced_until=None,
    )
    if changed.pages_sent >= policy.total_steps:
        return Transition(changed, (CancelTimers(),))
    return Transition(
        changed, (CancelTimers(), _step_timer(policy, changed, changed.pages_sent, now))
    )


def ack_timed_out(policy: Policy, incident: Incident, *, epoch: int, now: float) -> Transition:
    """Acknowledged, yet the group still fires ``ack_timeout`` later: escalate again."""
    if epoch != incident.epoch or incident.state is not State.ACKNOWLEDGED:
        return Transition(incident)
    return _escalate_again(policy, incident, now, "reopened", "acknowledgement timed out", None)


def resolve(incident: Incident, *, now: float) -> Transition:
    """Alertmanager says the group fully resolved: stop, and tell the paged channels."""
    if incident.state is State.RESOLVED:
        return Transition(incident)
    changed = _changed(
        incident,
        TimelineEntry(now, "resolved"),
        state=State.RESOLVED,
        resolved_at=now,
    )
    effects: list[Effect] = [CancelTimers()]
    if incident.paged_channels:
        effects.append(Announce("resolved", incident.paged_channels))
    return Transition(changed, tuple(effects))


def _escalate_again(
    policy: Policy,
    incident: Incident,
    now: float,
    kind: Literal["unacknowledged", "reopened"],
    detail: str,
    by: str | None,
) -> Transition:
    changed = _changed(
        incident,
        TimelineEntry(now, kind, detail),
        state=State.OPEN,
        pages_sent=0,
        acknowledged_by=None,
        acknowledged_at=None,
    )
    return Transition(
        changed,
        (
            CancelTimers(),
            Announce(kind, incident.paged_channels, by),
            _step_timer(policy, changed, 0, now),
        ),
    )


def _via(path: AckPath | None) -> str:
    return "" if path is None else f" via {path}"


def _changed(incident: Incident, entry: TimelineEntry, **changes: Any) -> Incident:
    """``incident`` with ``changes``, at the next epoch, with ``entry`` on its timeline."""
    return replace(
        incident, epoch=incident.epoch + 1, timeline=(*incident.timeline, entry), **changes
    )


def _step_timer(policy: Policy, incident: Incident, page_index: int, now: float) -> StartTimer:
    return StartTimer("step", now + policy.delay_before(page_index), incident.epoch, page_index)
