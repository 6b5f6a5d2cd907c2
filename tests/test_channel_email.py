"""The email channel against a real SMTP server (aiosmtpd) on 127.0.0.1: plain, STARTTLS,
implicit TLS with a throwaway CA (trustme), AUTH, and the server's refusals."""

from __future__ import annotations

import email.errors
import re
import shutil
import ssl
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import Envelope

import notifier.channels.email
from notifier.channels.base import Channel, FailureReason, PermanentError, RetryableError
from notifier.channels.email import error_for_reply
from notifier.channels.html_text import html_to_text
from notifier.channels.registry import Channels, open_channels
from notifier.config import LoadedConfig
from notifier.payload import WebhookPayload
from notifier.store.memory import MemoryStore
from notifier.templates import Renderer
from tests.channel_support import (
    FIXTURE_NAMES,
    TEMPLATES,
    fixture,
    free_port,
    load,
    notification,
    payload,
    silent_server,
)
from tests.fakes.smtp_server import PASSWORD, USER, Mailbox, smtp_server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


Opener = Callable[..., Any]


@pytest.fixture
async def open_mail(tmp_path: Path) -> AsyncIterator[Opener]:
    """Open an email channel named ``mail`` on 127.0.0.1:port with these settings."""
    opened: list[Channels] = []

    async def open_mail(
        port: int, templates: Path = TEMPLATES, **settings: Any
    ) -> tuple[LoadedConfig, Channel]:
        config = {
            "type": "email",
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from": "Alerts <alerts@example.com>",
            "to": ["ops@example.com", "oncall@example.com"],
            **settings,
        }
        loaded = load(tmp_path, {"mail": config}, templates=templates)
        channels = await open_channels(
            loaded, Renderer(loaded.templates_dir), MemoryStore(), clock=lambda: 1_800_000_000.0
        )
        opened.append(channels)
        return loaded, channels["mail"]

    yield open_mail
    for channels in opened:
        await channels.aclose()


def _parts(message: EmailMessage) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_content()
        for part in message.walk()
        if not part.is_multipart()
    }


async def test_plain_smtp_sends_multipart_text_and_html(open_mail: Opener) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port)
        note = notification(loaded, "mail", fixture("grouped_firing_4_alerts"))
        receipt = await channel.send(note)

    envelope, message, tls = mailbox.messages[0]
    assert envelope.mail_from == "alerts@example.com"
    assert envelope.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    assert not tls
    assert message["Subject"] == "[FIRING] HighCPUUsage"
    assert message["To"] == "ops@example.com, oncall@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert note.job_id in message["Message-ID"]
    assert message.get_content_type() == "multipart/alternative"
    parts = _parts(message)
    assert "FIRING: HighCPUUsage" in parts["text/html"]
    assert parts["text/html"].count("HighCPUUsage &middot; firing") == 4
    assert "Severity: warning" in parts["text/plain"]
    assert "<" not in parts["text/plain"].replace("<http", "")
    assert "queued as 4711" in receipt.detail


async def test_starttls_with_a_private_ca(
    open_mail: Opener, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, starttls=server_tls) as port:
        loaded, channel = await open_mail(port, security="starttls", ca_file=ca_file)
        await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert [tls for _, _, tls in mailbox.messages] == [True]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls_with_auth(
    open_mail: Opener, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, implicit_tls=server_tls, auth=True) as port:
        loaded, channel = await open_mail(
            port, security="tls", ca_file=ca_file, username=USER, password=PASSWORD
        )
        await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert [tls for _, _, tls in mailbox.messages] == [True]


async def test_ca_file_is_relative_to_the_config_file(
    open_mail: Opener, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, implicit_tls=server_tls) as port:
        loaded, channel = await open_mail(port, security="tls", ca_file=Path(ca_file).name)
        await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert len(mailbox.messages) == 1


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_untrusted_certificate_is_refused(
    open_mail: Opener, server_tls: ssl.SSLContext, tmp_path: Path, security: str
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    implicit = security == "tls"
    async with smtp_server(
        Mailbox(),
        implicit_tls=server_tls if implicit else None,
        starttls=None if implicit else server_tls,
    ) as port:
        loaded, channel = await open_mail(port, security=security, ca_file=str(other))
        with pytest.raises(PermanentError, match="TLS certificate not trusted") as caught:
            await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert caught.value.reason == FailureReason.CLIENT_ERROR


async def test_starttls_required_but_not_offered_is_permanent(open_mail: Opener) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port, security="starttls")
        with pytest.raises(PermanentError, match="STARTTLS") as caught:
            await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert caught.value.reason == FailureReason.CLIENT_ERROR
    assert mailbox.messages == []


