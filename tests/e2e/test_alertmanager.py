"""End to end: the real Alertmanager posts to the real ``notifier serve``, which delivers to
local stand-ins of an SMTP server, Slack, Twilio and a webhook receiver.

Alertmanager (Debian's binary, clustering off) groups by ``alertname`` with
``group_wait: 0s`` and ``group_interval: 1s`` and sends resolutions, authenticating
with a bearer token. Alerts are posted to its ``/api/v2/alerts`` as Prometheus does.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.binaries import require_binary
from tests.processes import (
    AlertmanagerProcess,
    NotifierProcess,
    alertmanager_config,
    run_cli,
    running_alertmanager,
    running_notifier,
    scrape,
    wait_until,
)
from tests.stand_ins import (
    EMAIL,
    SEVERITY_ROUTES,
    SLACK,
    SMS,
    WEBHOOK,
    StandIns,
    stand_ins,
    write_config,
)

pytestmark = pytest.mark.e2e

GROUP_INTERVAL = 1.0  # seconds, as in alertmanager_config()
DELIVERY_TIMEOUT = 15.0


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def am_alert(
    alertname: str, severity: str, starts_at: datetime, ends_at: datetime | None = None
) -> dict[str, Any]:
    """One alert as Prometheus posts it to Alertmanager's API v2."""
    alert: dict[str, Any] = {
        "labels": {"alertname": alertname, "severity": severity, "instance": "api-1:9100"},
        "annotations": {"summary": f"{alertname} on api-1"},
        "startsAt": rfc3339(starts_at),
        "generatorURL": "http://prometheus.example.internal:9090/graph",
    }
    if ends_at is not None:
        alert["endsAt"] = rfc3339(ends_at)
    return alert


@dataclass
class Stack:
    binary: str
    folder: Path
    config: Path
    stand_ins: StandIns
    notifier: NotifierProcess
    alertmanager: AlertmanagerProcess

    def am_config(self) -> str:
        return alertmanager_config(f"{self.notifier.url}/api/v1/alerts")

    async def settle(self) -> None:
        """Let Alertmanager pass another flush, then wait until notifier has nothing pending.

        The one fixed sleep: "exactly once" needs a moment in which a repeat could come.
        """
        await asyncio.sleep(1.5 * GROUP_INTERVAL)
        await wait_until(self.notifier.idle, "notifier's queue to empty", DELIVERY_TIMEOUT)

    async def counts_reach(self, expected: dict[str, int]) -> None:
        def reached() -> bool:
            counts = self.stand_ins.counts()
            return all(counts[name] >= n for name, n in expected.items())

        await wait_until(reached, f"deliveries {expected}", DELIVERY_TIMEOUT)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    async with stand_ins() as local:
        config = write_config(tmp_path / "notifier.yaml", local.channels(), SEVERITY_ROUTES)
        async with running_notifier(config, tmp_path) as notifier:
            am_config = alertmanager_config(f"{notifier.url}/api/v1/alerts")
            async with running_alertmanager(binary, am_config, tmp_path / "am1") as am:
                yield Stack(binary, tmp_path, config, local, notifier, am)


async def test_critical_alert_reaches_all_four_channels_exactly_once(stack: Stack) -> None:
    started = datetime.now(UTC) - timedelta(minutes=1)
    await stack.alertmanager.post_alerts([am_alert("DiskFull", "critical", started)])

    await stack.counts_reach({SMS: 1, SLACK: 1, EMAIL: 1, WEBHOOK: 1})
    await stack.settle()
    local = stack.stand_ins
    assert local.counts() == {EMAIL: 1, SLACK: 1, SMS: 1, WEBHOOK: 1}

    assert "DiskFull" in local.twilio.delivered[0].body
    assert local.twilio.delivered[0].to == "+15551234567"
    assert "DiskFull" in json.dumps(local.slack_posts()[0].body)
    subject = local.subjects()[0]
    assert "FIRING" in subject and "DiskFull" in subject
    hook = local.sink.requests[0].json()
    assert hook["status"] == "firing"
    assert hook["receiver"] == "notifier"  # Alertmanager's receiver name, unescaped
    assert [a["labels"]["alertname"] for a in hook["alerts"]] == ["DiskFull"]
    assert hook["notifier"]["channel"] == WEBHOOK
    assert local.sink.requests[0].key == hook["notifier"]["job_id"]


async def test_warning_reaches_slack_and_email_only_and_its_resolution_updates_them(
    stack: Stack,
) -> None:
    started = datetime.now(UTC) - timedelta(minutes=1)
    local = stack.stand_ins
    await stack.alertmanager.post_alerts([am_alert("SlowRequests", "warning", started)])
    await stack.counts_reach({SLACK: 1, EMAIL: 1})
    await stack.settle()
    assert local.counts() == {EMAIL: 1, SLACK: 1, SMS: 0, WEBHOOK: 0}
    assert local.slack.calls("chat.update") == []

    resolved = am_alert("SlowRequests", "warning", started, ends_at=datetime.now(UTC))
    await stack.alertmanager.post_alerts([resolved])

    await wait_until(
        lambda: len(local.slack.calls("chat.update")) == 1 and len(local.mailbox.messages) == 2,
        "the resolution in Slack (chat.update) and by mail",
        DELIVERY_TIMEOUT,
    )
    await stack.settle()
    first = local.slack_posts()[0]
    update = local.slack.calls("chat.update")[0].body
    posted = next(iter(local.slack.messages.values()))
    assert update["ts"] == posted.ts and update["channel"] == posted.channel
    assert posted.edits, "the original message was edited"
    assert first.body["channel"] == "#alerts"
    replies = [r for r in local.slack.calls("chat.postMessage") if r.body.get("thread_ts")]
    assert [r.body["thread_ts"] for r in replies] == [posted.ts]
    assert "RESOLVED" in local.subjects()[1] and "SlowRequests" in local.subjects()[1]
    # Nothing new for the other channels, and no second top-level Slack message.
    assert local.counts() == {EMAIL: 2, SLACK: 1, SMS: 0, WEBHOOK: 0}


