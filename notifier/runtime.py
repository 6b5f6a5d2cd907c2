"""The composition root: builds the store, renderer, channels and dispatcher from one config.

The server and the CLI both start from here, so they run the same code path. This is
the one place (with ``config.load_config``) that reads the environment: it is handed
in once, as a mapping, by the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from notifier.channels.registry import ChannelOpenError, Channels, open_channels
from notifier.config import ConfigError, LoadedConfig, load_config
from notifier.dedup import plan_notifications
from notifier.digest import digest_template, max_drain, sample_digest
from notifier.dispatcher import Dispatcher
from notifier.heartbeats.watch import TIMER_KIND as HEARTBEAT_TIMER
from notifier.heartbeats.watch import HeartbeatWatch
from notifier.incidents.engine import TIMER_OWNER, IncidentEngine
from notifier.incidents.messages import sample_variants
from notifier.metrics import Metrics
from notifier.notification import Notification
from notifier.payload import WebhookPayload
from notifier.sample import sample_payload
from notifier.store import open_store
from notifier.store.base import EnqueueResult, Store, StoreUnavailable
from notifier.storm_watch import StormWatch, watching
from notifier.templates import Renderer, template_context
from notifier.timers import TimerLoop

log = logging.getLogger(__name__)


def template_problems(loaded: LoadedConfig, renderer: Renderer) -> list[str]:
    """Compile every channel's templates and render them against a sample group."""
    problems = []
    payload = sample_payload()
    for name, channel in loaded.config.channels.items():
        notification = sample_notification(payload, name)
        for key in ("template", "text_template", "subject"):
            value = getattr(channel, key, None)
            if value is None:
                continue
            # As an ordinary alert, then as an escalation page and an announcement (§8).
            for as_what, variant in sample_variants(notification):
                context = template_context(variant, channel.type)
                error = (
                    renderer.trial_render(None, value, context)
                    if key == "subject"
                    else renderer.trial_render(value, None, context)
                )
                if error is not None:
                    problems.append(f"channels.{name}.{key}: {error}{as_what}")
                    break
        digest = digest_template(channel) if max_drain(channel) is not None else None
        if digest is not None:
            sample = template_context(sample_digest(notification, channel.type), channel.type)
            error = renderer.trial_render(digest, None, sample)
            if error is not None:
                problems.append(f"channels.{name}.digest_template: {error}")
    return problems


def sample_notification(
    payload: WebhookPayload, channel: str, route: str = "sample"
) -> Notification:
    """``payload`` as the notification one channel would receive (all its alerts)."""
    return Notification.for_channel(
        payload,
        tuple(payload.alerts),
        job_id="sample",
        channel=channel,
        route=route,
        received_at=time.time(),
    )


def load_checked(path: Path, env: Mapping[str, str]) -> LoadedConfig:
    """Load the config and trial-render its templates; raise ``ConfigError`` with every problem."""
    loaded = load_config(path, env)
    problems = template_problems(loaded, Renderer(loaded.templates_dir))
    if problems:
        raise ConfigError(str(path), problems)
    return loaded


def _new_job_id() -> str:
    """128 random bits in hex: as unique as ``uuid4().hex``, without building a UUID."""
    return os.urandom(16).hex()


@dataclass
class ReloadResult:
    ok: bool
    problems: list[str]
    digest: str


