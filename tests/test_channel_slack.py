"""The Slack channel through the real slack_sdk clients against a local fake Slack
(tests/fakes/slack_api.py): bot token with threads, incoming webhooks, errors, budget."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from notifier.channels.base import Channel, FailureReason, PermanentError, RetryableError
from notifier.channels.registry import Channels, open_channels
from notifier.channels.slack import SlackChannel
from notifier.channels.slack_budget import MAX_BLOCKS, MAX_TEXT
from notifier.channels.slack_buttons import ACKNOWLEDGE, SILENCE_1H
from notifier.config import LoadedConfig
from notifier.digest import DigestFolder
from notifier.incidents.messages import sample_variants
from notifier.payload import GO_ZERO_TIME, WebhookPayload
from notifier.store.base import ThreadRef
from notifier.store.memory import MemoryStore
from notifier.store.sqlite import SQLiteStore
from notifier.templates import Renderer
from notifier.testing import make_payload
from tests.channel_support import (
    FIXTURE_NAMES,
    TEMPLATES,
    fixture,
    free_port,
    load,
    notification,
    payload,
)
from tests.fakes.slack_api import WEBHOOK, FakeSlack, Scripted, SlackRequest

TOKEN = "xoxb-test-token"


@pytest.fixture
async def slack(aiohttp_server: Any) -> tuple[FakeSlack, TestServer]:
    fake = FakeSlack(token=TOKEN)
    return fake, await aiohttp_server(fake.app())


Opener = Callable[..., Any]


@pytest.fixture
async def open_slack(tmp_path: Path) -> AsyncIterator[Opener]:
    """Open a Slack channel named ``slack``; returns (config, channel, thread store)."""
    opened: list[Channels] = []

    async def open_slack(
        templates: Path = TEMPLATES, **settings: Any
    ) -> tuple[LoadedConfig, Channel, MemoryStore]:
        loaded = load(tmp_path, {"slack": {"type": "slack", **settings}}, templates=templates)
        threads = MemoryStore()
        channels = await open_channels(
            loaded, Renderer(loaded.templates_dir), threads, clock=lambda: 1_800_000_000.0
        )
        opened.append(channels)
        return loaded, channels["slack"], threads

    yield open_slack
    for channels in opened:
        await channels.aclose()


def bot(server: TestServer, token: str = TOKEN) -> dict[str, Any]:
    return {"token": token, "channel": "#alerts", "api_url": str(server.make_url("/api/"))}


async def test_bot_posts_blocks_and_keeps_the_thread(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    loaded, channel, threads = await open_slack(**bot(server))
    note = notification(loaded, "slack", fixture("grouped_firing_4_alerts"))

    receipt = await channel.send(note)

    (call,) = fake.calls("chat.postMessage")
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.body["channel"] == "#alerts"
    assert call.body["text"] == "FIRING: HighCPUUsage (4 alerts)"
    assert [b["type"] for b in call.body["blocks"]] == ["header"] + ["section"] * 4 + ["context"]
    ref = await threads.get_thread(note.thread_key)
    assert ref == ThreadRef(channel_id="C0ALERTS", ts=receipt.peer_ids[0])


async def test_resolution_updates_the_original_and_replies_in_its_thread(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    loaded, channel, _ = await open_slack(**bot(server))
    firing = notification(loaded, "slack", fixture("firing_single"))
    resolved = notification(loaded, "slack", fixture("resolved_single"))
    assert firing.thread_key == resolved.thread_key

    first = await channel.send(firing)
    receipt = await channel.send(resolved)

    ts = first.peer_ids[0]
    (update,) = fake.calls("chat.update")
    assert (update.body["channel"], update.body["ts"]) == ("C0ALERTS", ts)
    original = fake.messages[("C0ALERTS", ts)]
    assert original.text == "RESOLVED: InstanceDown (1 alert)"
    assert original.edits[0]["text"] == "FIRING: InstanceDown (1 alert)"
    replies = [m for m in fake.messages.values() if m.thread_ts == ts]
    assert [r.text for r in replies] == ["RESOLVED: InstanceDown (1 alert)"]
    assert receipt.peer_ids == (ts, replies[0].ts)


async def test_the_thread_survives_a_restart(
    slack: tuple[FakeSlack, TestServer], tmp_path: Path
) -> None:
    fake, server = slack
    loaded = load(tmp_path, {"slack": {"type": "slack", **bot(server)}})
    sent: list[str] = []
    for fixture_name in ("firing_single", "resolved_single"):  # two process lifetimes
        store = SQLiteStore(tmp_path / "notifier.db")
        await store.open()
        channels = await open_channels(loaded, Renderer(loaded.templates_dir), store)
        try:
            note = notification(loaded, "slack", fixture(fixture_name))
            sent.append((await channels["slack"].send(note)).peer_ids[0])
        finally:
            await channels.aclose()
            await store.close()

    (update,) = fake.calls("chat.update")
    assert update.body["ts"] == sent[0] == sent[1]


async def test_resolution_without_a_thread_posts_a_new_message(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    loaded, channel, _ = await open_slack(**bot(server))

    await channel.send(notification(loaded, "slack", fixture("resolved_single")))

    assert fake.calls("chat.update") == []
    assert [c.body["text"] for c in fake.calls("chat.postMessage")] == [
        "RESOLVED: InstanceDown (1 alert)"
    ]


async def test_resolution_of_a_deleted_message_posts_a_new_one(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    loaded, channel, _ = await open_slack(**bot(server))
    await channel.send(notification(loaded, "slack", fixture("firing_single")))
    fake.script("chat.update", Scripted(error="message_not_found"))

    receipt = await channel.send(notification(loaded, "slack", fixture("resolved_single")))

    posts = fake.calls("chat.postMessage")
    assert len(posts) == 2 and "thread_ts" not in posts[1].body
    assert "gone" in receipt.detail


async def test_incoming_webhook_posts_the_message(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    loaded, channel, threads = await open_slack(webhook_url=str(server.make_url(fake.webhook_path)))
    note = notification(loaded, "slack", fixture("grouped_resolved"))

    receipt = await channel.send(note)

    (call,) = fake.calls(WEBHOOK)
    assert call.body["text"] == "RESOLVED: HighErrorRate (2 alerts)"
    assert len(call.body["blocks"]) == 4
    assert "Authorization" not in call.headers
    assert receipt.detail == "posted through the incoming webhook"
    assert await threads.get_thread(note.thread_key) is None


@pytest.mark.parametrize(
    ("answer", "error", "reason", "retry_after"),
    [
        (
            Scripted(status=429, error="ratelimited", retry_after="7"),
            RetryableError,
            FailureReason.RATE_LIMITED,
            7.0,
        ),
        (Scripted(error="ratelimited"), RetryableError, FailureReason.RATE_LIMITED, None),
        (Scripted(error="channel_not_found"), PermanentError, FailureReason.CLIENT_ERROR, None),
        (Scripted(error="not_in_channel"), PermanentError, FailureReason.CLIENT_ERROR, None),
        (Scripted(error="invalid_blocks"), PermanentError, FailureReason.CLIENT_ERROR, None),
        (Scripted(error="invalid_auth"), PermanentError, FailureReason.AUTH, None),
        (Scripted(error="not_authed"), PermanentError, FailureReason.AUTH, None),
        (Scripted(error="token_revoked"), PermanentError, FailureReason.AUTH, None),
        (Scripted(error="internal_error"), RetryableError, FailureReason.SERVER_ERROR, None),
        (
            Scripted(status=500, text="<html>oops</html>"),
            RetryableError,
            FailureReason.SERVER_ERROR,
            None,
        ),
        (
            Scripted(status=503, error="service_unavailable"),
            RetryableError,
            FailureReason.SERVER_ERROR,
            None,
        ),
        (Scripted(status=404, text="not found"), PermanentError, FailureReason.CLIENT_ERROR, None),
    ],
)
async def test_web_api_error_table(
    slack: tuple[FakeSlack, TestServer],
    open_slack: Opener,
    answer: Scripted,
    error: type[Exception],
    reason: FailureReason,
    retry_after: float | None,
) -> None:
    fake, server = slack
    fake.script("chat.postMessage", answer)
    loaded, channel, _ = await open_slack(**bot(server))

    with pytest.raises(error) as caught:
        await channel.send(notification(loaded, "slack", fixture("firing_single")))

    assert caught.value.reason == reason  # type: ignore[attr-defined]
    assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]
    assert "chat.postMessage" in str(caught.value)
    assert len(fake.calls("chat.postMessage")) == 1  # the SDK did not retry


@pytest.mark.parametrize(
    ("answer", "error", "reason", "retry_after"),
    [
        (
            Scripted(status=429, text="rate_limited", retry_after="3"),
            RetryableError,
            FailureReason.RATE_LIMITED,
            3.0,
        ),
        (Scripted(status=500, text="internal"), RetryableError, FailureReason.SERVER_ERROR, None),
        (Scripted(status=403, text="invalid_token"), PermanentError, FailureReason.AUTH, None),
        (Scripted(status=404, text="no_service"), PermanentError, FailureReason.CLIENT_ERROR, None),
        (
            Scripted(status=410, text="channel_is_archived"),
            PermanentError,
            FailureReason.CLIENT_ERROR,
            None,
        ),
        (
            Scripted(status=400, text="invalid_payload"),
            PermanentError,
            FailureReason.CLIENT_ERROR,
            None,
        ),
    ],
)
async def test_incoming_webhook_error_table(
    slack: tuple[FakeSlack, TestServer],
    open_slack: Opener,
    answer: Scripted,
    error: type[Exception],
    reason: FailureReason,
    retry_after: float | None,
) -> None:
    fake, server = slack
    fake.script(WEBHOOK, answer)
    loaded, channel, _ = await open_slack(webhook_url=str(server.make_url(fake.webhook_path)))

    with pytest.raises(error) as caught:
        await channel.send(notification(loaded, "slack", fixture("firing_single")))

    assert caught.value.reason == reason  # type: ignore[attr-defined]
    assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]
    assert answer.text is not None and answer.text in str(caught.value)
    assert fake.webhook_path not in str(caught.value)
    assert len(fake.calls(WEBHOOK)) == 1


async def test_wrong_token_is_auth(slack: tuple[FakeSlack, TestServer], open_slack: Opener) -> None:
    _, server = slack
    loaded, channel, _ = await open_slack(**bot(server, token="xoxb-wrong"))

    with pytest.raises(PermanentError, match="invalid_auth") as caught:
        await channel.send(notification(loaded, "slack", fixture("firing_single")))

    assert caught.value.reason == FailureReason.AUTH


async def test_unknown_channel_is_permanent(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    _, server = slack
    loaded, channel, _ = await open_slack(**{**bot(server), "channel": "#nowhere"})

    with pytest.raises(PermanentError, match="channel_not_found") as caught:
        await channel.send(notification(loaded, "slack", fixture("firing_single")))

    assert caught.value.reason == FailureReason.CLIENT_ERROR


async def test_connection_refused_and_timeout_are_retryable(
    aiohttp_server: Any, open_slack: Opener
) -> None:
    loaded, refused, _ = await open_slack(
        token=TOKEN, channel="#a", api_url=f"http://127.0.0.1:{free_port()}/api/"
    )
    with pytest.raises(RetryableError) as caught:
        await refused.send(notification(loaded, "slack", fixture("firing_single")))
    assert caught.value.reason == FailureReason.CONNECTION

    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/api/{method}", stall)
    server = await aiohttp_server(app)
    loaded, stalled, _ = await open_slack(
        token=TOKEN, channel="#a", api_url=str(server.make_url("/api/")), timeout="200ms"
    )
    with pytest.raises(RetryableError, match=r"no answer within 0\.2s") as caught:
        await stalled.send(notification(loaded, "slack", fixture("firing_single")))
    release.set()
    assert caught.value.reason == FailureReason.TIMEOUT


async def test_many_alerts_stay_within_the_budget(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    loaded, channel, _ = await open_slack(**bot(server))
    many = payload(
        *(
            {
                "labels": {"alertname": "DiskFull", "instance": f"node-{i}", "severity": "warning"},
                "annotations": {"description": "x" * 4000 if i == 0 else "full"},
            }
            for i in range(120)
        )
    )

    await channel.send(notification(loaded, "slack", many))

    (call,) = fake.calls("chat.postMessage")
    blocks = call.body["blocks"]
    assert len(blocks) == MAX_BLOCKS
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections[0]["text"]["text"]) == MAX_TEXT
    assert sections[0]["text"]["text"].endswith("…")
    footer = blocks[-1]["elements"][0]["text"]
    assert footer.endswith(f"+{120 - len(sections)} more alerts")
    assert call.body["text"].endswith("(120 alerts)")  # all of them, as the footer says


def long_alerts(count: int) -> WebhookPayload:
    return make_payload(n=count, alertname="DiskFull", annotations={"description": "d" * 3000})


async def test_long_descriptions_stay_within_slacks_total(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    loaded, channel, _ = await open_slack(**bot(server))

    await channel.send(notification(loaded, "slack", long_alerts(5)))

    (call,) = fake.calls("chat.postMessage")  # the stand-in refuses more than Slack takes
    sections = [b for b in call.body["blocks"] if b["type"] == "section"]
    assert 0 < len(sections) < 5
    footer = call.body["blocks"][-1]["elements"][0]["text"]
    assert footer.endswith(f"+{5 - len(sections)} more alerts")
    assert call.body["text"] == "FIRING: DiskFull (5 alerts)"


async def test_fixed_blocks_over_the_total_are_cut(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener, tmp_path: Path
) -> None:
    fake, server = slack
    templates = tmp_path / "templates"
    templates.mkdir()
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 2900}}
    (templates / "wordy.json").write_text(json.dumps({"text": "wordy", "blocks": [section] * 6}))
    loaded, channel, _ = await open_slack(templates=templates, template="wordy.json", **bot(server))

    await channel.send(notification(loaded, "slack", long_alerts(2)))

    (call,) = fake.calls("chat.postMessage")
    assert [b["type"] for b in call.body["blocks"]] == ["section"] * 3 + ["context"]


@pytest.mark.parametrize("method", ["chat.postMessage", WEBHOOK])
async def test_blocks_slack_finds_too_long_go_as_the_short_form(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener, method: str
) -> None:
    fake, server = slack
    answer = (
        Scripted(status=400, text="msg_blocks_too_long")
        if method == WEBHOOK
        else Scripted(error="msg_blocks_too_long")
    )
    fake.script(method, answer)
    settings = (
        {"webhook_url": str(server.make_url(fake.webhook_path))}
        if method == WEBHOOK
        else bot(server)
    )
    loaded, channel, _ = await open_slack(**settings)

    await channel.send(notification(loaded, "slack", long_alerts(3)))

    refused, sent = fake.calls(method)
    assert refused.body["blocks"]
    assert "blocks" not in sent.body
    assert sent.body["text"] == "FIRING: DiskFull (3 alerts)"


async def test_a_resolution_slack_finds_too_long_goes_as_the_short_form(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    loaded, channel, _ = await open_slack(**bot(server))
    first = await channel.send(notification(loaded, "slack", long_alerts(3)))
    fake.script("chat.update", Scripted(error="msg_blocks_too_long"))

    await channel.send(
        notification(loaded, "slack", make_payload(n=3, alertname="DiskFull", status="resolved"))
    )

    refused, updated = fake.calls("chat.update")
    assert refused.body["blocks"] and "blocks" not in updated.body
    original = fake.messages[("C0ALERTS", first.peer_ids[0])]
    assert original.text == "RESOLVED: DiskFull (3 alerts)"


async def test_label_text_is_escaped_for_mrkdwn(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    loaded, channel, _ = await open_slack(**bot(server))
    hostile = payload(
        {"labels": {"alertname": "<!channel> & <http://evil|click>", "severity": "critical"}}
    )

    await channel.send(notification(loaded, "slack", hostile))

    section = fake.calls("chat.postMessage")[0].body["blocks"][1]["text"]
    assert "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;" in section["text"]
    assert "<!channel>" not in section["text"]
    assert section["verbatim"] is True


PHISHING_URL = "http://prom/|graph> <!channel> <http://evil.example/login|Fix now"
# What Slack would act on in mrkdwn: <target> or <target|label>.
SLACK_MARKUP = re.compile(r"<([^<>|]*)(?:\|[^<>]*)?>")
NAIVE_TEMPLATE = """{
  "text": {{ ("Alert " ~ common_labels.alertname ~ " " ~ alerts[0].generator_url) | tojson }},
  "blocks": [
    {"type": "section", "text": {"type": "mrkdwn",
      "text": {{ (common_labels.alertname ~ " <" ~ alerts[0].generator_url ~ "|graph>") | tojson }}}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": {{ common_labels | tojson | tojson }}}]}
  ]
}"""


def hostile_group(status: str) -> WebhookPayload:
    return make_payload(
        alerts=[
            {
                "status": status,
                "labels": {"alertname": "<!channel> Disk", "severity": "critical"},
                "annotations": {"summary": "<!here> <@U024BE7LH> <http://evil.example|login>"},
                "startsAt": "2026-11-26T05:25:12Z",
                "endsAt": "2026-11-26T05:35:12Z" if status == "resolved" else GO_ZERO_TIME,
                "generatorURL": PHISHING_URL,
            }
        ],
        group_key='{}:{alertname="hostile"}',
    )


def inert(request: SlackRequest) -> None:
    """Nothing in what Slack got would mention anyone or link anywhere the alert chose."""
    for text in strings(request.body):
        for target in SLACK_MARKUP.findall(text):
            assert not target.startswith(("!", "@", "#")), text
            assert "evil.example" not in target, text
    for node in text_objects(request.body.get("blocks", [])):
        if node["type"] == "mrkdwn":
            assert node["verbatim"] is True, node  # Slack does not auto-link bare URLs


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def text_objects(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [t for item in node for t in text_objects(item)]
    if not isinstance(node, dict):
        return []
    if node.get("type") in ("mrkdwn", "plain_text"):
        return [node]
    return [t for value in node.values() for t in text_objects(value)]


@pytest.mark.parametrize("template", ["performance_alert.json", "naive.json"])
async def test_alert_text_cannot_ping_or_phish(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener, tmp_path: Path, template: str
) -> None:
    fake, server = slack
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "naive.json").write_text(NAIVE_TEMPLATE)
    loaded, channel, _ = await open_slack(templates=templates, template=template, **bot(server))

    await channel.send(notification(loaded, "slack", hostile_group("firing")))
    await channel.send(notification(loaded, "slack", hostile_group("resolved")))

    assert [r.method for r in fake.requests] == [
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",  # the reply in the thread
    ]
    for request in fake.requests:
        inert(request)
    first = json.dumps(fake.requests[0].body, ensure_ascii=False)
    assert "&lt;!channel&gt; Disk" in first  # shown, as text
    assert "evil.example/login" in first


async def test_a_plain_generator_url_is_a_link(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    loaded, channel, _ = await open_slack(**bot(server))

    await channel.send(notification(loaded, "slack", make_payload()))

    section = fake.calls("chat.postMessage")[0].body["blocks"][1]["text"]["text"]
    assert "<http://prometheus.example:9090/graph?g0.expr=up|graph>" in section


async def test_the_raw_filter_opts_a_value_out(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener, tmp_path: Path
) -> None:
    fake, server = slack
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "raw.json").write_text(
        '{"text": {{ ((common_labels.alertname | raw) ~ " / " ~ common_labels.alertname)'
        " | tojson }}}"
    )
    loaded, channel, _ = await open_slack(templates=templates, template="raw.json", **bot(server))

    await channel.send(notification(loaded, "slack", hostile_group("firing")))

    assert fake.calls("chat.postMessage")[0].body["text"] == (
        "<!channel> Disk / &lt;!channel&gt; Disk"
    )


async def test_a_template_that_is_not_json_falls_back(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener, tmp_path: Path
) -> None:
    fake, server = slack
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "broken.json").write_text('{"text": {{ status }}}')
    loaded, channel, _ = await open_slack(
        templates=templates, template="broken.json", **bot(server)
    )

    await channel.send(notification(loaded, "slack", fixture("firing_single")))

    assert fake.calls("chat.postMessage")[0].body["text"] == "FIRING: InstanceDown (1 alerts)"


@pytest.mark.parametrize("name", FIXTURE_NAMES)
async def test_every_fixture_renders_without_fallback(
    open_slack: Opener, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    loaded, channel, _ = await open_slack(token=TOKEN, channel="#alerts")
    note = notification(loaded, "slack", fixture(name))

    message = json.loads(channel.preview(note))

    assert len(message["blocks"]) == len(note.alerts) + 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_preview_is_the_message_json(open_slack: Opener) -> None:
    loaded, channel, _ = await open_slack(token=TOKEN, channel="#alerts")

    preview = json.loads(channel.preview(notification(loaded, "slack", fixture("firing_single"))))

    assert preview["channel"] == "#alerts"
    assert preview["text"] == "FIRING: InstanceDown (1 alert)"
    assert TOKEN not in json.dumps(preview)


async def test_the_stand_in_rate_limits_a_channel_as_slack_does(
    aiohttp_server: Any, open_slack: Opener
) -> None:
    fake = FakeSlack(token=TOKEN, rate_limit=1.0)
    server = await aiohttp_server(fake.app())
    loaded, channel, _ = await open_slack(**bot(server))
    await channel.send(notification(loaded, "slack", fixture("firing_single")))
    with pytest.raises(RetryableError) as caught:
        await channel.send(notification(loaded, "slack", fixture("grouped_firing_4_alerts")))
    assert caught.value.reason is FailureReason.RATE_LIMITED
    assert caught.value.retry_after is not None
    assert fake.rate_limited == 1
    assert len(fake.calls("chat.postMessage")) == 2
    assert len(fake.messages) == 1


async def test_a_storm_digest_updates_its_one_message(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    loaded, channel, _ = await open_slack(**bot(server))
    group = notification(loaded, "slack", fixture("firing_single"))

    def digest(job_id: str, now: float, carried: Any = None) -> Any:
        fold = DigestFolder("slack", "slack", "slack@1", 1.0, now, now, carried=carried)(
            [group.model_copy(update={"job_id": job_id, "received_at": now})]
        )
        assert fold is not None
        return fold.digest

    first = digest("a", 1.0)
    await channel.send(first)
    second = digest("b", 61.0, first.digest)
    receipt = await channel.send(second)

    (post,) = fake.calls("chat.postMessage")
    (update,) = fake.calls("chat.update")
    assert update.body["ts"] == receipt.peer_ids[0]
    (message,) = fake.messages.values()
    assert message.text.startswith(":cyclone: Alert storm on slack: 2 groups firing")
    assert message.edits[0]["text"].startswith(":cyclone: Alert storm on slack: 1 group firing")
    assert "1 group firing" in post.body["text"]


@pytest.mark.parametrize(
    ("signing_secret", "kind", "buttons"),
    [("s3cret", "page", True), (None, "page", False), ("s3cret", "announcement", False)],
)
async def test_a_page_carries_the_incident_buttons_when_clicks_can_be_verified(
    open_slack: Opener, signing_secret: str | None, kind: str, buttons: bool
) -> None:
    settings = {"signing_secret": signing_secret} if signing_secret else {}
    loaded, channel, _ = await open_slack(token=TOKEN, channel="#alerts", **settings)
    plain = notification(loaded, "slack", fixture("firing_single"))
    variants = {n.kind: n for _, n in sample_variants(plain)}

    message = json.loads(channel.preview(variants[kind]))

    actions = [b for b in message["blocks"] if b["type"] == "actions"]
    if not buttons:
        assert actions == []
        return
    (block,) = actions
    assert message["blocks"][-1] == block  # after the template's blocks
    assert [(e["action_id"], e["value"]) for e in block["elements"]] == [
        (ACKNOWLEDGE, "a1b2c3d4e5f6"),
        (SILENCE_1H, "a1b2c3d4e5f6"),
    ]


async def test_tell_user_posts_an_ephemeral_and_never_raises(
    slack: tuple[FakeSlack, TestServer], open_slack: Opener
) -> None:
    fake, server = slack
    _, channel, _ = await open_slack(**bot(server))
    assert isinstance(channel, SlackChannel)

    assert await channel.tell_user("C0ALERTS", "U0KIM", "You acknowledged it.", 2.0)
    assert not await channel.tell_user("C0NOWHERE", "U0KIM", "lost", 2.0)
    fake.script("chat.postEphemeral", Scripted(status=500, text="oops"))
    assert not await channel.tell_user("C0ALERTS", "U0KIM", "lost", 2.0)

    (shown, *_) = fake.calls("chat.postEphemeral")
    assert (shown.body["channel"], shown.body["user"]) == ("C0ALERTS", "U0KIM")
    assert shown.body["text"] == "You acknowledged it."
