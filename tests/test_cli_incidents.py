"""``notifier incidents`` against a real ``notifier serve``: the README's walk, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.processes import TOKEN, run_cli, running_notifier, wait_until
from tests.stand_ins import write_config

ENV = {"NOTIFIER_TOKEN": TOKEN}


def escalating_config(path: Path) -> Path:
    config = write_config(
        path,
        {"console": {"type": "log"}, "pager": {"type": "log", "template": "critical_alert.txt"}},
        [{"name": "critical", "matchers": ['severity="critical"'], "escalation": "oncall"}],
        storage={"url": "memory://"},
    )
    document = yaml.safe_load(config.read_text())
    document["responders"] = [{"name": "kim"}]
    document["escalation_policies"] = {
        "oncall": {
            "steps": [
                {"after": "0s", "channels": ["pager"]},
                {"after": "1h", "channels": ["console"]},
            ]
        }
    }
    config.write_text(yaml.safe_dump(document))
    return config


async def test_fire_list_ack_show_and_resolve(tmp_path: Path) -> None:
    config = escalating_config(tmp_path / "notifier.yaml")
    async with running_notifier(config, tmp_path) as notifier:
        url = ["--url", notifier.url]
        fired = await run_cli(
            "fire", "--severity", "critical", "--alertname", "TestPage", *url, env=ENV
        )
        assert fired.code == 0, fired.stderr

        async def paged() -> bool:
            listed = await run_cli("incidents", "list", "--json", *url, env=ENV)
            incidents = json.loads(listed.stdout)["incidents"]
            return len(incidents) == 1 and incidents[0]["pages_sent"] == 1

        await wait_until(paged, "step 1 of the incident", 20)
        listed = await run_cli("incidents", "list", "--state", "open", *url, env=ENV)
        assert listed.code == 0 and "open" in listed.stdout and "step 1/2" in listed.stdout
        incident_id = listed.stdout.split()[0]

        stranger = await run_cli("incidents", "ack", incident_id, "--by", "mallory", *url, env=ENV)
        assert stranger.code == 1 and "not a responder" in stranger.stderr
        unknown = await run_cli("incidents", "ack", "nope", "--by", "kim", *url, env=ENV)
        assert unknown.code == 1 and "404" in unknown.stderr
        no_token = await run_cli("incidents", "list", *url, env={"NOTIFIER_TOKEN": ""})
        assert no_token.code == 1 and "401" in no_token.stderr

        acked = await run_cli("incidents", "ack", incident_id, "--by", "kim", *url, env=ENV)
        assert acked.code == 0 and "acknowledged by kim" in acked.stdout
        again = await run_cli("incidents", "ack", incident_id, "--by", "kim", *url, env=ENV)
        assert again.code == 0 and "already acknowledged by kim" in again.stdout
        silenced = await run_cli(
            "incidents", "silence", incident_id, "--for", "1h", "--by", "kim", *url, env=ENV
        )
        assert silenced.code == 0 and "silenced until" in silenced.stdout

        resolved = await run_cli(
            "fire", "--severity", "critical", "--alertname", "TestPage", "--resolve", *url, env=ENV
        )
        assert resolved.code == 0, resolved.stderr
        shown = await run_cli("incidents", "show", incident_id, *url, env=ENV)
        assert shown.code == 0
        assert [line.split()[3] for line in shown.stdout.splitlines()[4:]] == [
            "opened:",
            "step:",
            "acknowledged:",
            "silenced:",
            "resolved",
        ]
        log = notifier.log()
        assert "Reply ACK" in log and "ACKNOWLEDGED by kim" in log and "RESOLVED" in log
