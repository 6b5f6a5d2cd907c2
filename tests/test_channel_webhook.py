"""The webhook channel against a real local HTTP receiver; the registry that opens every channel."""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import random
import ssl
import warnings
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer

from notifier import __version__
from notifier.channels.base import FailureReason, PermanentError, RetryableError
from notifier.channels.curl import MAX_ANSWER_BYTES, CurlSession
from notifier.channels.registry import ChannelOpenError, Channels, open_channels
from notifier.config import LoadedConfig
from notifier.dedup import plan_notifications
from notifier.delivery import Deliverer, Lane, LaneSettings
from notifier.metrics import Metrics
from notifier.payload import WebhookPayload
from notifier.store.memory import MemoryStore
from notifier.templates import Renderer
from tests.channel_support import (
    NOW,
    fixture,
    free_port,
    load,
    notification,
    silent_server,
)


class Receiver:
    """A webhook receiver that records each request and answers as scripted."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.answers: list[web.Response] = []
        self.peers: list[object] = []  # each request's client address
        self.hosts: list[str] = []  # each request's Host

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, dict(request.headers), await request.read()))
        self.peers.append(request.transport and request.transport.get_extra_info("peername"))
        self.hosts.append(request.host)
        if request.path == "/moved-here":
            return web.Response(status=200)
        return self.answers.pop(0) if self.answers else web.Response(status=200, text="ok")


@pytest.fixture
async def receiver(aiohttp_server: Any) -> tuple[Receiver, TestServer]:
    fake = Receiver()
    return fake, await aiohttp_server(fake.app())


@pytest.fixture
async def opened() -> AsyncIterator[list[Channels]]:
    """Channels opened by a test, closed at teardown."""
    channels: list[Channels] = []
    yield channels
    for each in channels:
        await each.aclose()


async def open_hook(
    tmp_path: Path, opened: list[Channels], url: str, **settings: Any
) -> tuple[LoadedConfig, Channels]:
    loaded = load(tmp_path, {"hook": {"type": "webhook", "url": url, **settings}})
    channels = await open_channels(
        loaded, Renderer(loaded.templates_dir), MemoryStore(), clock=lambda: NOW
    )
    opened.append(channels)
    return loaded, channels


async def test_posts_alertmanager_json_signed_with_idempotency_key(
    tmp_path: Path, opened: list[Channels], receiver: tuple[Receiver, TestServer]
) -> None:
    fake, server = receiver
    loaded, channels = await open_hook(
        tmp_path,
        opened,
        str(server.make_url("/alerts")),
        hmac_secret="sign-me",
        headers={"X-Team": "ops"},
    )
    note = notification(loaded, "hook", fixture("mixed_firing_resolved"))

    receipt = await channels["hook"].send(note)

    assert receipt.channel == "hook" and "200" in receipt.detail
    method, headers, body = fake.requests[0]
    assert method == "POST"
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == note.job_id
    assert headers["User-Agent"] == f"notifier/{__version__}"
    assert headers["X-Team"] == "ops"
    expected = hmac.new(b"sign-me", body, hashlib.sha256).hexdigest()
    assert headers["X-Notifier-Signature"] == f"sha256={expected}"
    data = json.loads(body)
    assert data["notifier"] == {"channel": "hook", "route": "all", "job_id": note.job_id}
    assert data["version"] == "4" and data["groupKey"] == note.group_key
    assert [a["fingerprint"] for a in data["alerts"]] == [a.fingerprint for a in note.alerts]
    firing = [a for a in data["alerts"] if a["status"] == "firing"]
    assert firing and all(a["endsAt"] == "0001-01-01T00:00:00Z" for a in firing)


async def test_unsigned_put_and_a_retry_sends_the_same_key(
    tmp_path: Path, opened: list[Channels], receiver: tuple[Receiver, TestServer]
) -> None:
    fake, server = receiver
    loaded, channels = await open_hook(tmp_path, opened, str(server.make_url("/x")), method="PUT")
    note = notification(loaded, "hook", fixture("firing_single"))

    await channels["hook"].send(note)
    await channels["hook"].send(note)

    assert [r[0] for r in fake.requests] == ["PUT", "PUT"]
    assert "X-Notifier-Signature" not in fake.requests[0][1]
    assert fake.requests[0][1]["Idempotency-Key"] == fake.requests[1][1]["Idempotency-Key"]
    assert fake.requests[0][2] == fake.requests[1][2]


async def test_at_most_max_alerts_are_sent_and_the_rest_counted(
    tmp_path: Path, opened: list[Channels], receiver: tuple[Receiver, TestServer]
) -> None:
    fake, server = receiver
    loaded, channels = await open_hook(tmp_path, opened, str(server.make_url("/x")), max_alerts=3)
    # Bare alerts, as a script might post them: each grows by the fields Alertmanager's
    # shape fills in (endsAt, generatorURL, fingerprint, annotations).
    bare = [
        {
            "status": "firing",
            "labels": {"alertname": "Bare", "i": str(i)},
            "startsAt": "2026-01-01T00:00:00Z",
        }
        for i in range(8)
    ]
    wire = {**fixture("firing_single").to_alertmanager_json(), "alerts": bare, "truncatedAlerts": 2}
    source = WebhookPayload.model_validate(wire)
    note = notification(loaded, "hook", source)

    await channels["hook"].send(note)

    data = json.loads(fake.requests[0][2])
    assert [a["labels"]["i"] for a in data["alerts"]] == ["0", "1", "2"]
    assert data["truncatedAlerts"] == 2 + 5  # left out upstream, and here


def test_webhook_max_alerts_defaults_to_fifty(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/x"}})
    assert loaded.config.channels["hook"].max_alerts == 50  # type: ignore[union-attr]


HTTP_DATE = formatdate(NOW + 30, usegmt=True)


@pytest.mark.parametrize(
    ("status", "headers", "error", "reason", "retry_after"),
    [
        (200, {}, None, None, None),
        (201, {}, None, None, None),
        (204, {}, None, None, None),
        (500, {}, RetryableError, FailureReason.SERVER_ERROR, None),
        (502, {}, RetryableError, FailureReason.SERVER_ERROR, None),
        (503, {"Retry-After": "5"}, RetryableError, FailureReason.SERVER_ERROR, 5.0),
        (408, {}, RetryableError, FailureReason.SERVER_ERROR, None),
        (429, {"Retry-After": "12"}, RetryableError, FailureReason.RATE_LIMITED, 12.0),
        (429, {"Retry-After": HTTP_DATE}, RetryableError, FailureReason.RATE_LIMITED, 30.0),
        (429, {"Retry-After": "soon"}, RetryableError, FailureReason.RATE_LIMITED, None),
        (400, {}, PermanentError, FailureReason.CLIENT_ERROR, None),
        (404, {}, PermanentError, FailureReason.CLIENT_ERROR, None),
        (422, {}, PermanentError, FailureReason.CLIENT_ERROR, None),
        (401, {}, PermanentError, FailureReason.AUTH, None),
        (403, {}, PermanentError, FailureReason.AUTH, None),
    ],
)
async def test_status_table(
    tmp_path: Path,
    opened: list[Channels],
    receiver: tuple[Receiver, TestServer],
    status: int,
    headers: dict[str, str],
    error: type[Exception] | None,
    reason: FailureReason | None,
    retry_after: float | None,
) -> None:
    fake, server = receiver
    fake.answers.append(web.Response(status=status, headers=headers, text="nope"))
    loaded, channels = await open_hook(tmp_path, opened, str(server.make_url("/a")))
    note = notification(loaded, "hook", fixture("firing_single"))

    if error is None:
        assert str(status) in (await channels["hook"].send(note)).detail
        return
    with pytest.raises(error) as caught:
        await channels["hook"].send(note)
    assert caught.value.reason == reason  # type: ignore[attr-defined]
    assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]
    assert f"answered {status}" in str(caught.value)


async def test_redirect_is_not_followed(
    tmp_path: Path, opened: list[Channels], receiver: tuple[Receiver, TestServer]
) -> None:
    fake, server = receiver
    fake.answers.append(web.Response(status=307, headers={"Location": "/moved-here"}))
    loaded, channels = await open_hook(
        tmp_path, opened, str(server.make_url("/a")), hmac_secret="s"
    )

    with pytest.raises(PermanentError, match="redirects are not followed") as caught:
        await channels["hook"].send(notification(loaded, "hook", fixture("firing_single")))

    assert caught.value.reason == FailureReason.CLIENT_ERROR
    assert len(fake.requests) == 1


async def test_connection_refused_is_retryable(tmp_path: Path, opened: list[Channels]) -> None:
    loaded, channels = await open_hook(tmp_path, opened, f"http://127.0.0.1:{free_port()}/a")

    with pytest.raises(RetryableError, match="cannot connect") as caught:
        await channels["hook"].send(notification(loaded, "hook", fixture("firing_single")))

    assert caught.value.reason == FailureReason.CONNECTION


async def test_a_peer_that_does_not_answer_times_out(
    tmp_path: Path, opened: list[Channels]
) -> None:
    async with silent_server() as port:
        loaded, channels = await open_hook(
            tmp_path, opened, f"http://127.0.0.1:{port}/a", timeout="200ms"
        )
        with pytest.raises(RetryableError, match=r"no answer within 0\.2s") as caught:
            await channels["hook"].send(notification(loaded, "hook", fixture("firing_single")))

    assert caught.value.reason == FailureReason.TIMEOUT


async def test_sends_reuse_one_kept_alive_connection(
    tmp_path: Path, opened: list[Channels], receiver: tuple[Receiver, TestServer]
) -> None:
    fake, server = receiver
    loaded, channels = await open_hook(tmp_path, opened, str(server.make_url("/a")))
    for _ in range(3):
        await channels["hook"].send(notification(loaded, "hook", fixture("firing_single")))

    assert len(fake.peers) == 3 and len(set(fake.peers)) == 1


async def test_tls_is_verified_against_the_trust_store_ssl_uses(
    tmp_path: Path, opened: list[Channels], aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    fake = Receiver()
    server = await aiohttp_server(fake.app(), ssl=context)
    url = str(server.make_url("/tls"))
    loaded, untrusting = await open_hook(tmp_path, opened, url)
    with pytest.raises(RetryableError, match=r"cannot connect \(TLS certificate") as caught:
        await untrusting["hook"].send(notification(loaded, "hook", fixture("firing_single")))
    assert caught.value.reason == FailureReason.CONNECTION
    assert fake.requests == []

    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    loaded, trusting = await open_hook(tmp_path, opened, url)
    await trusting["hook"].send(notification(loaded, "hook", fixture("firing_single")))
    assert len(fake.requests) == 1


async def test_a_proxy_from_the_environment_is_used(
    tmp_path: Path,
    opened: list[Channels],
    receiver: tuple[Receiver, TestServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy, server = receiver  # answers whatever it is asked, as a forwarding proxy would
    monkeypatch.setenv("http_proxy", str(server.make_url("/")))
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    loaded, channels = await open_hook(tmp_path, opened, "http://hooks.invalid/in")

    await channels["hook"].send(notification(loaded, "hook", fixture("firing_single")))

    assert proxy.hosts == ["hooks.invalid"]


async def test_a_header_with_a_line_break_is_refused_when_opening(
    tmp_path: Path, opened: list[Channels]
) -> None:
    with pytest.raises(ChannelOpenError, match="line breaks"):
        await open_hook(
            tmp_path, opened, "http://127.0.0.1:9/a", headers={"X-Team": "ops\r\nX-Evil: 1"}
        )


async def test_a_dispatched_send_to_a_silent_peer_ends_by_the_channels_own_timeout(
    tmp_path: Path, opened: list[Channels]
) -> None:
    """The dispatcher puts no timer of its own around a webhook send: libcurl's ends it."""
    async with silent_server() as port:
        loaded, channels = await open_hook(
            tmp_path, opened, f"http://127.0.0.1:{port}/a", timeout="200ms"
        )
        lane = Lane(channels["hook"], LaneSettings.from_config(loaded, "hook", 4), Metrics(), clock)
        assert lane.self_timed
        store = MemoryStore()
        planned = plan_notifications(fixture("firing_single"), loaded, NOW, lambda: "job-1")
        await store.enqueue([job for job in planned if job.channel == "hook"], NOW)
        [claimed] = await store.claim(1, lease=60.0, now=NOW)

        await Deliverer(store, Metrics(), clock, random.Random(1)).run(claimed, lane)

    [attempt] = await store.deliveries()
    assert (attempt.outcome, attempt.reason) == ("retry", "timeout")
    assert attempt.error is not None and "no answer within 0.2s" in attempt.error