async def test_auth_failure_is_permanent_auth(
    open_mail: Opener, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, starttls=server_tls, auth=True) as port:
        loaded, channel = await open_mail(
            port, security="starttls", ca_file=ca_file, username=USER, password="wrong-password"
        )
        with pytest.raises(PermanentError) as caught:
            await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert caught.value.reason == FailureReason.AUTH
    assert "535" in str(caught.value)
    assert "wrong-password" not in repr(caught.value)
    assert mailbox.messages == []


async def test_451_at_data_is_retryable(open_mail: Opener) -> None:
    mailbox = Mailbox()
    mailbox.data_answers.append("451 4.3.0 Mail server temporarily rejected message")
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port)
        with pytest.raises(RetryableError, match="451") as caught:
            await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert caught.value.reason == FailureReason.SERVER_ERROR


async def test_550_for_every_recipient_is_permanent(open_mail: Opener) -> None:
    mailbox = Mailbox()
    mailbox.refuse_rcpt = {
        "ops@example.com": "550 5.1.1 No such user",
        "oncall@example.com": "550 5.1.1 No such user",
    }
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port)
        with pytest.raises(PermanentError, match="refused all 2 recipients") as caught:
            await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert caught.value.reason == FailureReason.CLIENT_ERROR


async def test_partial_refusal_is_delivered_and_reported(
    open_mail: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    mailbox = Mailbox()
    mailbox.refuse_rcpt = {"oncall@example.com": "550 5.1.1 No such user"}
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port)
        receipt = await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert mailbox.messages[0][0].rcpt_tos == ["ops@example.com"]
    assert "refused 1 of 2: oncall@example.com (550" in receipt.detail
    assert any("refused some recipients" in r.getMessage() for r in caplog.records)


async def test_labels_are_escaped_in_the_html_part(open_mail: Opener) -> None:
    mailbox = Mailbox()
    hostile = payload(
        {
            "labels": {
                "alertname": "XSS",
                "severity": "critical",
                "instance": "<script>x</script>",
            },
            "annotations": {"summary": "<img src=x onerror=alert(1)>"},
        }
    )
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port)
        await channel.send(notification(loaded, "mail", hostile))

    html = _parts(mailbox.messages[0][1])["text/html"]
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>" not in html and "<img" not in html


async def test_a_broken_html_template_falls_back_escaped(
    open_mail: Opener, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "broken.html").write_text(
        "<p>{{ alerts[0].labels.alertname | no_such_filter }}</p>"
    )
    mailbox = Mailbox()
    hostile = payload({"labels": {"alertname": "<script>x</script>", "severity": "critical"}})
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port, templates=templates, template="broken.html")
        await channel.send(notification(loaded, "mail", hostile))

    html = _parts(mailbox.messages[0][1])["text/html"]
    assert html.startswith("<pre>") and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>" not in html
    assert any("template failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
async def test_every_fixture_renders_without_fallback(
    open_mail: Opener, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    loaded, channel = await open_mail(free_port())

    preview = channel.preview(notification(loaded, "mail", fixture(name)))

    assert "<!doctype html>" in preview
    assert not [r for r in caplog.records if "template failed" in r.getMessage()]


async def test_max_alerts_lists_only_the_first(open_mail: Opener) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port, max_alerts=2)
        await channel.send(notification(loaded, "mail", fixture("synthetic_10_alerts")))

    html = _parts(mailbox.messages[0][1])["text/html"]
    assert html.count("<table") == 2
    assert "8 more not listed" in html


async def test_text_template_gives_the_text_part(open_mail: Opener) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port, text_template="critical_alert.txt")
        await channel.send(notification(loaded, "mail", fixture("firing_single")))

    text = _parts(mailbox.messages[0][1])["text/plain"]
    assert text.startswith("[FIRING] InstanceDown critical:")


async def test_a_subject_cannot_inject_headers(open_mail: Opener) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port, subject="{{ alerts[0].labels.alertname }}")
        sneaky = payload({"labels": {"alertname": "A\r\nBcc: evil@example.com"}})
        await channel.send(notification(loaded, "mail", sneaky))

    envelope, message, _ = mailbox.messages[0]
    assert message["Subject"] == "A Bcc: evil@example.com"
    assert message["Bcc"] is None
    assert "evil@example.com" not in envelope.rcpt_tos


