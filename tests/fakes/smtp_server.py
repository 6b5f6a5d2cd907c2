"""A local SMTP server for tests: real aiosmtpd on 127.0.0.1 that records what it accepts.

The email channel's tests and the end-to-end stand-ins both use it. Refusals can be
scripted per recipient (``refuse_rcpt``) and per message (``data_answers``); AUTH
accepts ``USER``/``PASSWORD`` only.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER, PASSWORD = "alerts", "smtp-test-password"


class Mailbox:
    """An aiosmtpd handler: records accepted messages, refuses as scripted."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage, bool]] = []  # (envelope, message, tls)
        self.refuse_rcpt: dict[str, str] = {}
        self.data_answers: deque[str] = deque()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_answers:
            return self.data_answers.popleft()
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        tls = server.transport is not None and server.transport.get_extra_info("ssl_object")
        self.messages.append((envelope, message, bool(tls)))
        return "250 2.0.0 queued as 4711"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data == (USER.encode(), PASSWORD.encode())
    # handled=False: aiosmtpd then sends the 235/535 answer itself.
    return AuthResult(success=ok, handled=False)


@asynccontextmanager
async def smtp_server(
    mailbox: Mailbox,
    *,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    auth: bool = False,
) -> AsyncIterator[int]:
    """A real aiosmtpd server in this event loop on 127.0.0.1; yields its port."""
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(
            mailbox,
            hostname="localhost",
            tls_context=starttls,
            require_starttls=starttls is not None,
            authenticator=_authenticate if auth else None,
            auth_required=auth,
            # aiosmtpd only knows about STARTTLS; an implicit-TLS transport is encrypted too.
            auth_require_tls=starttls is not None,
            loop=loop,
        )

    server = await loop.create_server(protocol, "127.0.0.1", 0, ssl=implicit_tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
