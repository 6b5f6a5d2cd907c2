"""The incident engine (DESIGN §8): opens, escalates, acknowledges and resolves incidents.

It stores what the pure state machine (``machine``) decides: every change is one
compare-and-set on the incident's epoch (``Incidents.change_incident``) that also
cancels its timers, schedules the new ones and enqueues the pages and announcements.
A write that loses a race reloads the incident and decides again, so two replicas
firing one step, or two responders acknowledging at once, make one change.

Three callers:

- the receiver, after routing (``on_payload``): a route with ``escalation`` whose group
  fires opens an incident (or refreshes the group it shows); the group fully resolved
  for that route resolves it;
- the timer loop (``on_timer``): a step due, an acknowledgement timed out, a silence over;
- acknowledgers: the HTTP API and CLI here, the Slack buttons and SMS replies in their
  own adapters, all through ``acknowledge`` / ``unacknowledge`` / ``silence``, which
  answer an ``Outcome`` (the incident, whether it changed, or why not).

It never sends anything itself: notifications go through the queue like every other.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from notifier.config import LoadedConfig, Responder
from notifier.dedup import group_identity
from notifier.incidents import machine
from notifier.incidents.machine import (
    AckPath,
    Announce,
    CancelTimers,
    Incident,
    Page,
    Policy,
    PolicyStep,
    StartTimer,
    State,
    Transition,
)
from notifier.incidents.messages import effect_notifications, group_notification
from notifier.metrics import INCIDENT_STATES, Metrics
from notifier.notification import Notification
from notifier.payload import Alert, WebhookPayload
from notifier.routing import route_labels
from notifier.store.base import Store, StoreUnavailable, Timer, incident_timer_group

log = logging.getLogger(__name__)

TIMER_OWNER = "incident"
_CAS_TRIES = 20  # a change that loses this many races in a row is reported as unavailable
_CODE_TRIES = 50  # random ack codes tried against the open incidents' codes
_GAUGE_LIMIT = 100_000  # open incidents counted for the gauge
_NEVER_OPENS_RECHECK = 24 * 3600.0  # a step whose window never opens is looked at again daily


# Timers that end a wait (acknowledged, silenced), by kind: each is checked against the
# incident's epoch the same way, so a stale timer changes nothing.
class _WaitEnd(Protocol):
    def __call__(
        self, policy: Policy, incident: Incident, *, epoch: int, now: float
    ) -> Transition: ...


_WAIT_ENDS: dict[str, _WaitEnd] = {
    "ack_timeout": machine.ack_timed_out,
    "silence_end": machine.silence_ended,
}

# When a step limited to these ``active_time_intervals`` may be sent, at or after ``now``:
# ``now`` while one holds, the next opening otherwise, None if none opens (DESIGN §9).
StepWindow = Callable[[Sequence[str], float], float | None]


def always_open(_names: Sequence[str], now: float) -> float | None:
    return now


class Refusal(StrEnum):
    """Why an acknowledgement, un-acknowledgement or silence changed nothing."""

    UNKNOWN_INCIDENT = "unknown incident"
    NOT_A_RESPONDER = "not a responder"
    RESOLVED = "the incident is resolved"
    NOT_APPLICABLE = "nothing to change in this state"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an acknowledger's request did: ``changed``, or ``refusal`` says why not.

    ``changed`` False with no refusal is a repeat (already acknowledged): not an error.
    """

    incident: Incident | None
    changed: bool
    refusal: Refusal | None = None


def policy_of(loaded: LoadedConfig, name: str) -> Policy | None:
    """The machine's view of escalation policy ``name``, or None when the config has none."""
    config = loaded.config.escalation_policies.get(name)
    if config is None:
        return None
    return Policy(
        name=name,
        steps=tuple(
            PolicyStep(
                after=s.after.total_seconds(),
                channels=tuple(s.channels),
                active_time_intervals=tuple(s.active_time_intervals),
            )
            for s in config.steps
        ),
        repeat=config.repeat,
        ack_timeout=None if config.ack_timeout is None else config.ack_timeout.total_seconds(),
    )


def new_incident_id() -> str:
    """48 random bits in hex: short enough to type in ``notifier incidents ack``."""
    return secrets.token_hex(6)


def new_ack_code() -> str:
    """Four random digits, what a responder replies by SMS ("ACK 4821")."""
    return f"{secrets.randbelow(10_000):04d}"