def _hostile_name(name: str, **alert: Any) -> WebhookPayload:
    """One firing alert named ``name``, also as the common label the default subject uses."""
    built = payload({"labels": {"alertname": name, "severity": "critical"}, **alert})
    return built.model_copy(update={"common_labels": {"alertname": name}})


def _header_lines(envelope: Envelope) -> list[bytes]:
    """The header block exactly as the server received it, one entry per line."""
    assert isinstance(envelope.content, bytes)
    head, blank, _ = envelope.content.partition(b"\r\n\r\n")
    assert blank
    return head.split(b"\r\n")


BCC_WORD = "=?utf-8?q?X=0D=0ABcc:_attacker@evil.example?="
BODY_WORD = "=?utf-8?q?X=0D=0A=0D=0AYour_password_expired,_log_in_at_evil.example?="


@pytest.mark.parametrize("name", [BCC_WORD, BODY_WORD])
async def test_an_encoded_word_in_a_label_adds_no_header_and_keeps_our_body(
    open_mail: Opener, name: str
) -> None:
    """Python 3.11.7 decodes RFC 2047 words in a header value and writes CR/LF out raw."""
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port)
        await channel.send(notification(loaded, "mail", _hostile_name(name)))

    envelope, message, _ = mailbox.messages[0]
    sent = ["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted"]
    assert message.keys() == [*sent, "MIME-Version", "Content-Type"]
    assert message["Bcc"] is None
    assert envelope.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    assert message["Subject"] == "[FIRING] " + name.replace("=?", "= ?")
    assert message.get_content_type() == "multipart/alternative"
    assert _parts(message)["text/plain"].startswith(f"FIRING: {name}")  # our body, inert text
    assert all(line[:1] in b" \t" or b": " in line for line in _header_lines(envelope))


async def test_controls_and_nul_never_reach_a_header(open_mail: Opener) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port)
        name = "Disk\x00Full\x1b[2J\u202eelif\u200b\r\nX-Evil: 1"
        await channel.send(notification(loaded, "mail", _hostile_name(name)))

    envelope, message, _ = mailbox.messages[0]
    assert message["Subject"] == "[FIRING] DiskFull[2Jelif X-Evil: 1"
    assert message["X-Evil"] is None
    assert not [line for line in _header_lines(envelope) if re.search(rb"[\x00-\x08\x1b]", line)]


@pytest.mark.skipif(
    hasattr(email.errors, "HeaderWriteError"), reason="this Python writes encoded words safely"
)
@pytest.mark.parametrize(
    ("common_name", "subject"),
    [("DiskFull", "[FIRING] DiskFull"), (BCC_WORD, "[FIRING] alerts")],
)
async def test_a_subject_written_unsafely_falls_back_to_the_default(
    open_mail: Opener,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    common_name: str,
    subject: str,
) -> None:
    """The check after cleaning: were the cleaning to miss something, the configured
    default subject goes out instead (a constant one if the default is unsafe too)."""
    monkeypatch.setattr(notifier.channels.email, "header_text", lambda value: value)  # a gap
    mailbox = Mailbox()
    hostile = _hostile_name(BCC_WORD).model_copy(
        update={"common_labels": {"alertname": common_name}}
    )
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port, subject="{{ alerts[0].labels.alertname }}")
        await channel.send(notification(loaded, "mail", hostile))

    _, message, _ = mailbox.messages[0]
    assert message["Subject"] == subject
    assert message["Bcc"] is None
    assert any(
        "template failed" in r.getMessage() and getattr(r, "template", "") == "subject"
        for r in caplog.records
    )


async def test_a_from_header_that_cannot_be_written_is_permanent(open_mail: Opener) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port, **{"from": "=?utf-8?q?A=00?= <a@example.com>"})
        with pytest.raises(PermanentError, match="From: holds a bare CR, LF or NUL") as caught:
            await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert caught.value.reason == FailureReason.CLIENT_ERROR
    assert mailbox.messages == []


