"""Deferred notifications and the notification log (DESIGN §9): what a store keeps, and why.

A route muted with ``when_muted: defer`` plans its jobs with ``not_before`` (the route's
next opening). The notification log must then answer two questions at once: what the
channel *will have been told* once the waiting job is sent (so that a payload arriving
as the window opens, while the deferred job is being sent, is not sent again), and what
it *was actually told* (so that the latest state is judged against it). So:

- The entry is written when the deferred job is enqueued, as for any job, dated when it
  will be sent (``PlannedJob.entry``); beside it the store keeps a ``Deferral``: the
  waiting job's id and the entry as it was before (``told``, with its expiry).
- While that job still waits (queued, never attempted, under no live lease), the next
  enqueue for the same (channel, group), muted or not, is judged against ``told``
  instead of the entry, and the waiting job is removed: the latest state replaces it
  (one job per channel and group, the latest state wins). When the latest state needs
  no notification (the group resolved and the channel never heard it fire, or it did
  and ``send_resolved`` is off with nothing new), nothing is sent and the entry goes
  back to ``told`` (or, with ``send_resolved`` off, becomes the "all resolved" entry, as
  for any job).
- Once the deferred job has been claimed, the deferral is stale and ignored: the entry
  then says what the channel was told, as it does for every other job.

A job that was attempted is never removed (it may have reached some SMS recipients); a
job whose lease ran out without an attempt being recorded may be replaced, since its
worker is gone or late, and delivery is at-least-once anyway.

Pure: every store (memory, SQLite, and the Redis enqueue script, which mirrors it) keeps
the ``Deferral`` and calls ``basis`` to choose what a job is judged against.
"""

from __future__ import annotations

from dataclasses import dataclass

from notifier.dedup import LogEntry, PlannedJob


@dataclass(frozen=True, slots=True)
class Deferral:
    """A deferred job of a (channel, group), and what the channel had been told before it."""

    job_id: str
    told: LogEntry | None
    told_expires_at: float  # when ``told`` would have expired; unused when it is None

    def told_at(self, now: float) -> LogEntry | None:
        """``told``, or None once it would have expired (an expired entry counts as absent)."""
        return self.told if self.told is not None and self.told_expires_at > now else None


def deferral_for(
    job: PlannedJob, basis: LogEntry | None, basis_expires_at: float, job_id: str
) -> Deferral | None:
    """What to keep beside the entry ``job`` writes: a ``Deferral`` when it is deferred."""
    if job.not_before is None:
        return None
    return Deferral(job_id, basis, basis_expires_at)
