"""The notifications this process enqueued lately, so claiming them need not parse JSON again.

Parsing a stored notification is the largest cost of a claim (it grows with the alerts
it holds). Most jobs are claimed by the process that enqueued them, moments
later, so the SQLite and Redis stores remember the ``Notification`` objects they just
stored and hand the same (immutable) object back on claim. A job id always names the
same content, so an entry is never stale; it only saves work. The stored JSON stays
the truth: a job claimed after a restart, a retry, or a job another replica enqueued
is parsed as usual.

Bounded: the oldest entries make room for new ones, and a claim takes its entry out.
"""

from __future__ import annotations

from collections.abc import Iterable

from notifier.notification import Notification


class RecentNotifications:
    """A bounded map job id -> ``Notification``, oldest entries dropped first."""

    def __init__(self, capacity: int = 2048) -> None:
        self._capacity = capacity
        self._entries: dict[str, Notification] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, notifications: Iterable[Notification]) -> None:
        for notification in notifications:
            self._entries[notification.job_id] = notification
        while len(self._entries) > self._capacity:
            del self._entries[next(iter(self._entries))]

    def take(self, job_id: str, payload: str) -> Notification:
        """The remembered notification (forgotten now), else ``payload`` parsed."""
        notification = self._entries.pop(job_id, None)
        return notification or Notification.model_validate_json(payload)
