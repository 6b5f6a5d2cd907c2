"""End to end: incidents escalate until a person acknowledges (DESIGN §8), with real processes.

The real Alertmanager posts to the real ``notifier serve`` (SQLite), whose route
``critical`` tells the webhook at once and escalates under policy ``oncall``: step 1
Slack at once, step 2 SMS after ``STEP_2`` seconds, step 3 email after ``STEP_3`` more.
Slack and Twilio are the local stand-ins; acknowledgements go through the CLI and the
HTTP API. Then: a ``kill -9`` between step 1 and step 2, two replicas on one Redis, a
group resolved before step 2, and an acknowledgement that times out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.binaries import require_binary
from tests.e2e.test_alertmanager import am_alert
from tests.processes import (
    TOKEN,
    AlertmanagerProcess,
    NotifierProcess,
    alertmanager_config,
    run_cli,
    running_alertmanager,
    running_notifier,
    wait_until,
    webhook_payload,
)
from tests.redis_server import PrivateRedis, started_redis
from tests.stand_ins import EMAIL, SLACK, SMS, WEBHOOK, StandIns, stand_ins, write_config

pytestmark = pytest.mark.e2e

STEP_2 = 4  # seconds after step 1: room for a loaded machine to act between the steps
STEP_3 = 3  # seconds after step 2
WAIT = 20.0  # a bound for a hang, not a speed


def policy(ack_timeout: str | None = None) -> dict[str, Any]:
    steps = [
        {"after": "0s", "channels": [SLACK]},
        {"after": f"{STEP_2}s", "channels": [SMS]},
        {"after": f"{STEP_3}s", "channels": [EMAIL]},
    ]
    return {"steps": steps, **({"ack_timeout": ack_timeout} if ack_timeout else {})}


def escalating_config(
    path: Path, local: StandIns, *, ack_timeout: str | None = None, storage: Any = None
) -> Path:
    config = write_config(
        path,
        local.channels(),
        [
            {
                "name": "critical",
                "matchers": ['severity="critical"'],
                "channels": [WEBHOOK],
                "escalation": "oncall",
            }
        ],
        storage=storage,
    )
    document = yaml.safe_load(config.read_text())
    document["responders"] = [{"name": "kim", "phone": "+15551234567"}, {"name": "lee"}]
    document["escalation_policies"] = {"oncall": policy(ack_timeout)}
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return config


def pages(local: StandIns) -> dict[str, int]:
    """What each paged stand-in got: top-level Slack posts, SMS, mails."""
    return {
        SLACK: len(local.slack_posts()),
        SMS: len(local.twilio.delivered),
        EMAIL: len(local.mailbox.messages),
    }


async def incidents(notifier: NotifierProcess) -> list[dict[str, Any]]:
    return list((await notifier.get_json("/api/v1/incidents"))["incidents"])


async def only_incident(notifier: NotifierProcess) -> dict[str, Any]:
    async def one() -> bool:
        return len(await incidents(notifier)) == 1

    await wait_until(one, "one incident", WAIT)
    return (await incidents(notifier))[0]


async def ack(url: str, incident_id: str, by: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(
            f"{url}/api/v1/incidents/{incident_id}/ack", json={"by": by}, headers=headers
        ) as response,
    ):
        return response.status, await response.json()


@dataclass
class Stack:
    folder: Path
    local: StandIns
    notifier: NotifierProcess
    alertmanager: AlertmanagerProcess

    async def fire(self, ends_at: datetime | None = None) -> None:
        started = datetime.now(UTC) - timedelta(minutes=1)
        await self.alertmanager.post_alerts([am_alert("DiskFull", "critical", started, ends_at)])

    async def reach(self, expected: dict[str, int]) -> None:
        await wait_until(
            lambda: all(pages(self.local)[k] >= n for k, n in expected.items()),
            f"pages {expected}",
            WAIT,
        )


@pytest.fixture
def ack_timeout() -> str | None:
    return None


@pytest.fixture
async def stack(tmp_path: Path, ack_timeout: str | None) -> AsyncIterator[Stack]:
    binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    async with stand_ins() as local:
        config = escalating_config(tmp_path / "notifier.yaml", local, ack_timeout=ack_timeout)
        async with running_notifier(config, tmp_path) as notifier:
            am_config = alertmanager_config(f"{notifier.url}/api/v1/alerts")
            async with running_alertmanager(binary, am_config, tmp_path / "am") as am:
                yield Stack(tmp_path, local, notifier, am)


async def test_steps_until_acknowledged_then_the_sms_channel_hears_it(stack: Stack) -> None:
    await stack.fire()
    await stack.reach({SLACK: 1})  # step 1 at once
    assert pages(stack.local)[SMS] == 0
    incident = await only_incident(stack.notifier)
    page = json.dumps(stack.local.slack_posts()[0].body)
    assert incident["id"] in page and "step 1 of 3" in page and incident["ack_code"] in page

    await stack.reach({SMS: 1})  # step 2, nobody having acknowledged
    sms = stack.local.twilio.delivered[0].body
    assert f"Reply ACK {incident['ack_code']}" in sms and "PAGE 2/3" in sms
    assert "Also paged: alerts-slack" in sms

    result = await run_cli(
        "incidents", "ack", incident["id"], "--by", "kim", "--url", stack.notifier.url,
        env={"NOTIFIER_TOKEN": TOKEN},
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "acknowledged by kim" in result.stdout

    await stack.reach({SMS: 2})  # the SMS channel hears who acknowledged
    told = stack.local.twilio.delivered[1].body
    assert "ACKNOWLEDGED by kim" in told and "Reply ACK" not in told
    await wait_until(lambda: bool(stack.local.slack.calls("chat.update")), "slack update", WAIT)
    await asyncio.sleep(STEP_3 + 1)  # step 3's time has passed: nothing more arrives
    assert pages(stack.local) == {SLACK: 1, SMS: 2, EMAIL: 0}
    assert len(stack.local.sink.requests) == 1  # the route's own channel: told once
    shown = await run_cli(
        "incidents", "show", incident["id"], "--url", stack.notifier.url,
        env={"NOTIFIER_TOKEN": TOKEN},
    )  # fmt: skip
    assert "acknowledged" in shown.stdout and "by kim via api" in shown.stdout


async def test_resolved_before_step_2_never_pages_step_2(stack: Stack) -> None:
    await stack.fire()
    await stack.reach({SLACK: 1})
    await stack.fire(ends_at=datetime.now(UTC))
    # The paged Slack channel hears it resolved: its page is updated, a reply in its thread.
    await wait_until(lambda: bool(stack.local.slack.calls("chat.update")), "slack update", WAIT)
    update = json.dumps(stack.local.slack.calls("chat.update")[0].body)
    assert "RESOLVED" in update.upper()
    incident = (await incidents(stack.notifier))[0]
    assert incident["state"] == "resolved"
    await asyncio.sleep(STEP_2 + 1)
    assert pages(stack.local)[SMS] == 0


@pytest.mark.parametrize("ack_timeout", ["2s"])
async def test_an_acknowledgement_that_times_out_reopens_at_step_1(stack: Stack) -> None:
    await stack.fire()
    await stack.reach({SLACK: 1})
    incident = await only_incident(stack.notifier)
    status, body = await ack(stack.notifier.url, incident["id"], "kim")
    assert status == 200 and body["changed"]
    await stack.reach({SLACK: 2})  # 2s later, still firing: step 1 again
    reopened = (await incidents(stack.notifier))[0]
    assert reopened["state"] == "open"
    assert "reopened" in [e["event"] for e in reopened["timeline"]]


async def test_a_kill_9_between_step_1_and_step_2_still_sends_step_2_once(
    tmp_path: Path,
) -> None:
    async with stand_ins() as local:
        config = escalating_config(tmp_path / "notifier.yaml", local)
        payload = webhook_payload("DiskFull")
        async with running_notifier(config, tmp_path, name="first") as first:
            assert await first.post_alerts(payload) == 202
            await wait_until(lambda: pages(local)[SLACK] == 1, "step 1", WAIT)
            # Step 1's outcome written too: a send cut short by the kill would be repeated
            # (delivery is at-least-once), which is not what this test is about.
            await wait_until(first.idle, "step 1 recorded as delivered", WAIT)
            first.kill()  # SIGKILL to its process group
        assert pages(local)[SMS] == 0
        async with running_notifier(config, tmp_path, name="second") as second:
            await wait_until(lambda: pages(local)[SMS] >= 1, "step 2 after the restart", WAIT)
            await asyncio.sleep(2)  # a moment in which a repeat could come
            assert pages(local)[SLACK] == 1 and pages(local)[SMS] == 1
            incident = (await incidents(second))[0]
            assert incident["pages_sent"] == 2


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with started_redis(tmp_path / "redis") as server:
        yield server


async def test_two_replicas_on_one_redis_send_each_step_once_and_one_acknowledgement(
    tmp_path: Path, redis: PrivateRedis
) -> None:
    storage = {"url": f"redis://127.0.0.1:{redis.port}/0"}
    async with stand_ins() as local:
        configs = [
            escalating_config(tmp_path / f"r{i}" / "notifier.yaml", local, storage=storage)
            for i in (1, 2)
        ]
        async with (
            running_notifier(configs[0], tmp_path, name="r1") as one,
            running_notifier(configs[1], tmp_path, name="r2") as two,
        ):
            payload = webhook_payload("DiskFull")
            statuses = await asyncio.gather(one.post_alerts(payload), two.post_alerts(payload))
            assert statuses == [202, 202]
            await wait_until(lambda: pages(local)[SMS] >= 1, "step 2", WAIT)
            incident = await only_incident(one)
            answers = await asyncio.gather(
                ack(one.url, incident["id"], "kim"), ack(two.url, incident["id"], "lee")
            )
            assert sorted(status for status, _ in answers) == [200, 200]
            assert sorted(body["changed"] for _, body in answers) == [False, True]
            await wait_until(lambda: pages(local)[SMS] >= 2, "the acknowledgement told", WAIT)
            await asyncio.sleep(STEP_3 + 1)  # past step 3: nothing more
            assert pages(local) == {SLACK: 1, SMS: 2, EMAIL: 0}
            shown = (await incidents(two))[0]
            acks = [e for e in shown["timeline"] if e["event"] == "acknowledged"]
            assert len(acks) == 1