def clock() -> float:
    return NOW


async def test_preview_shows_the_body_without_credentials(
    tmp_path: Path, opened: list[Channels]
) -> None:
    loaded, channels = await open_hook(
        tmp_path, opened, "https://user:pw@hooks.example/in?token=abc", hmac_secret="s3"
    )
    note = notification(loaded, "hook", fixture("firing_single"))

    preview = channels["hook"].preview(note)

    first, _, body = preview.partition("\n")
    assert first == "POST https://hooks.example/in"
    assert json.loads(body)["notifier"]["job_id"] == note.job_id
    assert "pw" not in preview and "abc" not in preview and "s3" not in preview


async def test_registry_opens_every_type_and_closes_every_client(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {
            "mail": {
                "type": "email",
                "host": "127.0.0.1",
                "security": "none",
                "from": "a@example.com",
                "to": ["b@example.com"],
            },
            "bot": {"type": "slack", "token": "xoxb-1", "channel": "#alerts"},
            "hook-slack": {"type": "slack", "webhook_url": "https://hooks.slack.example/x"},
            "sms": {
                "type": "sms",
                "account_sid": "AC1",
                "auth_token": "t",
                "from": "+15005550006",
                "to": ["+12025550123"],
            },
            "hook": {"type": "webhook", "url": "https://example.com/"},
            "console": {"type": "log"},
        },
    )
    channels = await open_channels(loaded, Renderer(loaded.templates_dir), MemoryStore())

    assert {name: channels[name].type for name in channels} == {
        "mail": "email",
        "bot": "slack",
        "hook-slack": "slack",
        "sms": "sms",
        "hook": "webhook",
        "console": "log",
    }
    assert len(channels) == 6 and channels.get("nope") is None
    assert dict(channels.items())["console"].name == "console"

    await channels.aclose()
    await channels.aclose()  # idempotent
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del channels
        gc.collect()
    assert not [w for w in caught if "nclosed" in str(w.message)]


async def test_a_huge_answer_is_read_but_only_its_start_kept(aiohttp_server: Any) -> None:
    async def endless(_request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(_request)
        for _ in range(64):  # 4 MiB in 64 KiB pieces
            await response.write(b"x" * 65536)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/a", endless)
    server = await aiohttp_server(app)
    session = CurlSession()
    try:
        answer = await session.request(
            "POST", str(server.make_url("/a")), b"{}", ["Content-Type: application/json"], 10.0
        )
    finally:
        await session.close()
    assert answer.status == 200
    assert len(answer.body) == MAX_ANSWER_BYTES
