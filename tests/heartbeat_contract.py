"""The heartbeat part of the store contract (``HeartbeatStates``), for every store.

``tests/test_store_contract.py`` runs it against memory, SQLite and Redis. It pins down:
a state is written only when the stored version is the expected one (None: nothing
stored), and then together with its notifications, which are due at ``now``; a write
that loses the race changes nothing and enqueues nothing; a job id already stored is
not stored twice; a state reads back exactly (floats and None included).
"""

from __future__ import annotations

from notifier.heartbeats.state import (
    Heartbeat,
    HeartbeatState,
    armed,
    missed,
    missed_notifications,
    renewed,
)
from notifier.routing import Matcher
from notifier.store.base import Store

WATCHDOG = Heartbeat(
    "watchdog ☎", (Matcher.parse('alertname="Watchdog"'),), 600.0, ("ops-slack", "pager")
)


def _missed(state: HeartbeatState, now: float) -> HeartbeatState:
    marked = missed(state, now)
    assert marked is not None
    return marked


class HeartbeatContract:
    async def test_a_heartbeat_reads_back_as_written(self, store: Store) -> None:
        assert await store.get_heartbeat(WATCHDOG.name) is None
        state = armed(WATCHDOG, 1000.125)
        assert await store.put_heartbeat(state, None, [], 1000.125)
        assert await store.get_heartbeat(WATCHDOG.name) == state
        later = renewed(state, WATCHDOG, 1000.1 + 1e-6)
        assert await store.put_heartbeat(later, state.version, [], 1000.2)
        assert await store.get_heartbeat(WATCHDOG.name) == later
        assert await store.get_heartbeat("another") is None

    async def test_a_stale_version_writes_and_enqueues_nothing(self, store: Store) -> None:
        state = armed(WATCHDOG, 1000.0)
        assert await store.put_heartbeat(state, None, [], 1000.0)
        assert not await store.put_heartbeat(state, None, [], 1000.0)  # already stored
        gone_silent = _missed(state, 1700.0)
        notifications = missed_notifications(WATCHDOG, gone_silent, 1700.0)
        assert not await store.put_heartbeat(gone_silent, state.version + 5, notifications, 1700)
        assert await store.get_heartbeat(WATCHDOG.name) == state
        assert await store.claim(10, 30.0, 2000.0) == []

    async def test_the_winning_write_enqueues_its_notifications_once(self, store: Store) -> None:
        state = armed(WATCHDOG, 1000.0)
        await store.put_heartbeat(state, None, [], 1000.0)
        gone_silent = _missed(state, 1700.0)
        notifications = missed_notifications(WATCHDOG, gone_silent, 1700.0)
        # Two replicas handle the same timer: one write wins, one loses.
        assert await store.put_heartbeat(gone_silent, state.version, notifications, 1700.0)
        assert not await store.put_heartbeat(gone_silent, state.version, notifications, 1700.0)
        assert await store.next_due_at() == 1700.0
        claimed = await store.claim(10, 30.0, 1700.0)
        assert sorted(job.notification.channel for job in claimed) == ["ops-slack", "pager"]
        by_id = sorted(notifications, key=lambda n: n.job_id)
        assert sorted((job.notification for job in claimed), key=lambda n: n.job_id) == by_id
        assert all(job.attempts == 0 and job.enqueued_at == 1700.0 for job in claimed)

    async def test_a_job_id_already_stored_is_not_stored_again(self, store: Store) -> None:
        state = armed(WATCHDOG, 1000.0)
        await store.put_heartbeat(state, None, [], 1000.0)
        gone_silent = _missed(state, 1700.0)
        notifications = missed_notifications(WATCHDOG, gone_silent, 1700.0)
        assert await store.put_heartbeat(gone_silent, state.version, notifications, 1700.0)
        again = HeartbeatState(**{**_fields(gone_silent), "version": gone_silent.version + 1})
        assert await store.put_heartbeat(again, gone_silent.version, notifications, 1800.0)
        claimed = await store.claim(10, 30.0, 1800.0)
        assert len(claimed) == 2
        assert all(job.enqueued_at == 1700.0 for job in claimed)


def _fields(state: HeartbeatState) -> dict[str, object]:
    return {name: getattr(state, name) for name in HeartbeatState.__dataclass_fields__}
