"""The email channel: one multipart (text + HTML) message per notification over SMTP (aiosmtplib).

``security`` picks plain SMTP, STARTTLS or implicit TLS (aiosmtplib's ``start_tls`` and
``use_tls`` are exclusive); AUTH runs when a username is set. aiosmtplib's timeout is
per socket operation, so the whole send is bounded here. At most ``max_alerts`` alerts
are listed in full; the template sees the rest as ``truncated_alerts``.

SMTP answers: 4xx is retryable (``rate_limited`` when the server says so), 5xx permanent
(``auth`` for 530/534/535/538). aiosmtplib raises ``SMTPRecipientsRefused`` only when every
recipient is refused; a partial refusal is reported in the receipt and logged, not
raised: retrying would send the message again to everyone who already has it, and a
refused address is almost always a permanent problem of that address.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any

import aiosmtplib

from notifier.channels.base import (
    DeliveryError,
    FailureReason,
    PermanentError,
    Receipt,
    RetryableError,
)
from notifier.channels.classify import redact
from notifier.channels.html_text import html_to_text
from notifier.channels.mail_headers import header_problem
from notifier.config import EmailChannel as EmailConfig
from notifier.digest import template_for
from notifier.notification import Notification
from notifier.templates import FALLBACK_HTML, FALLBACK_TEXT, Renderer, template_context
from notifier.untrusted import header_text

log = logging.getLogger(__name__)

# The config's default subject doubles as the fallback when a custom one fails to render.
FALLBACK_SUBJECT: str = EmailConfig.model_fields["subject"].default
AUTH_CODES = frozenset({530, 534, 535, 538})
_RATE_LIMIT_WORDS = re.compile(r"rate|too many|limit|throttl", re.IGNORECASE)


class UnsafeHeaderError(ValueError):
    """A composed header that would not be written as one line (see ``mail_headers``)."""


def tls_context(config: EmailConfig) -> ssl.SSLContext | None:
    """The TLS context for ``starttls`` and ``tls``: the system's CAs, or the configured ``ca``
    (PEM, usually read from ``ca_file`` at config load)."""
    if config.security == "none":
        return None
    return ssl.create_default_context(cadata=config.ca)


def _temporary_reason(code: int, message: str) -> FailureReason:
    if code == 421 or _RATE_LIMIT_WORDS.search(message):
        return FailureReason.RATE_LIMITED
    return FailureReason.SERVER_ERROR


def error_for_reply(code: int, what: str, message: str) -> DeliveryError:
    """An SMTP error reply as a delivery error: 4xx retryable, 5xx permanent."""
    text = f"{what} {code} {message}".rstrip()
    if 400 <= code < 500:
        return RetryableError(_temporary_reason(code, message), text)
    if code in AUTH_CODES:
        return PermanentError(FailureReason.AUTH, text)
    if 500 <= code < 600:
        return PermanentError(FailureReason.CLIENT_ERROR, text)
    return RetryableError(FailureReason.OTHER, text)


class EmailChannel:
    type = "email"

    def __init__(
        self,
        name: str,
        config: EmailConfig,
        renderer: Renderer,
        *,
        timeout: float,
        clock: Callable[[], float],
        tls: ssl.SSLContext | None,
    ) -> None:
        self.name = name
        self._config = config
        self._renderer = renderer
        self._timeout = timeout
        self._clock = clock
        self._tls = tls
        self._password = config.password.get_secret_value() if config.password else ""
        self._peer = f"smtp {config.host}:{config.port}"
        self._domain = parseaddr(config.from_)[1].rpartition("@")[2] or "notifier.invalid"
        self._local_hostname: str | None = None

    def compose(self, notification: Notification) -> EmailMessage:
        """The message as sent: rendered subject, a text part and (HTML templates) an HTML part."""
        config = self._config
        context = template_context(
            notification, self.type, notification.alerts[: config.max_alerts]
        )
        subject = self._renderer.render_string(config.subject, context, FALLBACK_SUBJECT).text
        template = template_for(notification, config)
        is_html = template.endswith((".html", ".htm"))
        body = self._renderer.render_file(
            template, context, FALLBACK_HTML if is_html else FALLBACK_TEXT
        ).text
        if config.text_template is not None and notification.digest is None:
            text = self._renderer.render_file(config.text_template, context, FALLBACK_TEXT).text
        else:
            text = html_to_text(body) if is_html else body

        message = EmailMessage()
        message["From"] = config.from_
        message["To"] = ", ".join(config.to)
        # Rendered from untrusted labels: one line, no controls, no RFC 2047 encoded words.
        message["Subject"] = header_text(subject)
        message["Date"] = formatdate(self._clock(), usegmt=True)
        # Stable per job: a retry carries the same Message-ID, so mail systems can drop the repeat.
        message["Message-ID"] = (
            f"<{re.sub(r'[^A-Za-z0-9.-]', '', notification.job_id)}@{self._domain}>"
        )
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text)
        if is_html:
            message.add_alternative(body, subtype="html")
        self._check_headers(message, context, notification.status)
        return message

    def _check_headers(
        self, message: EmailMessage, context: Mapping[str, Any], status: str
    ) -> None:
        """Replace a subject that would not be written as one header line.

        Bad data, not a bad server: the default subject is sent instead (logged and counted
        as a template fallback), or a constant one if that fails too, so the alert still
        goes out rather than failing or being retried. A header that still fails comes
        from the config (``from``), which no retry fixes.
        """
        problem = header_problem(message)
        if problem is None:
            return
        fallback = self._renderer.fall_back(
            "subject", UnsafeHeaderError(problem), FALLBACK_SUBJECT, context
        )
        for subject in (header_text(fallback.text), f"[{status.upper()}] alerts"):
            message.replace_header("Subject", subject)
            problem = header_problem(message)
            if problem is None:
                return
        raise PermanentError(FailureReason.CLIENT_ERROR, f"{self._peer}: cannot send: {problem}")

    def preview(self, notification: Notification) -> str:
        message = self.compose(notification)
        head = "\n".join(f"{key}: {message[key]}" for key in ("From", "To", "Subject"))
        parts = [
            f"--- {part.get_content_type()} ---\n{part.get_content()}"
            for part in message.walk()
            if not part.is_multipart()
        ]
        return head + "\n\n" + "\n".join(parts)

    async def send(self, notification: Notification) -> Receipt:
        message = self.compose(notification)
        config = self._config
        try:
            async with asyncio.timeout(self._timeout):
                if self._local_hostname is None:
                    self._local_hostname = await asyncio.to_thread(socket.getfqdn)
                refused, answer = await aiosmtplib.send(
                    message,
                    hostname=config.host,
                    port=config.port,
                    username=config.username,
                    password=self._password if config.username is not None else None,
                    use_tls=config.security == "tls",
                    start_tls=config.security == "starttls",
                    tls_context=self._tls,
                    local_hostname=self._local_hostname,
                    timeout=self._timeout,
                )
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            raise self._error(exc) from None
        detail = f"{self._peer} accepted: {redact(answer, [self._password])}"
        if refused:
            listed = "; ".join(
                f"{rcpt} ({reply.code} {reply.message})" for rcpt, reply in refused.items()
            )
            log.warning(
                "smtp server refused some recipients",
                extra={"channel": self.name, "refused": listed},
            )
            detail += (
                f"; refused {len(refused)} of {len(config.to)}: {redact(listed, [self._password])}"
            )
        return Receipt(self.name, detail)  # the server's answer, redacted, is in the detail

    def _error(self, exc: BaseException) -> DeliveryError:
        secrets = [self._password]
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
            # Permanent when any refusal is: retrying cannot reach that address.
            permanent = [r for r in exc.recipients if r.code >= 500]
            reply = permanent[0] if permanent else exc.recipients[0]
            what = f"{self._peer} refused all {len(exc.recipients)} recipients:"
            return error_for_reply(reply.code, what, redact(reply.message, secrets))
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            text = f"{self._peer} refused AUTH: {exc.code} {redact(exc.message, secrets)}"
            if 400 <= exc.code < 500:
                return RetryableError(FailureReason.AUTH, text)
            return PermanentError(FailureReason.AUTH, text)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return error_for_reply(exc.code, f"{self._peer} answered", redact(exc.message, secrets))
        if isinstance(exc, TimeoutError):
            return RetryableError(
                FailureReason.TIMEOUT, f"{self._peer}: no answer within {self._timeout:g}s"
            )
        # aiosmtplib raises the bare base class when the server lacks STARTTLS or AUTH
        # (or a usable AUTH mechanism): a mismatch with our settings, not a passing fault.
        if type(exc) is aiosmtplib.SMTPException or isinstance(exc, aiosmtplib.SMTPNotSupported):
            return PermanentError(
                FailureReason.CLIENT_ERROR, f"{self._peer}: {redact(exc.message, secrets)}"
            )
        if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
            exc = exc.__cause__
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentError(
                FailureReason.CLIENT_ERROR,
                f"{self._peer}: TLS certificate not trusted ({exc.verify_message})",
            )
        if isinstance(
            exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected | OSError
        ):
            return RetryableError(
                FailureReason.CONNECTION, f"{self._peer}: connection failed ({type(exc).__name__})"
            )
        if isinstance(exc, ValueError):
            return PermanentError(
                FailureReason.CLIENT_ERROR,
                f"{self._peer}: cannot send: {redact(str(exc), secrets)}",
            )
        return RetryableError(FailureReason.OTHER, f"{self._peer}: {type(exc).__name__}")

    async def close(self) -> None:
        """Nothing to close: each send opens and closes its own SMTP connection."""
