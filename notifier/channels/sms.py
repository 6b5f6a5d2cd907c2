"""The SMS channel: one Twilio message per recipient, through the real Twilio SDK (async).

The body is the rendered template trimmed to ``max_segments`` GSM-7/UCS-2 segments
(``sms_segments``). Recipients are sent to one after the other inside one timeout. Each
recipient Twilio accepts is recorded in the store under the job id (``ToldRecipients``)
before the next is sent, so a retry of the job, in this process or another, sends only
to the recipients not told yet. When a later recipient fails, the error says how many
already got the message. A recipient may still get it twice (Twilio accepted it but the
answer or the record was lost): delivery is at-least-once, and a duplicate page beats
a missed one.

Twilio answers: 429 / error 20429 and HTTP 5xx are retryable (a 5xx is ambiguous: the
SMS may have gone); 401/403 and error 20003 are ``auth``; other 4xx (21211 invalid number,
21614 not a mobile, 21408 no permission for the region, 21610 unsubscribed) are permanent.
Phone numbers and the auth token never appear in messages: Twilio's own error texts
quote numbers, so they are redacted. The SDK's retries stay off (no ``max_retries``) and
its HTTP client, which must be closed, is closed by ``close``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from notifier.channels.base import (
    DeliveryError,
    FailureReason,
    PermanentError,
    Receipt,
    RetryableError,
)
from notifier.channels.classify import error_for_transport, parse_retry_after, redact
from notifier.channels.sms_segments import segment_info, trim_keeping_end, trim_to_segments
from notifier.config import SmsChannel as SmsConfig
from notifier.notification import Notification
from notifier.store.base import StoreUnavailable, ToldRecipients
from notifier.templates import FALLBACK_TEXT, Renderer, template_context
from notifier.untrusted import plain_text

log = logging.getLogger(__name__)

RATE_LIMIT_CODES = frozenset({20429})
AUTH_CODES = frozenset({20003})
# How long a job's told recipients are kept: past any retry window (``retry.max_age``),
# and long enough that replaying its dead letter still skips the recipients told.
TOLD_TTL = 7 * 24 * 3600.0


def mask_number(number: str) -> str:
    """``+1…7890``: enough to tell recipients apart in a message, not enough to call them."""
    return f"{number[:2]}…{number[-4:]}"


def recipient_token(number: str) -> str:
    """What the store keeps for a told recipient: a hash, so no plain number is stored."""
    return hashlib.sha256(number.encode()).hexdigest()[:16]


def error_for_twilio(status: int, code: int | None, what: str) -> DeliveryError:
    """Twilio's HTTP status and error code as a delivery error."""
    if status == 429 or code in RATE_LIMIT_CODES:
        return RetryableError(FailureReason.RATE_LIMITED, what)
    if status in (401, 403) or code in AUTH_CODES:
        return PermanentError(FailureReason.AUTH, what)
    if status >= 500 or status == 408:
        return RetryableError(FailureReason.SERVER_ERROR, what)
    return PermanentError(FailureReason.CLIENT_ERROR, what)


class _TwilioTransport:
    """Twilio's HTTP seam around the SDK's async client: it reads ``Retry-After`` on a 429
    (Twilio's exceptions drop the response headers) and sends the credentials as a header.
    The SDK needs only ``is_async`` and an async ``request``."""

    is_async = True

    def __init__(self, clock: Callable[[], float]) -> None:
        self._inner = AsyncTwilioHttpClient()
        self._clock = clock

    async def request(self, method: str, url: str, **kwargs: Any) -> Any:
        auth = kwargs.pop("auth", None)
        if auth is not None:
            # As a header: aiohttp deprecates the BasicAuth object the SDK would build.
            login, password = auth
            token = base64.b64encode(f"{login}:{password}".encode()).decode()
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Basic {token}"}
        response = await self._inner.request(method, url, **kwargs)
        if response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock())
            raise RetryableError(
                FailureReason.RATE_LIMITED, "twilio answered 429", retry_after=retry_after
            )
        return response

    async def close(self) -> None:
        await self._inner.close()