class Runtime:
    """One running notifier: ``ingest()`` per payload while its ``resources()`` are open."""

    def __init__(
        self,
        config_path: Path,
        env: Mapping[str, str],
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config_path = config_path
        self.env = dict(env)
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.loaded = load_checked(config_path, env)
        self.renderer = self._renderer(self.loaded)
        self.loaded_at = clock()
        self.started_at = clock()
        self.store: Store = open_store(self.loaded)
        self.channels: Channels | None = None
        self.dispatcher: Dispatcher | None = None
        self.heartbeats = HeartbeatWatch(
            self.store, self.loaded.heartbeats, clock=clock, on_enqueued=self._wake_dispatcher
        )
        self.timers: TimerLoop | None = None
        self.storm_watch: StormWatch | None = None
        self.incidents = IncidentEngine(
            self.store,
            lambda: self.loaded,
            self.metrics,
            clock=clock,
            new_id=_new_job_id,
            on_enqueued=self._wake_dispatcher,
            on_scheduled=self._wake_timers,
            step_window=self._step_window,
        )
        self._reload_lock = asyncio.Lock()
        # Channels replaced by a reload, each with the timer that closes it.
        self._retired: list[tuple[Channels, asyncio.TimerHandle]] = []
        self._closing: set[asyncio.Task[None]] = set()

    def _renderer(self, loaded: LoadedConfig) -> Renderer:
        fallbacks = self.metrics.template_fallbacks
        return Renderer(loaded.templates_dir, on_fallback=lambda ch, _t: fallbacks.labels(ch).inc())

    def _declare(self, loaded: LoadedConfig) -> None:
        self.metrics.declare_channels((n, c.type) for n, c in loaded.config.channels.items())
        policies = loaded.config.escalation_policies.items()
        self.metrics.declare_policies((n, len(p.steps)) for n, p in policies)

    def resources(
        self, *, dispatch: bool = True
    ) -> list[Callable[[], contextlib.AbstractAsyncContextManager[None]]]:
        """What a running notifier holds, in the order it opens: the store, the channels, the
        dispatcher, the storm watch and the timer loop (started unless ``dispatch`` is
        False). Each is its own context, so a failure opening one closes only those already
        open (the store when the channels fail).
        """
        return [
            self._store_open,
            self._channels_open,
            partial(self._dispatching, dispatch),
            partial(self._storm_watching, dispatch),
            partial(self._timing, dispatch),
        ]

    @contextlib.asynccontextmanager
    async def running(self, *, dispatch: bool = True) -> AsyncIterator[Runtime]:
        """Every resource open for the block, closed in reverse order after it."""
        async with contextlib.AsyncExitStack() as stack:
            for resource in self.resources(dispatch=dispatch):
                await stack.enter_async_context(resource())
            yield self

    @contextlib.asynccontextmanager
    async def _store_open(self) -> AsyncIterator[None]:
        await self.store.open()
        try:
            yield
        finally:
            await self.store.close()

    @contextlib.asynccontextmanager
    async def _channels_open(self) -> AsyncIterator[None]:
        self._declare(self.loaded)
        self.channels = await open_channels(
            self.loaded, self.renderer, self.store, clock=self.clock
        )
        try:
            yield
        finally:
            # Sends are over: channels a reload replaced close now, not when their timer fires.
            retired, self._retired = self._retired, []
            for channels, timer in retired:
                timer.cancel()
                await channels.aclose()
            if self._closing:
                await asyncio.wait(set(self._closing))
            await self.channels.aclose()

    @contextlib.asynccontextmanager
    async def _dispatching(self, dispatch: bool) -> AsyncIterator[None]:
        assert self.channels is not None  # opened by _channels_open
        self.dispatcher = Dispatcher(
            self.store, self.channels, self.loaded, self.metrics, clock=self.clock
        )
        if dispatch:
            await self.dispatcher.start()
        self.metrics.config_reload_success.set(1)
        self.metrics.config_reload_time.set(self.loaded_at)
        try:
            yield
        finally:
            await self.dispatcher.stop(self.loaded.config.server.shutdown_grace.total_seconds())

    @contextlib.asynccontextmanager
    async def _timing(self, start: bool) -> AsyncIterator[None]:
        """The timer loop: heartbeats falling due, incident steps, acknowledgement timeouts,
        silences ending. Heartbeats are armed first, so that one never heard is watched from
        the start."""
        self.timers = TimerLoop(
            self.store,
            {HEARTBEAT_TIMER: self.heartbeats.on_timer, TIMER_OWNER: self.incidents.on_timer},
            lease=self.loaded.config.storage.lease.total_seconds(),
            clock=self.clock,
        )
        if start:
            await self.heartbeats.arm(self.clock())
            await self.timers.start()
        try:
            yield
        finally:
            await self.timers.stop()

    def _wake_dispatcher(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    @contextlib.asynccontextmanager
    async def _storm_watching(self, dispatch: bool) -> AsyncIterator[None]:
        """Storm mode (DESIGN §10) beside the dispatcher, which it wakes after each fold."""
        assert self.dispatcher is not None  # started by _dispatching
        self.storm_watch = StormWatch(
            self.store, self.metrics, self.clock, on_fold=self.dispatcher.wake
        )
        self.storm_watch.configure(self.loaded)
        if not dispatch:
            yield
            return
        async with watching(self.storm_watch):
            yield

    def _step_window(self, names: Sequence[str], now: float) -> float | None:
        """When an escalation step limited to the intervals ``names`` may be sent (DESIGN §9)."""
        opening = self.loaded.windows.next_opening(names, datetime.fromtimestamp(now, UTC))
        return None if opening is None else opening.timestamp()

    def _wake_timers(self) -> None:
        if self.timers is not None:
            self.timers.wake()

    async def ingest(self, payload: WebhookPayload) -> EnqueueResult:
        """Renew heartbeats, then route, dedup and durably enqueue the rest of one payload,
        and open or resolve the incidents of its group (DESIGN §8); raises
        ``StoreUnavailable``."""
        now = self.clock()
        taken = self.heartbeats.take(payload)
        await self.heartbeats.renew(taken.renewals, now)
        if taken.rest is None:
            return EnqueueResult((), 0)
        jobs = plan_notifications(taken.rest, self.loaded, now, _new_job_id)
        if self.dispatcher is None:
            result = await self.store.enqueue(jobs, now)
        else:  # fresh jobs the dispatcher has room for go to it without a claim
            result = await self.dispatcher.enqueue(jobs, now)
        await self.incidents.on_payload(taken.rest, now)
        return result

    async def reload(self) -> ReloadResult:
        """Load the config file again and swap it in whole, or keep the running one and say why.

        Everything the new config needs (channels, renderer, lanes and their protection) is
        built before anything is swapped; a failure at any step closes what was built.
        """
        async with self._reload_lock:
            try:
                # Reading files and compiling templates must not stall the event loop.
                loaded = await asyncio.to_thread(load_checked, self.config_path, self.env)
                if loaded.config.storage != self.loaded.config.storage:
                    raise ConfigError(
                        str(self.config_path), ["storage: changing the store needs a restart"]
                    )
            except ConfigError as exc:
                return self._reload_failed(exc.problems)
            renderer = self._renderer(loaded)
            try:
                channels = await open_channels(loaded, renderer, self.store, clock=self.clock)
            except ChannelOpenError as exc:
                log.warning("config reload cannot open a channel", exc_info=exc.__cause__)
                return self._reload_failed([str(exc)])
            try:
                if self.dispatcher is not None:
                    # All or nothing: it raises before changing any lane.
                    self.dispatcher.replace_config(loaded, channels)
                if self.storm_watch is not None:
                    self.storm_watch.configure(loaded)
            except Exception as exc:
                await channels.aclose()
                if isinstance(exc, ValueError):  # a setting that cannot be built
                    return self._reload_failed([str(exc)])
                raise
            old_channels, old_loaded = self.channels, self.loaded
            self.loaded, self.renderer, self.channels = loaded, renderer, channels
            self._declare(loaded)
            self.heartbeats.replace_config(loaded.heartbeats)
            await self._arm_heartbeats()
            if old_channels is not None:
                self._retire(old_channels, retire_after(old_loaded))
            self.loaded_at = self.clock()
            self.metrics.config_reload_success.set(1)
            self.metrics.config_reload_time.set(self.loaded_at)
            log.info("config reloaded", extra={"config_hash": loaded.digest})
            return ReloadResult(True, [], loaded.digest)

    async def _arm_heartbeats(self) -> None:
        """Watch heartbeats a reload added; a store that cannot answer now leaves them to
        their first renewal or the next start."""
        if self.timers is None:
            return  # not running: arming happens at start
        try:
            await self.heartbeats.arm(self.clock())
        except StoreUnavailable as exc:
            log.warning("could not arm the reloaded heartbeats: %s", exc)

    def _reload_failed(self, problems: list[str]) -> ReloadResult:
        self.metrics.config_reload_success.set(0)
        log.warning(
            "config reload failed, keeping the running config", extra={"problems": problems}
        )
        return ReloadResult(False, problems, self.loaded.digest)

    def _retire(self, channels: Channels, after: float) -> None:
        """Close channels a reload replaced once the sends started with them are over."""
        loop = asyncio.get_running_loop()

        def close() -> None:
            self._retired = [entry for entry in self._retired if entry[0] is not channels]
            task = loop.create_task(channels.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

        self._retired.append((channels, loop.call_later(after, close)))


def retire_after(loaded: LoadedConfig) -> float:
    """Seconds after a reload until ``loaded``'s channels may close: every send started
    with them is bounded by its channel's timeout, which may exceed ``defaults.timeout``."""
    timeouts = (loaded.timeout(name).total_seconds() for name in loaded.config.channels)
    return max(timeouts, default=0.0) + 1.0
