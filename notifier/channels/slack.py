"""The Slack channel: Block Kit messages through the real slack_sdk async clients.

With a bot token it posts ``chat.postMessage`` and keeps the message's channel and ``ts``
under the group's thread key (``ThreadRefs``, so it survives a restart); when the group
resolves it updates that message (``chat.update``) and replies in its thread (a later
firing notification of the group posts anew and becomes the message updated). An
incident's pages keep a thread of their own; its announcements update the last page.
Acknowledge buttons (a channel with ``signing_secret``) belong in ``message``, for
notifications of kind ``page``: the template context's ``incident`` has what they need. With an
incoming webhook it only posts: a webhook returns no ``ts``. The template renders
``{"text", "blocks"}`` from payload strings escaped for mrkdwn (``slack_text``); the
alerts it sees are narrowed until the message fits Slack's budget (``slack_budget``),
and its mrkdwn texts are ``verbatim`` unless it says otherwise. Should Slack still find
the blocks too long (``msg_blocks_too_long``), the built-in one-line form is sent at
once instead. The SDK's retries are off (``retry_handlers=[]``).

Answers: HTTP 429 / ``ratelimited`` is retryable with ``Retry-After``; ``invalid_auth``,
``not_authed``, ``token_revoked`` (and kin) are permanent ``auth``; ``channel_not_found``,
``not_in_channel`` and other API errors are permanent; HTTP 5xx is retryable. The
token and the webhook URL (itself a secret) never appear in messages or logs: slack_sdk
logs the request URL at DEBUG, so its clients get a logger that stays at INFO.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from notifier.channels.base import (
    DeliveryError,
    FailureReason,
    PermanentError,
    Receipt,
    RetryableError,
)
from notifier.channels.classify import (
    error_for_status,
    error_for_transport,
    parse_retry_after,
    redact,
)
from notifier.channels.slack_budget import (
    MAX_BLOCKS,
    SlackMessage,
    cap_blocks,
    clamp_texts,
    largest_fitting,
    within_budget,
)
from notifier.channels.slack_text import verbatim_by_default
from notifier.config import SlackChannel as SlackConfig
from notifier.notification import Notification
from notifier.payload import Alert
from notifier.store.base import StoreUnavailable, ThreadRef, ThreadRefs
from notifier.templates import FALLBACK_SLACK, Renderer, template_context

log = logging.getLogger(__name__)

THREAD_TTL = 7 * 24 * 3600.0
ERROR_CODE = re.compile(r"[a-z_]{1,64}")
MESSAGE_KEYS = ("text", "blocks", "attachments", "unfurl_links", "unfurl_media")
AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
    }
)
SERVER_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# chat.update cannot touch the original any more: announce the resolution afresh.
GONE_ERRORS = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


def sdk_logger() -> logging.Logger:
    """The logger handed to slack_sdk: it logs URLs and bodies at DEBUG when its level allows."""
    logger = logging.getLogger(f"{__name__}.sdk")
    logger.setLevel(logging.INFO)
    return logger


def error_for_api(exc: SlackApiError, method: str, now: float) -> DeliveryError:
    """A Web API failure (``ok: false`` or a non-200 answer) as a delivery error."""
    response = exc.response
    # An AsyncSlackResponse; an aiohttp response when the body was not JSON.
    status = int(getattr(response, "status_code", 0) or getattr(response, "status", 0))
    code = _error_code(exc)
    what = f"slack {method}: {code or 'error'} (HTTP {status})"
    if status == 429 or code == "ratelimited":
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        return RetryableError(FailureReason.RATE_LIMITED, what, retry_after=retry_after)
    if code in AUTH_ERRORS:
        return PermanentError(FailureReason.AUTH, what)
    if code in SERVER_ERRORS:
        return RetryableError(FailureReason.SERVER_ERROR, what)
    if status != 200:
        return error_for_status(status, what)
    return PermanentError(FailureReason.CLIENT_ERROR, what)


class BlocksTooLong(Exception):
    """Slack refused the blocks as holding too much text in all (an undocumented limit)."""

    code = "msg_blocks_too_long"


class SlackChannel:
    type = "slack"

    def __init__(
        self,
        name: str,
        config: SlackConfig,
        renderer: Renderer,
        session: aiohttp.ClientSession,
        threads: ThreadRefs,
        *,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self._config = config
        self._renderer = renderer
        self._threads = threads
        self._timeout = timeout
        self._clock = clock
        self._web: AsyncWebClient | None = None
        self._hook: AsyncWebhookClient | None = None
        self._hook_url = config.webhook_url.get_secret_value() if config.webhook_url else ""
        self._channel = config.channel or ""  # required with a token (config checks it)
        if config.token is not None:
            self._web = AsyncWebClient(
                token=config.token.get_secret_value(),
                base_url=config.api_url,
                session=session,
                timeout=math.ceil(timeout),
                retry_handlers=[],
                logger=sdk_logger(),
            )
            self._peer = f"slack {urlsplit(config.api_url).netloc}"
        else:
            self._hook = AsyncWebhookClient(
                url=self._hook_url,
                session=session,
                timeout=math.ceil(timeout),
                retry_handlers=[],
                logger=sdk_logger(),
            )
            self._peer = "slack incoming webhook"

    def message(self, notification: Notification) -> SlackMessage:
        """The message as posted: within Slack's budget (blocks, texts, total text), every
        mrkdwn text ``verbatim`` unless the template says otherwise."""
        alerts = notification.alerts
        rendered: dict[int, SlackMessage] = {}
        fallback: SlackMessage | None = None

        def showing(count: int) -> SlackMessage:
            nonlocal fallback
            if fallback is not None:  # a broken template: render (and log) its fallback once
                return fallback
            if count not in rendered:
                message, fell_back = self._render(notification, alerts[:count])
                rendered[count] = clamp_texts(message)
                if fell_back:
                    fallback = rendered[count]
            return rendered[count]

        # Only the alerts that can be shown are rendered: the search starts at one block each.
        shown = largest_fitting(
            len(alerts), lambda count: within_budget(_blocks(showing(count))), guess=MAX_BLOCKS
        )
        message = showing(shown)
        if not within_budget(_blocks(message)):
            hidden = notification.truncated_alerts + len(alerts) - shown
            message = {**message, "blocks": cap_blocks(_blocks(message), hidden)}
        if "blocks" in message:
            message["blocks"] = verbatim_by_default(message["blocks"])
        return message

    def short_form(self, notification: Notification) -> SlackMessage:
        """The built-in one-line message, sent when Slack refuses the full one as too long."""
        context = template_context(notification, self.type, alerts=())
        return _parse_message(self._renderer.render_string(FALLBACK_SLACK, context, "").text)

    def _render(
        self, notification: Notification, alerts: tuple[Alert, ...]
    ) -> tuple[SlackMessage, bool]:
        """The message rendered from the template, and whether it fell back to the built-in one."""
        context = template_context(notification, self.type, alerts)
        rendered = self._renderer.render_file(self._config.template, context, FALLBACK_SLACK)
        try:
            return _parse_message(rendered.text), rendered.fell_back
        except ValueError as exc:
            fallback = self._renderer.fall_back(self._config.template, exc, FALLBACK_SLACK, context)
            return _parse_message(fallback.text), True

    def preview(self, notification: Notification) -> str:
        message = self.message(notification)
        if self._web is not None:
            message = {"channel": self._channel, **message}
        return json.dumps(message, ensure_ascii=False, indent=2)

    async def send(self, notification: Notification) -> Receipt:
        message = self.message(notification)
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    return await self._deliver(notification, message)
                except BlocksTooLong:
                    # Slack's total is undocumented: our budget may still be over it. The
                    # short form has no blocks, so it goes through; a dead letter would not.
                    log.warning(
                        "slack refused the message as too long, sending the short form",
                        extra={"channel": self.name},
                    )
                    return await self._deliver(notification, self.short_form(notification))
        except BlocksTooLong as exc:
            raise PermanentError(FailureReason.CLIENT_ERROR, str(exc)) from None
        except SlackApiError as exc:
            raise error_for_api(exc, _api_method(exc), self._clock()) from None
        except SlackRequestError as exc:
            raise PermanentError(FailureReason.CLIENT_ERROR, f"{self._peer}: {exc}") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise error_for_transport(exc, self._peer, self._timeout) from None

    async def _deliver(self, notification: Notification, message: SlackMessage) -> Receipt:
        try:
            if self._web is not None:
                return await self._post_bot(self._web, notification, message)
            assert self._hook is not None
            return await self._post_webhook(self._hook, message)
        except SlackApiError as exc:
            if _error_code(exc) == BlocksTooLong.code:
                raise BlocksTooLong(f"slack {_api_method(exc)}: {BlocksTooLong.code}") from None
            raise

    async def _post_webhook(self, hook: AsyncWebhookClient, message: SlackMessage) -> Receipt:
        response = await hook.send_dict(body=message)
        if response.status_code == 200:
            return Receipt(self.name, "posted through the incoming webhook")
        what = f"{self._peer} answered {response.status_code}"
        # Slack answers an error code (``no_service``); anything else may quote the URL,
        # which is the secret, so only a code is shown.
        answer = (response.body or "").strip()
        if answer == BlocksTooLong.code:
            raise BlocksTooLong(f"{what}: {answer}")
        if ERROR_CODE.fullmatch(answer):
            what += f": {redact(answer, [self._hook_url.rpartition('/')[2]])}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock())
        raise error_for_status(response.status_code, what, retry_after)

    async def _post_bot(
        self, web: AsyncWebClient, notification: Notification, message: SlackMessage
    ) -> Receipt:
        # An incident's announcement (acknowledged, resolved...) updates its last page.
        if notification.status == "resolved" or notification.kind == "announcement":
            ref = await self._thread(notification.thread_key)
            if ref is not None:
                return await self._resolve(web, ref, message)
        response = await web.chat_postMessage(channel=self._channel, **message)
        ref = ThreadRef(channel_id=str(response["channel"]), ts=str(response["ts"]))
        try:
            await self._threads.put_thread(notification.thread_key, ref, THREAD_TTL, self._clock())
        except StoreUnavailable:
            # Posted already: failing now would post it twice. Its resolution will be a new message.
            log.warning("cannot keep the slack thread of a group", extra={"channel": self.name})
        return Receipt(self.name, f"posted to {self._channel}", peer_ids=(ref.ts,))

    async def _resolve(self, web: AsyncWebClient, ref: ThreadRef, message: SlackMessage) -> Receipt:
        try:
            await web.chat_update(channel=ref.channel_id, ts=ref.ts, **message)
        except SlackApiError as exc:
            if _error_code(exc) not in GONE_ERRORS:
                raise
            response = await web.chat_postMessage(channel=self._channel, **message)
            return Receipt(
                self.name,
                "original message gone; posted the resolution",
                peer_ids=(str(response["ts"]),),
            )
        reply = await web.chat_postMessage(
            channel=ref.channel_id, thread_ts=ref.ts, text=message.get("text") or "Resolved"
        )
        return Receipt(
            self.name,
            "updated the original message and replied in its thread",
            peer_ids=(ref.ts, str(reply["ts"])),
        )

    async def _thread(self, key: str) -> ThreadRef | None:
        try:
            return await self._threads.get_thread(key)
        except StoreUnavailable:
            log.warning("cannot read the slack thread of a group", extra={"channel": self.name})
            return None

    async def close(self) -> None:
        """Nothing to close: the clients use the registry's session."""


def _parse_message(text: str) -> SlackMessage:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    message = {key: data[key] for key in MESSAGE_KEYS if key in data}
    if not isinstance(message.get("text", ""), str) or not isinstance(
        message.get("blocks", []), list
    ):
        raise ValueError("text must be a string and blocks a list")
    if not message.get("text") and not message.get("blocks"):
        raise ValueError("neither text nor blocks")
    return message


def _blocks(message: SlackMessage) -> list[Any]:
    blocks = message.get("blocks")
    return blocks if isinstance(blocks, list) else []


def _error_code(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    return str(data.get("error") or "") if isinstance(data, dict) else ""


def _api_method(exc: SlackApiError) -> str:
    url = str(getattr(exc.response, "api_url", "") or "")
    return url.rstrip("/").rpartition("/")[2] or "api call"