def _linked(url: str) -> WebhookPayload:
    """One alert with ``url`` as its generatorURL, runbook_url annotation and externalURL."""
    built = payload(
        {
            "labels": {"alertname": "Links", "severity": "critical"},
            "annotations": {"runbook_url": url},
        }
    )
    alert = built.alerts[0].model_copy(update={"generator_url": url})
    return built.model_copy(update={"external_url": url, "alerts": [alert]})


@pytest.mark.parametrize(
    ("url", "links"),
    [
        ("https://prometheus.example/graph?g0.expr=up", ["Graph", "Runbook", "Alertmanager"]),
        ("javascript:alert(1)", []),
        ("JaVaScRiPt:alert(1)", []),
        ("data:text/html,<script>alert(1)</script>", []),
    ],
)
async def test_only_http_urls_become_links_in_html_mail(
    open_mail: Opener, url: str, links: list[str]
) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        loaded, channel = await open_mail(port)
        await channel.send(notification(loaded, "mail", _linked(url)))

    html = _parts(mailbox.messages[0][1])["text/html"]
    anchors = re.findall(r'<a href="([^"]*)">([^<]*)</a>', html)
    assert [text for _, text in anchors] == links
    assert all(href == url.replace("&", "&amp;") for href, _ in anchors)
    assert html.count("<a ") == len(links)


async def test_connection_refused_is_retryable(open_mail: Opener) -> None:
    loaded, channel = await open_mail(free_port())

    with pytest.raises(RetryableError, match="connection failed") as caught:
        await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert caught.value.reason == FailureReason.CONNECTION


async def test_a_silent_server_times_out(open_mail: Opener) -> None:
    async with silent_server() as port:
        loaded, channel = await open_mail(port, timeout="200ms")
        with pytest.raises(RetryableError) as caught:
            await channel.send(notification(loaded, "mail", fixture("firing_single")))

    assert caught.value.reason == FailureReason.TIMEOUT


async def test_preview_shows_headers_and_both_parts(open_mail: Opener) -> None:
    loaded, channel = await open_mail(free_port(), password="never-shown", username=USER)

    preview = channel.preview(notification(loaded, "mail", fixture("resolved_single")))

    assert preview.startswith("From: Alerts <alerts@example.com>\nTo: ops@example.com")
    assert "Subject: [RESOLVED] InstanceDown" in preview
    assert "--- text/plain ---" in preview and "--- text/html ---" in preview
    assert "never-shown" not in preview


@pytest.mark.parametrize(
    ("code", "message", "error", "reason"),
    [
        (421, "4.7.0 Too many connections, try later", RetryableError, FailureReason.RATE_LIMITED),
        (450, "4.2.1 Rate limit exceeded", RetryableError, FailureReason.RATE_LIMITED),
        (451, "4.3.0 Local error in processing", RetryableError, FailureReason.SERVER_ERROR),
        (452, "4.3.1 Insufficient system storage", RetryableError, FailureReason.SERVER_ERROR),
        (454, "4.7.0 TLS not available", RetryableError, FailureReason.SERVER_ERROR),
        (550, "5.1.1 No such user", PermanentError, FailureReason.CLIENT_ERROR),
        (552, "5.3.4 Message too big", PermanentError, FailureReason.CLIENT_ERROR),
        (554, "5.7.1 Rejected as spam", PermanentError, FailureReason.CLIENT_ERROR),
        (530, "5.7.0 Authentication required", PermanentError, FailureReason.AUTH),
        (535, "5.7.8 Authentication credentials invalid", PermanentError, FailureReason.AUTH),
        (-1, "Malformed reply", RetryableError, FailureReason.OTHER),
    ],
)
def test_reply_table(
    code: int, message: str, error: type[Exception], reason: FailureReason
) -> None:
    result = error_for_reply(code, "smtp host:25 answered", message)
    assert type(result) is error
    assert result.reason == reason
    assert str(code) in str(result)


def test_html_to_text_keeps_rows_links_and_entities() -> None:
    html = (
        "<html><head><title>t</title><style>p {}</style></head><body>"
        "<h2>FIRING &amp; loud</h2><table><tr><td>Severity</td><td>critical</td></tr>"
        '<tr><td>Links</td><td><a href="http://g.example/x?a=1&amp;b=2">Graph</a></td></tr>'
        "</table><script>alert(1)</script><p>line<br>break</p></body></html>"
    )
    assert html_to_text(html) == (
        "FIRING & loud\n\nSeverity: critical\nLinks: Graph (http://g.example/x?a=1&b=2)\n\n"
        "line\nbreak\n"
    )
