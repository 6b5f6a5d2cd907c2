"""The shared rules that turn what a peer did or said into a ``DeliveryError`` (DESIGN §4).

HTTP statuses (webhook, Slack incoming webhooks), ``Retry-After`` values, transport
exceptions, and safe snippets of peer text. Error messages are built here from facts we
choose (status, reason phrase, exception class), never from ``str()`` of an SDK or
aiohttp exception, which may quote a URL that carries a secret. Pure: no I/O.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterable

import aiohttp

from notifier.channels import curl
from notifier.channels.base import DeliveryError, FailureReason, PermanentError, RetryableError

SNIPPET_LIMIT = 200
REDACTED = "<redacted>"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    None when the header is absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced: a peer whose text we quote may echo us."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def snippet(body: bytes | str, secrets: Iterable[str]) -> str:
    """A short, single-line, redacted excerpt of a peer's answer for an error message."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = redact(" ".join(text.split()), secrets)
    return text if len(text) <= SNIPPET_LIMIT else text[:SNIPPET_LIMIT] + "…"


def error_for_status(status: int, what: str, retry_after: float | None = None) -> DeliveryError:
    """The error for a non-2xx HTTP answer: 5xx/408/429 retryable, other 4xx (and 3xx) permanent."""
    if status == 429:
        return RetryableError(FailureReason.RATE_LIMITED, what, retry_after=retry_after)
    if status >= 500 or status == 408:
        return RetryableError(FailureReason.SERVER_ERROR, what, retry_after=retry_after)
    if status in (401, 403):
        return PermanentError(FailureReason.AUTH, what)
    return PermanentError(FailureReason.CLIENT_ERROR, what)


def error_for_transport(exc: BaseException, peer: str, timeout: float) -> DeliveryError:
    """The error for a failure to get an answer at all: always retryable."""
    if isinstance(exc, TimeoutError):
        return RetryableError(FailureReason.TIMEOUT, f"{peer}: no answer within {timeout:g}s")
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error.strerror or type(exc.os_error).__name__
        return RetryableError(FailureReason.CONNECTION, f"{peer}: cannot connect ({cause})")
    if isinstance(exc, curl.CannotConnect):
        return RetryableError(FailureReason.CONNECTION, f"{peer}: cannot connect ({exc.cause})")
    if isinstance(exc, curl.RequestFailed):
        return RetryableError(FailureReason.OTHER, f"{peer}: request failed ({exc})")
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
        return RetryableError(
            FailureReason.CONNECTION, f"{peer}: connection failed ({type(exc).__name__})"
        )
    return RetryableError(FailureReason.OTHER, f"{peer}: request failed ({type(exc).__name__})")
