"""Builds every configured channel from its config ``type`` and owns the clients they share.

``open_channels`` is the one place channels are made (the server and the CLI both call
it); ``Channels.aclose`` is the one place their clients are closed: each channel's own
(Twilio's HTTP client), the one ``aiohttp.ClientSession`` that Slack's channels (Web API
and incoming webhooks) share, and the one ``CurlSession`` the webhook channels share.
Nothing here sends or renders.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from notifier.channels.base import Channel
from notifier.channels.curl import CurlSession
from notifier.channels.email import EmailChannel, tls_context
from notifier.channels.log import LogChannel
from notifier.channels.slack import SlackChannel
from notifier.channels.sms import SmsChannel
from notifier.channels.webhook import WebhookChannel
from notifier.config import EmailChannel as EmailConfig
from notifier.config import LoadedConfig
from notifier.config import LogChannel as LogConfig
from notifier.config import SlackChannel as SlackConfig
from notifier.config import SmsChannel as SmsConfig
from notifier.config import WebhookChannel as WebhookConfig
from notifier.store.base import ChannelState
from notifier.templates import Renderer

log = logging.getLogger(__name__)


@dataclass
class _BuildContext:
    """What a builder may use; the shared session is made on first need."""

    loaded: LoadedConfig
    renderer: Renderer
    state: ChannelState
    clock: Callable[[], float]
    session: aiohttp.ClientSession | None = None
    curl: CurlSession | None = None

    def shared_session(self) -> aiohttp.ClientSession:
        if self.session is None:
            # No session-wide timeout: each channel bounds its own send with asyncio.timeout.
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self.session

    def curl_session(self) -> CurlSession:
        if self.curl is None:
            self.curl = CurlSession()
        return self.curl

    def timeout(self, name: str) -> float:
        return self.loaded.timeout(name).total_seconds()


def _email(name: str, config: EmailConfig, build: _BuildContext) -> Channel:
    return EmailChannel(
        name,
        config,
        build.renderer,
        timeout=build.timeout(name),
        clock=build.clock,
        tls=tls_context(config),
    )


def _slack(name: str, config: SlackConfig, build: _BuildContext) -> Channel:
    return SlackChannel(
        name,
        config,
        build.renderer,
        build.shared_session(),
        build.state,
        timeout=build.timeout(name),
        clock=build.clock,
    )


def _sms(name: str, config: SmsConfig, build: _BuildContext) -> Channel:
    return SmsChannel(
        name,
        config,
        build.renderer,
        build.state,
        timeout=build.timeout(name),
        clock=build.clock,
    )


def _webhook(name: str, config: WebhookConfig, build: _BuildContext) -> Channel:
    return WebhookChannel(
        name,
        config,
        build.curl_session(),
        timeout=build.timeout(name),
        clock=build.clock,
    )


def _log(name: str, config: LogConfig, build: _BuildContext) -> Channel:
    return LogChannel(name, config, build.renderer)


# Keyed by the config's ``type``; each builder gets the config model of its type.
BUILDERS: dict[str, Callable[[str, Any, _BuildContext], Channel]] = {
    "email": _email,
    "slack": _slack,
    "sms": _sms,
    "webhook": _webhook,
    "log": _log,
}


class ChannelOpenError(Exception):
    """A configured channel could not be built; ``channel`` names it, ``__cause__`` says why.

    ``str()`` holds the channel name and the cause's class, plus the cause's message when
    it is a ``ValueError`` or ``ssl.SSLError`` (the standard library describing a
    malformed setting, such as a URL's port); other messages may quote a secret.
    """

    def __init__(self, channel: str, cause: Exception) -> None:
        why = type(cause).__name__
        if isinstance(cause, ValueError | ssl.SSLError):
            why += f": {cause}"
        super().__init__(f"channels.{channel}: cannot open it: {why}")
        self.channel = channel


class Channels(Mapping[str, Channel]):
    """The open channels by name, and the clients to close with them."""

    def __init__(
        self, channels: dict[str, Channel], closers: list[Callable[[], Awaitable[None]]]
    ) -> None:
        self._channels = channels
        self._closers = closers

    def __getitem__(self, name: str) -> Channel:
        return self._channels[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    async def aclose(self) -> None:
        """Close every channel, then the shared session; safe to call twice."""
        closers, self._closers = self._closers, []
        for close in closers:
            try:
                await close()
            except Exception as exc:  # one client failing to close must not leak the others
                log.warning("closing a channel client failed", extra={"error": type(exc).__name__})


async def open_channels(
    config: LoadedConfig,
    renderer: Renderer,
    state: ChannelState,
    *,
    clock: Callable[[], float] = time.time,
) -> Channels:
    """Open one channel per ``config.channels`` entry (a running event loop is required).

    All or nothing: when one cannot be built, those already built are closed and
    ``ChannelOpenError`` names it.
    """
    build = _BuildContext(config, renderer, state, clock)
    channels: dict[str, Channel] = {}
    name = ""
    try:
        for name, channel_config in config.config.channels.items():
            channels[name] = BUILDERS[channel_config.type](name, channel_config, build)
    except BaseException as exc:
        await Channels(channels, _closers(channels, build)).aclose()
        if isinstance(exc, Exception):
            raise ChannelOpenError(name, exc) from exc
        raise
    return Channels(channels, _closers(channels, build))


def _closers(
    channels: dict[str, Channel], build: _BuildContext
) -> list[Callable[[], Awaitable[None]]]:
    closers: list[Callable[[], Awaitable[None]]] = [channel.close for channel in channels.values()]
    # Last: the channels use them until closed.
    if build.session is not None:
        closers.append(build.session.close)
    if build.curl is not None:
        closers.append(build.curl.close)
    return closers
