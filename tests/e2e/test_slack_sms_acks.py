"""End to end: a responder acknowledges from Slack's button or by SMS reply (DESIGN §8).

Real processes: the real Alertmanager posts to ``notifier serve``, whose Slack channel
(the local Slack stand-in, driven by the real slack_sdk) has a ``signing_secret``, so
its page carries the buttons. The click and the SMS reply are posted to the notifier as
Slack and Twilio would, signed with their algorithms (HMAC-SHA256 of ``v0:ts:body``;
twilio's ``RequestValidator.compute_signature`` over ``server.public_url``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import yaml

from notifier.channels.slack_buttons import ACKNOWLEDGE
from notifier.incidents.slack_inbound import SLACK_PATH
from notifier.incidents.sms_inbound import SMS_PATH
from tests.binaries import require_binary
from tests.e2e.test_escalation import STEP_3, WAIT, Stack, escalating_config, pages
from tests.inbound_signing import click_body, slack_headers, twilio_form, twilio_headers
from tests.processes import (
    alertmanager_config,
    running_alertmanager,
    running_notifier,
    wait_until,
    webhook_payload,
)
from tests.redis_server import PrivateRedis, started_redis
from tests.stand_ins import EMAIL, SLACK, SMS, StandIns, stand_ins

pytestmark = pytest.mark.e2e

SIGNING_SECRET = "e2e-slack-signing-secret"
PUBLIC_URL = "https://notifier.example.com"  # what Twilio signs: the proxy's URL, not ours
KIM_SLACK, KIM_PHONE = "U0KIM", "+15551234567"  # the SMS channel's recipient


def acknowledging_config(path: Path, local: StandIns, storage: Any = None) -> Path:
    config = escalating_config(path, local, storage=storage)
    document = yaml.safe_load(config.read_text())
    document["server"]["public_url"] = PUBLIC_URL
    document["channels"][SLACK]["signing_secret"] = SIGNING_SECRET
    document["responders"] = [
        {"name": "kim", "slack_user_id": KIM_SLACK, "phone": KIM_PHONE},
        {"name": "lee", "slack_user_id": "U0LEE"},
    ]
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return config


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.text()


async def click(url: str, user_id: str, incident_id: str) -> tuple[int, str]:
    body = click_body(user_id, incident_id)
    return await post(url + SLACK_PATH, body, slack_headers(SIGNING_SECRET, body))


async def reply_by_sms(url: str, local: StandIns, text: str, sid: str) -> tuple[int, str]:
    fields = twilio_form(KIM_PHONE, text, sid)
    headers = twilio_headers(local.twilio.auth_token, PUBLIC_URL + SMS_PATH, fields)
    return await post(url + SMS_PATH, urlencode(fields).encode(), headers)


def button_value(message_body: dict[str, Any]) -> str:
    """The incident id the page's Acknowledge button carries."""
    for block in message_body["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == ACKNOWLEDGE:
                return str(element["value"])
    raise AssertionError("the page has no Acknowledge button")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    async with stand_ins() as local:
        config = acknowledging_config(tmp_path / "notifier.yaml", local)
        async with running_notifier(config, tmp_path) as notifier:
            am_config = alertmanager_config(f"{notifier.url}/api/v1/alerts")
            async with running_alertmanager(binary, am_config, tmp_path / "am") as am:
                yield Stack(tmp_path, local, notifier, am)


async def test_a_slack_click_stops_the_escalation_and_everyone_hears_it(stack: Stack) -> None:
    await stack.fire()
    await stack.reach({SLACK: 1})  # step 1 at once, with the buttons
    page = stack.local.slack_posts()[0]
    incident_id = button_value(page.body)
    await stack.reach({SMS: 1})  # step 2: nobody acknowledged

    stranger = await click(stack.notifier.url, "U0MALLORY", incident_id)
    assert stranger[0] == 200 and "not a responder" in stranger[1]
    (told,) = stack.local.slack.calls("chat.postEphemeral")  # what Slack shows the clicker
    assert told.body["user"] == "U0MALLORY" and "not a responder" in told.body["text"]
    status, answer = await click(stack.notifier.url, KIM_SLACK, incident_id)
    assert status == 200 and "You acknowledged" in json.loads(answer)["text"]

    await stack.reach({SMS: 2})  # the SMS channel hears who acknowledged
    assert "ACKNOWLEDGED by kim" in stack.local.twilio.delivered[1].body
    # The page itself is updated in place, without its buttons, and gets a thread reply.
    await wait_until(lambda: bool(stack.local.slack.calls("chat.update")), "slack update", WAIT)
    channel_id = stack.local.slack.channels["#alerts"]
    shown = next(m for m in stack.local.slack.messages.values() if m.edits)
    assert (shown.channel, shown.thread_ts) == (channel_id, None)
    assert "acknowledged by kim at" in json.dumps(shown.blocks)
    assert not [b for b in shown.blocks if b["type"] == "actions"]
    await wait_until(
        lambda: any(
            c.body.get("thread_ts") == shown.ts for c in stack.local.slack.calls("chat.postMessage")
        ),
        "a reply in the page's thread",
        WAIT,
    )
    await asyncio.sleep(STEP_3 + 1)  # step 3's time has passed: nothing more arrives
    assert pages(stack.local) == {SLACK: 1, SMS: 2, EMAIL: 0}
    incident = (await stack.notifier.get_json(f"/api/v1/incidents/{incident_id}"))["incident"]
    assert incident["state"] == "acknowledged" and incident["acknowledged_by"] == "kim"
    acks = [e for e in incident["timeline"] if e["event"] == "acknowledged"]
    assert len(acks) == 1 and "via slack" in acks[0]["detail"]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with started_redis(tmp_path / "redis") as server:
        yield server


async def test_a_slack_click_and_an_sms_reply_at_once_on_two_replicas_are_one_ack(
    tmp_path: Path, redis: PrivateRedis
) -> None:
    storage = {"url": f"redis://127.0.0.1:{redis.port}/0"}
    async with stand_ins() as local:
        configs = [
            acknowledging_config(tmp_path / f"r{i}" / "notifier.yaml", local, storage=storage)
            for i in (1, 2)
        ]
        async with (
            running_notifier(configs[0], tmp_path, name="r1") as one,
            running_notifier(configs[1], tmp_path, name="r2") as two,
        ):
            assert await one.post_alerts(webhook_payload("DiskFull")) == 202
            await wait_until(lambda: pages(local)[SMS] >= 1, "step 2", WAIT)
            incident = (await one.get_json("/api/v1/incidents"))["incidents"][0]

            (slack_status, _), (sms_status, twiml) = await asyncio.gather(
                click(one.url, KIM_SLACK, incident["id"]),
                reply_by_sms(two.url, local, f"ACK {incident['ack_code']}", "SM0001"),
            )

            assert (slack_status, sms_status) == (200, 200)
            assert "<Message>" in twiml
            await wait_until(lambda: pages(local)[SMS] >= 2, "the acknowledgement told", WAIT)
            await asyncio.sleep(STEP_3 + 1)  # past step 3: nothing more
            assert pages(local) == {SLACK: 1, SMS: 2, EMAIL: 0}
            shown = (await two.get_json(f"/api/v1/incidents/{incident['id']}"))["incident"]
            acks = [e for e in shown["timeline"] if e["event"] == "acknowledged"]
            assert len(acks) == 1
