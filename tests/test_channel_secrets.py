"""No channel leaks a secret: every channel is configured with distinctive secrets and
pointed at local peers that refuse it (some echoing the secret back); every error's
str/repr/traceback, every log record (DEBUG included) and all output are searched."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from notifier.channels.base import DeliveryError
from notifier.channels.registry import open_channels
from notifier.store.memory import MemoryStore
from notifier.templates import Renderer
from tests.channel_support import fixture, free_port, load, notification
from tests.fakes.slack_api import WEBHOOK, FakeSlack, Scripted
from tests.fakes.twilio_api import FakeTwilio, TwilioError

SMTP_PASSWORD = "smtp-pw-Zq81xPk3"
SLACK_TOKEN = "xoxb-secret-Kd92mWa7"
SLACK_HOOK = "hook-secret-Jp47vNe2"
TWILIO_TOKEN = "twilio-token-Lw63qRf9"
HMAC_SECRET = "hmac-secret-Tx55bEu4"
HEADER_TOKEN = "header-bearer-Yc18uFo6"
PEER_LOGGERS = ("mail.log", "aiohttp.access", "aiohttp.server", "aiohttp.web")
SECRETS = (SMTP_PASSWORD, SLACK_TOKEN, SLACK_HOOK, TWILIO_TOKEN, HMAC_SECRET, HEADER_TOKEN)


def _refuse_echoing(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    password = data.password.decode() if data is not None else ""
    return AuthResult(success=False, handled=False, message=f"535 5.7.8 bad password {password}")


@asynccontextmanager
async def refusing_smtp() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            None,
            hostname="localhost",
            authenticator=_refuse_echoing,
            auth_require_tls=False,
            loop=loop,
        ),
        "127.0.0.1",
        0,
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _echo(request: web.Request) -> web.Response:
    """A webhook receiver that refuses and quotes the whole request back."""
    body = (await request.read()).decode()
    return web.Response(status=400, text=f"rejected {dict(request.headers)} {request.url} {body}")


@pytest.fixture
async def peers(aiohttp_server: Any) -> dict[str, Any]:
    slack = FakeSlack(token="xoxb-the-right-one")
    twilio = FakeTwilio(auth_token="the-right-one")
    echo = web.Application()
    echo.router.add_route("*", "/{path:.*}", _echo)
    return {
        "slack": (slack, await aiohttp_server(slack.app())),
        "twilio": (twilio, await aiohttp_server(twilio.app())),
        "echo": await aiohttp_server(echo),
    }


def _channels(smtp_port: int, peers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    slack_server: TestServer = peers["slack"][1]
    twilio: FakeTwilio = peers["twilio"][0]
    twilio_server: TestServer = peers["twilio"][1]
    echo: TestServer = peers["echo"]
    hook_url = str(slack_server.make_url(f"/services/T0/B0/{SLACK_HOOK}"))
    mail = {
        "type": "email",
        "host": "127.0.0.1",
        "security": "none",
        "username": "alerts",
        "password": SMTP_PASSWORD,
        "from": "alerts@example.com",
        "to": ["ops@example.com"],
    }
    return {
        "mail": {**mail, "port": smtp_port},
        "mail-down": {**mail, "port": free_port()},
        "bot": {
            "type": "slack",
            "token": SLACK_TOKEN,
            "channel": "#alerts",
            "api_url": str(slack_server.make_url("/api/")),
        },
        "bot-down": {
            "type": "slack",
            "token": SLACK_TOKEN,
            "channel": "#alerts",
            "api_url": f"http://127.0.0.1:{free_port()}/api/",
        },
        "hook-slack": {"type": "slack", "webhook_url": hook_url},
        "hook-slack-2": {"type": "slack", "webhook_url": hook_url},
        "hook-slack-down": {
            "type": "slack",
            "webhook_url": f"http://127.0.0.1:{free_port()}/services/T0/B0/{SLACK_HOOK}",
        },
        "sms": {
            "type": "sms",
            "account_sid": twilio.account_sid,
            "auth_token": TWILIO_TOKEN,
            "from": "+15005550006",
            "to": ["+12025550123"],
            "api_url": str(twilio_server.make_url("/")),
        },
        "sms-2": {
            "type": "sms",
            "account_sid": twilio.account_sid,
            "auth_token": TWILIO_TOKEN,
            "from": "+15005550006",
            "to": ["+12025550123"],
            "api_url": str(twilio_server.make_url("/")),
        },
        "hook": {
            "type": "webhook",
            "url": str(echo.make_url("/in")),
            "hmac_secret": HMAC_SECRET,
            "headers": {"Authorization": f"Bearer {HEADER_TOKEN}"},
        },
        "hook-down": {
            "type": "webhook",
            "url": f"http://127.0.0.1:{free_port()}/in",
            "hmac_secret": HMAC_SECRET,
            "headers": {"Authorization": f"Bearer {HEADER_TOKEN}"},
        },
    }


async def test_no_secret_in_errors_logs_or_output(
    tmp_path: Path,
    peers: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    slack: FakeSlack = peers["slack"][0]
    twilio: FakeTwilio = peers["twilio"][0]
    # Peers that quote the secret back in their refusal.
    # The first Slack webhook and SMS requests meet peers that quote the secret back; the
    # second ones meet the real refusals (unknown webhook, wrong auth token).
    slack.script(WEBHOOK, Scripted(status=400, text=f"bad hook {SLACK_HOOK}"))
    twilio.script(TwilioError(400, 21211, f"bad token {TWILIO_TOKEN}"))
    haystack: list[str] = []

    async with refusing_smtp() as smtp_port:
        loaded = load(tmp_path, _channels(smtp_port, peers))
        channels = await open_channels(loaded, Renderer(loaded.templates_dir), MemoryStore())
        try:
            failures = 0
            for name in channels:
                note = notification(loaded, name, fixture("firing_single"))
                haystack.append(channels[name].preview(note))
                try:
                    haystack.append(repr(await channels[name].send(note)))
                except DeliveryError as exc:
                    failures += 1
                    haystack += [str(exc), repr(exc), exc.message]
                    haystack.append("".join(traceback.format_exception(exc)))
        finally:
            await channels.aclose()

    assert failures == len(channels)
    # The fake peers run in this process: their own logs (they see the secrets) are not ours.
    ours = [r for r in caplog.records if not r.name.startswith(PEER_LOGGERS)]
    assert any(r.name.startswith(("twilio", "notifier")) for r in ours)
    haystack += [str(record.__dict__) for record in ours]
    out = capsys.readouterr()
    haystack += [out.out, out.err]
    everything = "\n".join(haystack)
    assert "535" in everything and "invalid_auth" in everything and "20003" in everything
    assert "<redacted>" in everything  # the echoing peers were quoted, redacted
    leaked = [secret for secret in SECRETS if secret in everything]
    assert leaked == []