class IncidentEngine:
    def __init__(
        self,
        store: Store,
        config: Callable[[], LoadedConfig],
        metrics: Metrics,
        *,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        new_code: Callable[[], str] = new_ack_code,
        new_incident_id: Callable[[], str] = new_incident_id,
        on_enqueued: Callable[[], None] = lambda: None,
        on_scheduled: Callable[[], None] = lambda: None,
        step_window: StepWindow = always_open,
    ) -> None:
        """``config`` returns the config in force (reloads swap it); ``on_enqueued`` wakes
        the dispatcher, ``on_scheduled`` the timer loop."""
        self._store = store
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._new_id = new_id
        self._new_code = new_code
        self._new_incident_id = new_incident_id
        self._on_enqueued = on_enqueued
        self._on_scheduled = on_scheduled
        self._step_window = step_window

    # -- responders ---------------------------------------------------------------------

    def responder(self, name: str) -> Responder | None:
        return next((r for r in self._config().config.responders if r.name == name), None)

    def responder_by_phone(self, phone: str) -> Responder | None:
        return next((r for r in self._config().config.responders if r.phone == phone), None)

    def responder_by_slack_user(self, user_id: str) -> Responder | None:
        responders = self._config().config.responders
        return next((r for r in responders if r.slack_user_id == user_id), None)

    # -- acknowledgers ------------------------------------------------------------------

    async def acknowledge(self, incident_id: str, by: str, path: AckPath) -> Outcome:
        """``by`` (a responder's name) acknowledges through ``path``."""
        now = self._clock()
        outcome = await self._act(
            incident_id,
            by,
            lambda policy, incident: machine.acknowledge(
                policy, incident, by=by, path=path, now=now
            ),
            now,
        )
        if outcome.changed and outcome.incident is not None:
            self._metrics.incident_acknowledgements.labels(path).inc()
            self._metrics.incident_time_to_ack.labels(outcome.incident.policy).observe(
                max(0.0, now - outcome.incident.opened_at)
            )
        return outcome

    async def unacknowledge(self, incident_id: str, by: str, path: AckPath) -> Outcome:
        """Take an acknowledgement back: escalation starts again at step 1."""
        now = self._clock()
        return await self._act(
            incident_id,
            by,
            lambda policy, incident: machine.unacknowledge(policy, incident, by=by, now=now),
            now,
        )

    async def silence(self, incident_id: str, by: str, duration: float, path: AckPath) -> Outcome:
        """Pause the steps for ``duration`` seconds; they resume if the group still fires."""
        now = self._clock()
        return await self._act(
            incident_id,
            by,
            lambda _policy, incident: machine.silence(
                incident, by=by, until=now + duration, now=now, path=path
            ),
            now,
        )

    async def incident_by_code(self, ack_code: str) -> Incident | None:
        """The open incident an SMS reply's code names."""
        return await self._store.open_incident_by_code(ack_code)

    async def get(self, incident_id: str) -> Incident | None:
        return await self._store.get_incident(incident_id)

    async def incidents(self, *, open_only: bool = False, limit: int = 100) -> list[Incident]:
        return await self._store.list_incidents(open_only=open_only, limit=limit)

    async def refresh_gauges(self) -> None:
        """Open incidents by state, from the store (every replica's), for a scrape."""
        counts = dict.fromkeys(INCIDENT_STATES, 0)
        for incident in await self._store.list_incidents(open_only=True, limit=_GAUGE_LIMIT):
            counts[incident.state.value] = counts.get(incident.state.value, 0) + 1
        for state, count in counts.items():
            self._metrics.incidents_open.labels(state).set(count)

    def policy(self, incident: Incident) -> Policy:
        """The incident's policy as configured now; one that a reload removed stands in as a
        policy of one empty step (nothing more is paged, acknowledgements still work)."""
        found = policy_of(self._config(), incident.policy)
        return found or Policy(incident.policy, (PolicyStep(0.0, ()),))

    async def _act(
        self,
        incident_id: str,
        by: str,
        decide: Callable[[Policy, Incident], Transition],
        now: float,
    ) -> Outcome:
        if self.responder(by) is None:
            return Outcome(
                await self._store.get_incident(incident_id), False, Refusal.NOT_A_RESPONDER
            )
        outcome = await self._change(incident_id, decide, now)
        if outcome.incident is None:
            return Outcome(None, False, Refusal.UNKNOWN_INCIDENT)
        if not outcome.changed:
            if outcome.incident.state is State.RESOLVED:
                return Outcome(outcome.incident, False, Refusal.RESOLVED)
            if outcome.incident.state is not State.ACKNOWLEDGED:
                return Outcome(outcome.incident, False, Refusal.NOT_APPLICABLE)
        return outcome

    # -- the receiver -------------------------------------------------------------------

    async def on_payload(self, payload: WebhookPayload, now: float) -> None:
        """Open, refresh or resolve the incidents of ``payload``'s group, one per escalating
        route its alerts reach. Raises ``StoreUnavailable`` (the receiver answers 503)."""
        loaded = self._config()
        escalating = {r.name: r.escalation for r in loaded.config.routes if r.escalation}
        if not escalating:
            return
        routed: dict[str, list[Alert]] = {}
        for alert in payload.alerts:
            decision = route_labels(alert.labels, loaded.routes, loaded.config.default_channels)
            for route in decision.routes:
                if route in escalating:
                    routed.setdefault(route, []).append(alert)
        group = group_identity(payload)
        for route, alerts in routed.items():
            snapshot = Notification.for_channel(
                payload,
                tuple(alerts),
                job_id="",
                channel="",
                route=route,
                received_at=now,
                group_key=payload.group_key or group,
            )
            if snapshot.status == "firing":
                await self._fires(route, escalating[route], group, snapshot, now)
            else:
                await self._resolves(route, group, snapshot, now)

    async def _fires(
        self, route: str, policy_name: str, group: str, snapshot: Notification, now: float
    ) -> None:
        policy = policy_of(self._config(), policy_name)
        if policy is None:
            return  # checked at load; a reload in between is the only way here
        state = snapshot.model_dump_json()
        for _ in range(_CODE_TRIES):
            existing = await self._store.open_incident_for(route, group)
            if existing is not None:
                await self._refresh(existing, snapshot, state, now)
                return
            transition = machine.open_incident(
                policy,
                incident_id=self._new_incident_id(),
                route=route,
                group_key=group,
                ack_code=self._new_code(),
                now=now,
            )
            incident = _with_state(transition.incident, state)
            stored = await self._store.open_incident(
                incident, self._timers(incident, transition.effects)
            )
            if stored is not None:
                if stored.id == incident.id:
                    log.info(
                        "incident opened",
                        extra={"incident": incident.id, "route": route, "policy": policy.name},
                    )
                    self._on_scheduled()
                else:
                    await self._refresh(stored, snapshot, state, now)
                return
        raise StoreUnavailable("no free acknowledgement code among the open incidents")

    async def _refresh(
        self, incident: Incident, snapshot: Notification, state: str, now: float
    ) -> None:
        """Keep the group's latest alerts on the incident, so later pages show them.

        Written at the same epoch (a refresh is no state change, the timers stay valid); a
        step written at the same moment may put back the previous alerts until the next
        payload: what a page shows, never what it decides.
        """
        for _ in range(_CAS_TRIES):
            if incident.group_state and _same_alerts(group_notification(incident), snapshot):
                return
            refreshed = _with_state(incident, state)
            if await self._store.change_incident(
                refreshed, incident.epoch, cancel_timers=False, timers=(), notifications=(), now=now
            ):
                return
            reloaded = await self._store.get_incident(incident.id)
            if reloaded is None or not reloaded.is_open:
                return
            incident = reloaded

    async def _resolves(self, route: str, group: str, snapshot: Notification, now: float) -> None:
        incident = await self._store.open_incident_for(route, group)
        if incident is None:
            return
        state = snapshot.model_dump_json()
        outcome = await self._change(
            incident.id,
            lambda _policy, current: _resolve_with(current, state, now),
            now,
        )
        if outcome.changed:
            log.info("incident resolved", extra={"incident": incident.id, "route": route})

    # -- the timer loop -----------------------------------------------------------------

    async def on_timer(self, timer: Timer) -> None:
        """A step, acknowledgement timeout or silence end of an incident fell due."""
        incident_id = str(timer.data.get("incident"))
        epoch = int(timer.data.get("epoch") or 0)
        now = self._clock()
        what = timer.kind.partition(".")[2]
        if what == "step":
            index = int(timer.data.get("page_index") or 0)
            if await self._waits_for_its_window(timer, incident_id, epoch, index, now):
                return
            outcome = await self._change(
                incident_id,
                lambda policy, incident: machine.step_due(
                    policy, incident, epoch=epoch, page_index=index, now=now
                ),
                now,
            )
            if outcome.changed and outcome.incident is not None:
                incident, policy = outcome.incident, self.policy(outcome.incident)
                step = str(index % max(1, len(policy.steps)) + 1)
                self._metrics.escalation_steps.labels(incident.policy, step).inc()
                if index + 1 >= policy.total_steps:  # the page just sent was the last
                    self._metrics.incidents_reached_last_step.labels(incident.policy).inc()
        elif (ends := _WAIT_ENDS.get(what)) is not None:
            await self._change(
                incident_id,
                lambda policy, incident: ends(policy, incident, epoch=epoch, now=now),
                now,
            )
        else:
            log.warning("unknown incident timer %s", timer.kind)

    async def _waits_for_its_window(
        self, timer: Timer, incident_id: str, epoch: int, index: int, now: float
    ) -> bool:
        """A due step outside its ``active_time_intervals`` is moved to its window's opening
        (the same timer, so an acknowledgement or resolution still cancels it)."""
        incident = await self._store.get_incident(incident_id)
        if incident is None or incident.state is not State.OPEN or incident.epoch != epoch:
            return False  # the machine ignores it: nothing to wait for
        policy = self.policy(incident)
        names = policy.step(index).active_time_intervals
        if not names:
            return False
        opens = self._step_window(names, now)
        if opens is not None and opens <= now:
            return False
        due_at = now + _NEVER_OPENS_RECHECK if opens is None else opens
        await self._store.schedule_timers([replace(timer, id=self._new_id(), due_at=due_at)])
        log.info(
            "escalation step waits for its time window",
            extra={"incident": incident_id, "step": index % len(policy.steps) + 1, "until": due_at},
        )
        return True

    # -- writing a change ---------------------------------------------------------------

    async def _change(
        self, incident_id: str, decide: Callable[[Policy, Incident], Transition], now: float
    ) -> Outcome:
        """Decide on the stored incident and write the result with compare-and-set; on a
        lost race, reload and decide again."""
        for _ in range(_CAS_TRIES):
            incident = await self._store.get_incident(incident_id)
            if incident is None:
                return Outcome(None, False)
            policy = self.policy(incident)
            transition = decide(policy, incident)
            if not transition.changed:
                return Outcome(incident, False)
            changed = transition.incident
            notifications = self._notifications(changed, policy, transition.effects, now)
            written = await self._store.change_incident(
                changed,
                incident.epoch,
                cancel_timers=any(isinstance(e, CancelTimers) for e in transition.effects),
                timers=self._timers(changed, transition.effects),
                notifications=notifications,
                now=now,
            )
            if written:
                if notifications:
                    self._on_enqueued()
                if any(isinstance(e, StartTimer) for e in transition.effects):
                    self._on_scheduled()
                return Outcome(changed, True)
        raise StoreUnavailable(f"incident {incident_id} kept changing under this write")

    def _notifications(
        self,
        incident: Incident,
        policy: Policy,
        effects: Sequence[machine.Effect],
        now: float,
    ) -> list[Notification]:
        if not incident.group_state:
            return []
        loaded = self._config()
        notifications: list[Notification] = []
        for effect in effects:
            if isinstance(effect, Page | Announce):
                notifications.extend(
                    effect_notifications(
                        incident,
                        policy,
                        effect,
                        known_channels=loaded.config.channels.keys(),
                        public_url=loaded.config.server.public_url,
                        new_id=self._new_id,
                        now=now,
                    )
                )
        return notifications

    def _timers(self, incident: Incident, effects: Sequence[machine.Effect]) -> list[Timer]:
        return [
            Timer(
                id=self._new_id(),
                key=f"incident:{incident.id}:{effect.kind}",
                group=incident_timer_group(incident.id),
                kind=f"{TIMER_OWNER}.{effect.kind}",
                due_at=effect.at,
                data={
                    "incident": incident.id,
                    "epoch": effect.epoch,
                    "page_index": effect.page_index,
                },
            )
            for effect in effects
            if isinstance(effect, StartTimer)
        ]


def _with_state(incident: Incident, state: str) -> Incident:
    return replace(incident, group_state=state)


def _resolve_with(incident: Incident, state: str, now: float) -> Transition:
    """Resolve, telling the paged channels with the resolved alerts."""
    return machine.resolve(_with_state(incident, state), now=now)


def _same_alerts(old: Notification, new: Notification) -> bool:
    return [(a.fingerprint, a.status) for a in old.alerts] == [
        (a.fingerprint, a.status) for a in new.alerts
    ]