async def test_an_ha_pair_of_alertmanagers_produces_one_notification_per_channel(
    stack: Stack,
) -> None:
    started = datetime.now(UTC) - timedelta(minutes=1)
    alerts = [am_alert("NodeDown", "critical", started), am_alert("HighLoad", "warning", started)]
    async with running_alertmanager(stack.binary, stack.am_config(), stack.folder / "am2") as twin:
        await asyncio.gather(stack.alertmanager.post_alerts(alerts), twin.post_alerts(alerts))

        await stack.counts_reach({SMS: 1, SLACK: 2, EMAIL: 2, WEBHOOK: 1})

        async def both_sent() -> bool:
            sent = [await am.webhook_notifications() for am in (stack.alertmanager, twin)]
            return all(n >= 2 for n in sent)

        await wait_until(both_sent, "both Alertmanagers to notify both groups", DELIVERY_TIMEOUT)
        await stack.settle()

    assert stack.stand_ins.counts() == {SMS: 1, SLACK: 2, EMAIL: 2, WEBHOOK: 1}
    metrics = await scrape(f"{stack.notifier.url}/metrics")
    # The twin's copies: 4 channels for the critical group, 2 for the warning one.
    assert metrics.total("notifier_notifications_deduplicated_total") >= 6


async def test_metrics_and_report_after_a_run(stack: Stack) -> None:
    started = datetime.now(UTC) - timedelta(minutes=1)
    await stack.alertmanager.post_alerts(
        [am_alert("ApiDown", "critical", started), am_alert("QueueBacklog", "warning", started)]
    )
    expected = {SMS: 1, SLACK: 2, EMAIL: 2, WEBHOOK: 1}
    await stack.counts_reach(expected)
    await wait_until(stack.notifier.idle, "notifier's queue to empty", DELIVERY_TIMEOUT)

    metrics = await scrape(f"{stack.notifier.url}/metrics")
    for channel, count in expected.items():
        assert metrics.total("notifier_notifications_total", channel=channel) == count, channel
        observed = metrics.total("notifier_notification_latency_seconds_count", channel=channel)
        assert observed == count, channel
    assert metrics.total("notifier_notification_latency_seconds_sum") > 0
    assert metrics.total("notifier_alerts_received_total", severity="critical") == 1
    assert metrics.total("notifier_alerts_received_total", severity="warning") == 1

    config = str(stack.config)
    as_json = await run_cli("report", "--since", "1h", "--config", config, "--format", "json")
    assert as_json.code == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    kpis = {kpi["key"]: kpi for kpi in report["kpis"]}
    assert kpis["peak_throughput"]["value"] > 0
    assert report["log"]["delivered"] == 6
    severities = {s["severity"]: s for s in report["alerts_by_severity"]}
    assert severities["critical"] == {"severity": "critical", "alerts": 4, "notifications": 4}
    assert severities["warning"] == {"severity": "warning", "alerts": 2, "notifications": 2}

    as_text = await run_cli("report", "--since", "1h", "--config", config)
    assert as_text.code == 0, as_text.stderr
    throughput = re.search(r"Peak throughput\s+(\S+)", as_text.stdout)
    assert throughput is not None and re.search(r"[1-9]", throughput.group(1)), as_text.stdout
    assert re.search(r"critical\s+4 alerts in 4 notifications", as_text.stdout), as_text.stdout
    assert re.search(r"warning\s+2 alerts in 2 notifications", as_text.stdout), as_text.stdout


async def test_a_shrinking_group_does_not_re_page_a_channel_without_send_resolved(
    tmp_path: Path,
) -> None:
    """B resolves in the group {A, B}: the channels with send_resolved hear it; the SMS
    channel (send_resolved off) heard nothing new, so it is not paged with A again."""
    binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    started = datetime.now(UTC) - timedelta(minutes=1)
    a = am_alert("DiskFull", "critical", started)
    b = am_alert("DiskFull", "critical", started)
    b["labels"] = {**b["labels"], "instance": "api-2:9100"}
    async with stand_ins() as local:
        channels = local.channels()
        channels[SMS] = {**channels[SMS], "send_resolved": False}
        config = write_config(tmp_path / "notifier.yaml", channels, SEVERITY_ROUTES)
        async with running_notifier(config, tmp_path) as notifier:
            am_config = alertmanager_config(f"{notifier.url}/api/v1/alerts")
            async with running_alertmanager(binary, am_config, tmp_path / "am") as am:
                stack = Stack(binary, tmp_path, config, local, notifier, am)
                await am.post_alerts([a, b])
                await stack.counts_reach({SMS: 1, SLACK: 1, EMAIL: 1, WEBHOOK: 1})
                await stack.settle()
                # Alertmanager may have flushed once between receiving a and b: count on.
                before = local.counts()

                await am.post_alerts([{**b, "endsAt": rfc3339(datetime.now(UTC))}])
                await stack.counts_reach({EMAIL: before[EMAIL] + 1, WEBHOOK: before[WEBHOOK] + 1})
                await stack.settle()

    resolution = local.sink.requests[-1].json()
    assert sorted(alert["status"] for alert in resolution["alerts"]) == ["firing", "resolved"]
    assert local.counts()[SMS] == before[SMS]
