"""Heartbeats at work (DESIGN §11): renewals on ingest, the missed-timer handler, arming at start.

Each heartbeat has a state record in the store (``notifier.heartbeats.state``) and a
timer keyed ``heartbeat:<name>`` due when it would be missed. The state is the truth;
the timer only wakes a notifier to look at it:

- ``take`` splits the alerts a heartbeat's matchers take from a payload (they are never
  routed) and renews those heartbeats: the state moves on (with compare-and-set on its
  version, and with the "back" notifications when it was missed), then the timer moves.
- ``on_timer`` marks a due heartbeat missed, in one write with its notifications. A
  timer that finds the heartbeat renewed meanwhile arms it again from the state, so a
  crash between a state write and its timer write leaves nothing unwatched for long.
- ``arm`` (at start and after a reload) gives a heartbeat no notifier watched yet a
  state, and every heartbeat that is not missed a timer at its state's ``due_at``: so a
  notifier that never hears the Watchdog notices too.

With several replicas, or a timer handled twice, a lost compare-and-set re-reads the
state and decides again: each miss and each return is told once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from notifier.heartbeats.state import (
    Heartbeat,
    HeartbeatState,
    armed,
    matching,
    missed,
    missed_notifications,
    recovered_notifications,
    renewed,
)
from notifier.payload import WebhookPayload
from notifier.store.base import Store, Timer

log = logging.getLogger(__name__)

TIMER_KIND = "heartbeat"  # the timer loop's owner of these timers, and their kind
# Compare-and-set rounds before giving up on one change; each lost round means another
# writer changed the state just now, so a handful is plenty.
_ATTEMPTS = 8


def timer_key(name: str) -> str:
    return f"heartbeat:{name}"


@dataclass(frozen=True, slots=True)
class Taken:
    """A payload with the heartbeats' alerts taken out: the rest (None when nothing is
    left to route) and the heartbeats the firing ones renew."""

    rest: WebhookPayload | None
    renewals: tuple[Heartbeat, ...]


class HeartbeatWatch:
    """The configured heartbeats against the store; ``on_enqueued`` wakes the dispatcher."""

    def __init__(
        self,
        store: Store,
        heartbeats: Sequence[Heartbeat],
        *,
        clock: Callable[[], float] = time.time,
        on_enqueued: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._on_enqueued = on_enqueued
        self.heartbeats: tuple[Heartbeat, ...] = tuple(heartbeats)

    def replace_config(self, heartbeats: Sequence[Heartbeat]) -> None:
        self.heartbeats = tuple(heartbeats)

    def take(self, payload: WebhookPayload) -> Taken:
        """Take the alerts some heartbeat matches out of ``payload``."""
        if not self.heartbeats:
            return Taken(payload, ())
        rest = []
        renewals: dict[str, Heartbeat] = {}
        for alert in payload.alerts:
            found = matching(self.heartbeats, alert.labels)
            if not found:
                rest.append(alert)
            elif alert.status == "firing":
                renewals.update((heartbeat.name, heartbeat) for heartbeat in found)
        if len(rest) == len(payload.alerts):
            return Taken(payload, ())
        remaining = payload.model_copy(update={"alerts": rest}) if rest else None
        return Taken(remaining, tuple(renewals.values()))

    async def renew(self, heartbeats: Sequence[Heartbeat], now: float) -> None:
        """A matching alert arrived at ``now``; raises ``StoreUnavailable`` (the caller 503s)."""
        for heartbeat in heartbeats:
            await self._renew(heartbeat, now)

    async def _renew(self, heartbeat: Heartbeat, now: float) -> None:
        for _ in range(_ATTEMPTS):
            state = await self._store.get_heartbeat(heartbeat.name)
            base = armed(heartbeat, now) if state is None else state
            new = renewed(base, heartbeat, now)
            back = []
            if state is not None and state.missed_since is not None:
                back = recovered_notifications(heartbeat, state, now)
            expected = None if state is None else state.version
            if await self._store.put_heartbeat(new, expected, back, now):
                await self._arm_timer(new)
                if back:
                    log.warning("heartbeat %s is back", heartbeat.name)
                    self._on_enqueued()
                return
        log.warning("heartbeat %s: renewal kept losing to other writers", heartbeat.name)

    async def on_timer(self, timer: Timer) -> None:
        """The ``heartbeat`` timer handler: a silence reached its timeout, or a stale wake-up."""
        now = self._clock()
        heartbeat = self._configured(str(timer.data.get("name")))
        if heartbeat is None:
            return  # no longer configured: its timer ends here
        for _ in range(_ATTEMPTS):
            state = await self._store.get_heartbeat(heartbeat.name)
            if state is None:
                await self._arm(heartbeat, now)
                return
            if state.missed_since is not None:
                return  # told already; only a renewal changes it now
            marked = missed(state, now)
            if marked is None:
                await self._arm_timer(state)  # renewed since this timer was set
                return
            notifications = missed_notifications(heartbeat, marked, now)
            if await self._store.put_heartbeat(marked, state.version, notifications, now):
                log.warning(
                    "heartbeat %s missed: nothing matched it for %gs",
                    heartbeat.name,
                    heartbeat.timeout,
                )
                self._on_enqueued()
                return
        log.warning("heartbeat %s: marking it missed kept losing to other writers", heartbeat.name)

    async def arm(self, now: float) -> None:
        """Every configured heartbeat gets a state if it has none, and a timer unless missed."""
        for heartbeat in self.heartbeats:
            await self._arm(heartbeat, now)

    async def states(self) -> list[tuple[Heartbeat, HeartbeatState | None]]:
        """Each configured heartbeat with its stored state (None: not armed yet)."""
        return [
            (heartbeat, await self._store.get_heartbeat(heartbeat.name))
            for heartbeat in self.heartbeats
        ]

    async def _arm(self, heartbeat: Heartbeat, now: float) -> None:
        state = await self._store.get_heartbeat(heartbeat.name)
        if state is None:
            fresh = armed(heartbeat, now)
            # Losing means another replica armed it just now: take its state.
            won = await self._store.put_heartbeat(fresh, None, [], now)
            state = fresh if won else await self._store.get_heartbeat(heartbeat.name)
        if state is not None and state.missed_since is None:
            await self._arm_timer(state)

    async def _arm_timer(self, state: HeartbeatState) -> None:
        key = timer_key(state.name)
        timer = Timer(
            id=os.urandom(16).hex(),
            key=key,
            group=key,
            kind=TIMER_KIND,
            due_at=state.due_at,
            data={"name": state.name},
        )
        await self._store.schedule_timers([timer])

    def _configured(self, name: str) -> Heartbeat | None:
        return next((h for h in self.heartbeats if h.name == name), None)