class SmsChannel:
    type = "sms"

    def __init__(
        self,
        name: str,
        config: SmsConfig,
        renderer: Renderer,
        told: ToldRecipients,
        *,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self._config = config
        self._renderer = renderer
        self._told = told
        self._clock = clock
        self._timeout = timeout
        self._transport = _TwilioTransport(clock)
        token = config.auth_token.get_secret_value()
        self._client = Client(
            config.account_sid,
            token,
            account_sid=config.account_sid,
            http_client=self._transport,
            # Non-empty, so the SDK does not fall back to os.environ (TWILIO_EDGE and
            # TWILIO_REGION would rewrite the host of api_url).
            environment={"TWILIO_ACCOUNT_SID": config.account_sid},
        )
        self._client.api.base_url = config.api_url.rstrip("/")
        self._secrets = (token, *config.to, config.from_)

    def body(self, notification: Notification) -> str:
        context = template_context(notification, self.type)
        text = self._renderer.render_file(self._config.template, context, FALLBACK_TEXT).text
        # Before counting: one stray control or bidi character from a label would switch
        # the whole message to UCS-2 (more segments) or reorder what the person reads.
        text = plain_text(text).strip()
        if notification.kind == "page" and notification.incident is not None:
            # How to acknowledge must survive the trim (DESIGN §8: the page ends with it).
            end = f"Reply ACK {notification.incident.ack_code}"
            return trim_keeping_end(text, end, self._config.max_segments)
        return trim_to_segments(text, self._config.max_segments)

    def preview(self, notification: Notification) -> str:
        body = self.body(notification)
        info = segment_info(body)
        recipients = ", ".join(self._config.to)
        return f"SMS to {recipients} ({info.segments} segment(s), {info.encoding}):\n{body}"

    async def send(self, notification: Notification) -> Receipt:
        body = self.body(notification)
        job_id = notification.job_id
        told_before = await self._told_recipients(job_id)
        everyone = self._config.to
        recipients = [n for n in everyone if recipient_token(n) not in told_before]
        told = len(everyone) - len(recipients)
        sids: list[str] = []
        number = ""
        try:
            async with asyncio.timeout(self._timeout):
                for number in recipients:
                    message = await self._client.messages.create_async(
                        to=number, from_=self._config.from_, body=body
                    )
                    sids.append(str(message.sid))
                    told += 1
                    await self._record_told(job_id, number)
        except (
            DeliveryError,
            TwilioException,
            TimeoutError,
            aiohttp.ClientError,
            OSError,
            ValueError,
        ) as exc:
            error = self._error(exc, number)
            if not told:
                raise error from None
            note = (
                f"{error.message} (after {told} of {len(everyone)} recipients got it;"
                " a retry sends only to the others)"
            )
            raise type(error)(error.reason, note, retry_after=error.retry_after) from None
        segments = segment_info(body).segments
        detail = f"twilio accepted {len(sids)} message(s) of {segments} segment(s)"
        if len(sids) < len(everyone):
            detail += f"; {len(everyone) - len(sids)} recipient(s) got it on an earlier attempt"
        return Receipt(self.name, detail, peer_ids=tuple(sids))

    async def _told_recipients(self, job_id: str) -> frozenset[str]:
        try:
            return await self._told.told_recipients(job_id)
        except StoreUnavailable:
            # Sending to every recipient again beats sending to none.
            log.warning("cannot read who already got an sms", extra={"channel": self.name})
            return frozenset()

    async def _record_told(self, job_id: str, number: str) -> None:
        try:
            await self._told.add_told_recipient(
                job_id, recipient_token(number), TOLD_TTL, self._clock()
            )
        except StoreUnavailable:
            # Sent already: failing now would send it again. A retry may send it twice.
            log.warning("cannot record that a recipient got an sms", extra={"channel": self.name})

    def _error(self, exc: BaseException, number: str) -> DeliveryError:
        target = f"twilio message to {mask_number(number)}"
        if isinstance(exc, DeliveryError):
            return type(exc)(exc.reason, f"{target}: {exc.message}", retry_after=exc.retry_after)
        if isinstance(exc, TwilioRestException):
            detail = redact(str(exc.msg), self._secrets)
            return error_for_twilio(exc.status, exc.code, f"{target}: {exc.code} {detail}")
        if isinstance(exc, TwilioServiceException):
            detail = redact(f"{exc.title}: {exc.detail or ''}", self._secrets)
            return error_for_twilio(exc.status, exc.code, f"{target}: {exc.code} {detail}")
        if isinstance(exc, TimeoutError | aiohttp.ClientError | OSError):
            return error_for_transport(exc, target, self._timeout)
        # A 2xx answer that cannot be read: the message may have gone; a retry is the safe side.
        return RetryableError(
            FailureReason.OTHER, f"{target}: unreadable answer ({type(exc).__name__})"
        )

    async def close(self) -> None:
        await self._transport.close()
