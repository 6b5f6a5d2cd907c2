"""The four local stand-ins a running notifier delivers to, and the config that points at them.

``stand_ins()`` starts, in the test's event loop on 127.0.0.1: an aiosmtpd SMTP server
(the email channel tests' ``Mailbox``), the Slack Web API fake (bot token mode), the
Twilio Messages fake and a webhook sink. ``StandIns.channels()`` is the ``channels:``
section of a notifier config that uses them; ``write_config`` writes a whole config.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from notifier.testing import TEMPLATES_DIR
from tests.fakes.slack_api import FakeSlack
from tests.fakes.smtp_server import Mailbox, smtp_server
from tests.fakes.twilio_api import FakeTwilio
from tests.processes import TOKEN, WebhookSink, serve_app

TEMPLATES = Path(TEMPLATES_DIR)

EMAIL, SLACK, SMS, WEBHOOK = "ops-email", "alerts-slack", "oncall-sms", "ops-webhook"
ALL_CHANNELS = (SMS, SLACK, EMAIL, WEBHOOK)
SEVERITY_ROUTES: list[dict[str, Any]] = [
    {"name": "critical", "matchers": ['severity="critical"'], "channels": list(ALL_CHANNELS)},
    {"name": "warning", "matchers": ['severity="warning"'], "channels": [SLACK, EMAIL]},
]


@dataclass
class StandIns:
    mailbox: Mailbox
    smtp_port: int
    slack: FakeSlack
    slack_url: str
    twilio: FakeTwilio
    twilio_url: str
    sink: WebhookSink
    sink_url: str

    def channels(self, *, smtp_port: int | None = None) -> dict[str, dict[str, Any]]:
        """The four channels; ``smtp_port`` overrides the SMTP server's (a dead port)."""
        return {
            EMAIL: {
                "type": "email",
                "host": "127.0.0.1",
                "port": smtp_port or self.smtp_port,
                "security": "none",
                "from": "alerts@example.com",
                "to": ["ops@example.com"],
            },
            SLACK: {
                "type": "slack",
                "token": self.slack.token,
                "channel": "#alerts",
                "api_url": f"{self.slack_url}/api/",
            },
            SMS: {
                "type": "sms",
                "account_sid": self.twilio.account_sid,
                "auth_token": self.twilio.auth_token,
                "from": "+15005550006",
                "to": ["+15551234567"],
                "api_url": self.twilio_url,
            },
            WEBHOOK: {"type": "webhook", "url": f"{self.sink_url}/hook"},
        }

    def slack_posts(self) -> list[Any]:
        """Messages posted to the channel (thread replies left out)."""
        return [r for r in self.slack.calls("chat.postMessage") if not r.body.get("thread_ts")]

    def counts(self) -> dict[str, int]:
        """Notifications each stand-in received: mails, Slack posts, SMS, webhook requests."""
        return {
            EMAIL: len(self.mailbox.messages),
            SLACK: len(self.slack_posts()),
            SMS: len(self.twilio.delivered),
            WEBHOOK: len(self.sink.requests),
        }

    def subjects(self) -> list[str]:
        return [str(message["Subject"]) for _, message, _ in self.mailbox.messages]


@asynccontextmanager
async def stand_ins(sink: WebhookSink | None = None) -> AsyncIterator[StandIns]:
    mailbox, slack, twilio = Mailbox(), FakeSlack(), FakeTwilio()
    sink = sink or WebhookSink()
    async with (
        smtp_server(mailbox) as smtp_port,
        serve_app(slack.app()) as slack_url,
        serve_app(twilio.app()) as twilio_url,
        serve_app(sink.app()) as sink_url,
    ):
        yield StandIns(mailbox, smtp_port, slack, slack_url, twilio, twilio_url, sink, sink_url)


def write_config(
    path: Path,
    channels: Mapping[str, Mapping[str, Any]],
    routes: Sequence[Mapping[str, Any]] = (),
    *,
    default_channels: Sequence[str] = (),
    token: str = TOKEN,
    storage: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
) -> Path:
    """A notifier config for tests: SQLite next to the file, short timeouts and backoff."""
    document = {
        "server": {"auth": {"bearer_token": token}, **(server or {})},
        "storage": {"url": "sqlite:///data/notifier.db", "lease": "5s", **(storage or {})},
        "templates_dir": str(TEMPLATES),
        "defaults": {
            "repeat_interval": "1h",
            "timeout": "2s",
            "retry": {"initial_backoff": "200ms", "max_backoff": "1s", "max_age": "1h"},
            **(defaults or {}),
        },
        "channels": {name: dict(channel) for name, channel in channels.items()},
        "routes": [dict(route) for route in routes],
        "default_channels": list(default_channels),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
