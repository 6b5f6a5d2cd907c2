"""Storm mode, driven (DESIGN §10): looks at each channel's backlog and folds it while it storms.

Once a second, for every channel with a digest threshold and a rate limit, the watch
counts the channel's waiting jobs (``Store.waiting``) and asks its ``StormDetector``.
While the channel storms, every look folds what waits into the storm's digest
(``Store.fold``), so no alert of the storm goes out alone. The digests of one storm
update one message, at most once a ``REFRESH``:

- the first digest waits up to ``SETTLE`` for the burst to arrive, and goes as soon as a
  look finds nothing new (or the storm ends);
- later ones are due ``REFRESH`` after the previous one; one that still waits is folded
  into the next and keeps its turn.

The watch keeps its storms in memory: a restart, or each of several replicas, starts
its own storm (a new digest message). It never sends; the dispatcher delivers digests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from notifier.config import LoadedConfig
from notifier.digest import DigestFolder, max_drain
from notifier.digest_summary import DigestSummary
from notifier.metrics import Metrics
from notifier.store.base import Store, StoreUnavailable
from notifier.storm import StormDetector

log = logging.getLogger(__name__)

LOOK_EVERY = 1.0  # seconds between looks at the backlogs
REFRESH = 60.0  # a storm's digest message is updated at most this often
SETTLE = 10.0  # the first digest of a storm waits at most this long for the rest of the burst


@dataclass(slots=True)
class _Storm:
    key: str
    started_at: float
    due: float  # when the last digest written is (or was) due
    digest_id: str | None = None
    summary: DigestSummary | None = None  # of the last digest written
    sent_before: bool = False  # a digest of this storm may already be out


@dataclass(slots=True)
class _Watched:
    channel_type: str
    detector: StormDetector
    storm: _Storm | None = None


class StormWatch:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        clock: Callable[[], float],
        on_fold: Callable[[], None],
    ) -> None:
        """``on_fold`` is told after each fold (the dispatcher's ``wake``)."""
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._on_fold = on_fold
        self._channels: dict[str, _Watched] = {}
        self._console_url: str | None = None

    def configure(self, loaded: LoadedConfig) -> None:
        """Watch the channels of ``loaded``; one whose threshold and rate stay keeps its storm."""
        public_url = loaded.config.server.public_url
        self._console_url = None if public_url is None else public_url.rstrip("/") + "/ui/"
        watched = {}
        for name, channel in loaded.config.channels.items():
            drain, rate = max_drain(channel), channel.rate_limit
            old = self._channels.get(name)
            if drain is None or rate is None:
                pass  # no storm mode; without a rate limit a backlog has no drain time
            elif old is not None and (old.detector.max_drain, old.detector.rate) == (drain, rate):
                watched[name] = old
            else:
                watched[name] = _Watched(channel.type, StormDetector(drain, rate))
            storming = name in watched and watched[name].detector.in_storm
            self._metrics.storm_mode.labels(name, channel.type).set(int(storming))
        self._channels = watched

    def in_storm(self) -> dict[str, bool]:
        return {name: w.detector.in_storm for name, w in self._channels.items()}

    async def run(self) -> None:
        """Look every ``LOOK_EVERY`` seconds until cancelled; a failed look is logged."""
        while True:
            try:
                await self.look()
            except StoreUnavailable as exc:
                log.warning("storm watch cannot reach the store (%s)", exc)
            except Exception:
                log.exception("storm watch look failed unexpectedly")
            await asyncio.sleep(LOOK_EVERY)

    async def look(self) -> None:
        for name, watched in list(self._channels.items()):
            await self._look_at(name, watched)

    async def _look_at(self, name: str, watched: _Watched) -> None:
        """In storm: fold, and tell the detector what arrived since the last fold. Calm:
        tell it the backlog, and fold at once if that starts a storm."""
        now, detector, storm = self._clock(), watched.detector, watched.storm
        if detector.in_storm and storm is not None:
            folded = await self._fold(name, watched, storm, now)
            change = detector.observe(folded, now)
        else:
            change = detector.observe(await self._store.waiting(name, now), now)
            if not change.entered:
                return
            storm = watched.storm = _Storm(f"{name}@{now:.3f}", now, due=now + SETTLE)
            log.warning("channel entered storm mode", extra={"channel": name})
            folded = await self._fold(name, watched, storm, now)
            self._metrics.storm_mode.labels(name, watched.channel_type).set(1)
        if not folded and storm.due > now and not storm.sent_before and storm.digest_id:
            # The burst is in (or over): the first digest goes now instead of at SETTLE.
            await self._store.release(storm.digest_id, not_before=now)
            storm.due = now
            self._on_fold()
        if change.left:
            watched.storm = None
            self._metrics.storm_mode.labels(name, watched.channel_type).set(0)
            log.warning("channel left storm mode", extra={"channel": name})

    async def _fold(self, name: str, watched: _Watched, storm: _Storm, now: float) -> int:
        if storm.digest_id is None:
            not_before = storm.due  # the first digest of the storm
        elif now < storm.due:
            not_before = storm.due  # the pending digest is not due yet: it takes the news
        else:
            storm.sent_before = True
            not_before = max(now, storm.due + REFRESH)
        folder = DigestFolder(
            channel=name,
            channel_type=watched.channel_type,
            storm=storm.key,
            started_at=storm.started_at,
            now=now,
            not_before=not_before,
            pending_due=storm.due,
            console_url=self._console_url,
            carried=storm.summary,
        )
        fold = await self._store.fold(name, now, folder)
        if fold is None:
            return 0
        storm.digest_id, storm.due = fold.digest.job_id, fold.not_before
        storm.summary = fold.digest.digest
        self._metrics.notifications_folded.labels(name, watched.channel_type).inc(len(fold.records))
        self._on_fold()
        return len(fold.records)


@contextlib.asynccontextmanager
async def watching(watch: StormWatch) -> AsyncIterator[None]:
    """Run ``watch`` for the block."""
    task = asyncio.create_task(watch.run(), name="notifier-storm-watch")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
