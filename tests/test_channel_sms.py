"""The SMS channel through the real Twilio SDK (async client) against a local fake Twilio
(tests/fakes/twilio_api.py): one message per recipient, segment budget, error codes."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from notifier.channels.base import Channel, FailureReason, PermanentError, RetryableError
from notifier.channels.registry import Channels, open_channels
from notifier.channels.sms_segments import segment_info
from notifier.config import LoadedConfig
from notifier.store.base import Store
from notifier.store.memory import MemoryStore
from notifier.store.sqlite import SQLiteStore
from notifier.templates import Renderer
from tests.channel_support import (
    FIXTURE_NAMES,
    fixture,
    free_port,
    load,
    notification,
    payload,
)
from tests.fakes.twilio_api import FakeTwilio, TwilioError

SID, TOKEN = "AC" + "1" * 32, "twilio-test-token"
ONCALL, BACKUP = "+12025550123", "+447700900123"


@pytest.fixture
async def twilio(aiohttp_server: Any) -> tuple[FakeTwilio, TestServer]:
    fake = FakeTwilio(account_sid=SID, auth_token=TOKEN)
    return fake, await aiohttp_server(fake.app())


Opener = Callable[..., Any]


@pytest.fixture
async def open_sms(tmp_path: Path) -> AsyncIterator[Opener]:
    opened: list[Channels] = []

    async def open_sms(
        api_url: str, store: Store | None = None, **settings: Any
    ) -> tuple[LoadedConfig, Channel]:
        config = {
            "type": "sms",
            "account_sid": SID,
            "auth_token": TOKEN,
            "from": "+15005550006",
            "to": [ONCALL, BACKUP],
            "api_url": api_url,
            **settings,
        }
        loaded = load(tmp_path, {"sms": config})
        state = MemoryStore() if store is None else store
        channels = await open_channels(loaded, Renderer(loaded.templates_dir), state)
        opened.append(channels)
        return loaded, channels["sms"]

    yield open_sms
    for channels in opened:
        await channels.aclose()


def url(server: TestServer) -> str:
    return str(server.make_url("/"))


async def test_one_message_per_recipient(
    twilio: tuple[FakeTwilio, TestServer], open_sms: Opener
) -> None:
    fake, server = twilio
    loaded, channel = await open_sms(url(server))

    receipt = await channel.send(notification(loaded, "sms", fixture("firing_single")))

    assert [(r.to, r.from_) for r in fake.delivered] == [
        (ONCALL, "+15005550006"),
        (BACKUP, "+15005550006"),
    ]
    assert all(r.authorized and r.account_sid == SID for r in fake.requests)
    body = fake.delivered[0].body
    assert body.startswith("[FIRING] InstanceDown critical: Instance node-7.example.internal")
    assert body.endswith("since 05:25 UTC")
    assert len(receipt.peer_ids) == 2 and all(p.startswith("SM") for p in receipt.peer_ids)
    assert "2 message(s) of 1 segment(s)" in receipt.detail


async def test_long_gsm_body_is_trimmed_with_dots(
    twilio: tuple[FakeTwilio, TestServer], open_sms: Opener
) -> None:
    fake, server = twilio
    loaded, channel = await open_sms(url(server), max_segments=1, to=[ONCALL])
    long = payload({"labels": {"alertname": "Long"}, "annotations": {"summary": "word " * 100}})

    await channel.send(notification(loaded, "sms", long))

    body = fake.delivered[0].body
    assert body.endswith("...")
    assert segment_info(body).segments == 1 and segment_info(body).encoding == "GSM-7"


async def test_an_emoji_makes_it_ucs2_and_trims_with_an_ellipsis(
    twilio: tuple[FakeTwilio, TestServer], open_sms: Opener
) -> None:
    fake, server = twilio
    loaded, channel = await open_sms(url(server), max_segments=2, to=[ONCALL])
    hot = payload({"labels": {"alertname": "Hot"}, "annotations": {"summary": "\U0001f525" * 80}})

    await channel.send(notification(loaded, "sms", hot))

    body = fake.delivered[0].body
    info = segment_info(body)
    assert body.endswith("…") and info.encoding == "UCS-2" and info.segments == 2


STRAYS = {
    "right-to-left override": "\u202e",
    "zero-width space": "\u200b",
    "escape": "\x1b",
    "NUL": "\x00",
    "DEL": "\x7f",
    "byte order mark": "\ufeff",
    "left-to-right isolate": "\u2066",
}


@pytest.mark.parametrize("stray", STRAYS.values(), ids=STRAYS.keys())
async def test_a_stray_control_character_changes_neither_encoding_nor_order(
    twilio: tuple[FakeTwilio, TestServer], open_sms: Opener, stray: str
) -> None:
    fake, server = twilio
    loaded, channel = await open_sms(url(server), to=[ONCALL])
    summary = "disk almost full on db-1, " + "x" * 90  # one GSM-7 segment, three in UCS-2
    clean = payload({"labels": {"alertname": "DiskFull"}, "annotations": {"summary": summary}})
    dirty = payload(
        {
            "labels": {"alertname": f"Disk{stray}Full"},
            "annotations": {"summary": summary.replace("full", f"{stray}full")},
        }
    )

    for source in (clean, dirty):
        await channel.send(notification(loaded, "sms", source))

    clean_body, dirty_body = (r.body for r in fake.delivered)
    assert dirty_body == clean_body
    assert segment_info(dirty_body) == segment_info(clean_body)
    assert segment_info(dirty_body).encoding == "GSM-7" and segment_info(dirty_body).segments == 1


async def test_line_breaks_in_alert_text_stay_line_breaks(
    twilio: tuple[FakeTwilio, TestServer], open_sms: Opener
) -> None:
    fake, server = twilio
    loaded, channel = await open_sms(url(server), to=[ONCALL])
    multi = payload(
        {"labels": {"alertname": "Multi"}, "annotations": {"summary": "one\r\ntwo\u2028three"}}
    )

    await channel.send(notification(loaded, "sms", multi))

    body = fake.delivered[0].body
    assert "one\ntwo\nthree" in body and "\r" not in body
    assert segment_info(body).encoding == "GSM-7"


@pytest.mark.parametrize(
    ("answer", "error", "reason", "retry_after"),
    [
        (
            TwilioError(429, 20429, "Too Many Requests", retry_after="4"),
            RetryableError,
            FailureReason.RATE_LIMITED,
            4.0,
        ),
        (
            TwilioError(429, 20429, "Too Many Requests"),
            RetryableError,
            FailureReason.RATE_LIMITED,
            None,
        ),
        (
            TwilioError(400, 20429, "Too Many Requests"),
            RetryableError,
            FailureReason.RATE_LIMITED,
            None,
        ),
        (
            TwilioError(500, 20500, "Internal Server Error"),
            RetryableError,
            FailureReason.SERVER_ERROR,
            None,
        ),
        (
            TwilioError(503, 20503, "Service Unavailable"),
            RetryableError,
            FailureReason.SERVER_ERROR,
            None,
        ),
        (
            TwilioError(502, text="<html>Bad Gateway</html>"),
            RetryableError,
            FailureReason.SERVER_ERROR,
            None,
        ),
        (
            TwilioError(400, 21211, "Invalid 'To' Phone Number"),
            PermanentError,
            FailureReason.CLIENT_ERROR,
            None,
        ),
        (
            TwilioError(400, 21614, "'To' number is not a valid mobile number"),
            PermanentError,
            FailureReason.CLIENT_ERROR,
            None,
        ),
        (
            TwilioError(400, 21408, "Permission to send an SMS has not been enabled"),
            PermanentError,
            FailureReason.CLIENT_ERROR,
            None,
        ),
        (
            TwilioError(400, 21610, "Attempt to send to unsubscribed recipient"),
            PermanentError,
            FailureReason.CLIENT_ERROR,
            None,
        ),
        (TwilioError(401, 20003, "Authenticate"), PermanentError, FailureReason.AUTH, None),
        (TwilioError(403, 20403, "Forbidden"), PermanentError, FailureReason.AUTH, None),
    ],
)
async def test_error_table(
    twilio: tuple[FakeTwilio, TestServer],
    open_sms: Opener,
    answer: TwilioError,
    error: type[Exception],
    reason: FailureReason,
    retry_after: float | None,
) -> None:
    fake, server = twilio
    fake.script(answer)
    loaded, channel = await open_sms(url(server), to=[ONCALL])

    with pytest.raises(error) as caught:
        await channel.send(notification(loaded, "sms", fixture("firing_single")))

    assert caught.value.reason == reason  # type: ignore[attr-defined]
    assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]
    assert "twilio message to +1…0123" in str(caught.value)
    assert len(fake.requests) == 1  # the SDK did not retry


async def test_wrong_auth_token_is_auth(
    twilio: tuple[FakeTwilio, TestServer], open_sms: Opener
) -> None:
    fake, server = twilio
    loaded, channel = await open_sms(url(server), auth_token="not-the-token")

    with pytest.raises(PermanentError, match="20003") as caught:
        await channel.send(notification(loaded, "sms", fixture("firing_single")))

    assert caught.value.reason == FailureReason.AUTH
    assert fake.delivered == []


async def test_a_failure_after_some_recipients_says_so(
    twilio: tuple[FakeTwilio, TestServer], open_sms: Opener
) -> None:
    fake, server = twilio
    fake.script_for(BACKUP, TwilioError(500, 20500, "Internal Server Error"))
    loaded, channel = await open_sms(url(server))

    with pytest.raises(RetryableError) as caught:
        await channel.send(notification(loaded, "sms", fixture("firing_single")))

    message = str(caught.value)
    assert "+4…0123" in message
    assert "after 1 of 2 recipients got it" in message
    assert [r.to for r in fake.delivered] == [ONCALL]


async def test_a_retry_sends_only_to_the_recipients_not_yet_told(
    twilio: tuple[FakeTwilio, TestServer], open_sms: Opener, tmp_path: Path
) -> None:
    fake, server = twilio
    fake.script_for(BACKUP, TwilioError(503, 20503, "Service Unavailable"))
    path = tmp_path / "notifier.db"
    # The first attempt, in one process: ONCALL gets it, BACKUP fails retryably.
    first_store = SQLiteStore(path)
    await first_store.open()
    loaded, channel = await open_sms(url(server), first_store)
    note = notification(loaded, "sms", fixture("firing_single"))
    with pytest.raises(RetryableError) as caught:
        await channel.send(note)
    assert "a retry sends only to the others" in str(caught.value)
    await first_store.close()
    # The retry, as another process would make it: a new store on the same file, a new channel.
    second_store = SQLiteStore(path)
    await second_store.open()
    _, channel = await open_sms(url(server), second_store)
    receipt = await channel.send(note)
    await second_store.close()

    requests_per_number = Counter(r.to for r in fake.requests)
    assert requests_per_number == {ONCALL: 1, BACKUP: 2}
    assert Counter(r.to for r in fake.delivered) == {ONCALL: 1, BACKUP: 1}
    assert "1 recipient(s) got it on an earlier attempt" in receipt.detail


async def test_a_job_whose_recipients_were_all_told_sends_nothing_again(
    twilio: tuple[FakeTwilio, TestServer], open_sms: Opener
) -> None:
    fake, server = twilio
    loaded, channel = await open_sms(url(server), MemoryStore())
    note = notification(loaded, "sms", fixture("firing_single"))
    await channel.send(note)

    receipt = await channel.send(note)  # a retry after the completion was lost

    assert len(fake.requests) == 2
    assert receipt.peer_ids == ()
    assert "2 recipient(s) got it on an earlier attempt" in receipt.detail


async def test_told_recipients_are_stored_as_hashes_not_numbers(
    twilio: tuple[FakeTwilio, TestServer], open_sms: Opener
) -> None:
    _, server = twilio
    store = MemoryStore()
    loaded, channel = await open_sms(url(server), store)
    note = notification(loaded, "sms", fixture("firing_single"))
    await channel.send(note)

    told = await store.told_recipients(note.job_id)
    assert len(told) == 2
    assert not any(ONCALL[1:] in token or BACKUP[1:] in token for token in told)


async def test_phone_numbers_in_twilio_errors_are_redacted(
    twilio: tuple[FakeTwilio, TestServer], open_sms: Opener
) -> None:
    fake, server = twilio
    fake.script(TwilioError(400, 21211, f"The 'To' number {ONCALL} is not a valid phone number."))
    loaded, channel = await open_sms(url(server), to=[ONCALL])

    with pytest.raises(PermanentError) as caught:
        await channel.send(notification(loaded, "sms", fixture("firing_single")))

    assert ONCALL not in str(caught.value)
    assert "21211" in str(caught.value)


async def test_connection_refused_and_timeout_are_retryable(
    aiohttp_server: Any, open_sms: Opener
) -> None:
    loaded, refused = await open_sms(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RetryableError) as caught:
        await refused.send(notification(loaded, "sms", fixture("firing_single")))
    assert caught.value.reason == FailureReason.CONNECTION

    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({}, status=201)

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", stall)
    server = await aiohttp_server(app)
    loaded, stalled = await open_sms(url(server), timeout="200ms")
    with pytest.raises(RetryableError, match=r"no answer within 0\.2s") as caught:
        await stalled.send(notification(loaded, "sms", fixture("firing_single")))
    release.set()
    assert caught.value.reason == FailureReason.TIMEOUT


@pytest.mark.parametrize("name", FIXTURE_NAMES)
async def test_every_fixture_renders_within_two_segments(
    open_sms: Opener, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    loaded, channel = await open_sms(f"http://127.0.0.1:{free_port()}")
    note = notification(loaded, "sms", fixture(name))

    body = channel.preview(note).partition("\n")[2]

    assert body.startswith(f"[{note.status.upper()}")
    assert segment_info(body).segments <= 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_preview_shows_recipients_segments_and_body(open_sms: Opener) -> None:
    loaded, channel = await open_sms(f"http://127.0.0.1:{free_port()}")

    preview = channel.preview(notification(loaded, "sms", fixture("resolved_single")))

    head, _, body = preview.partition("\n")
    assert head == f"SMS to {ONCALL}, {BACKUP} (1 segment(s), GSM-7):"
    assert body.startswith("[RESOLVED] InstanceDown critical:")
    assert TOKEN not in preview
