"""Escalation pages and announcements as every seed template and fallback renders them:
which incident, which step of how many, who else was paged, how to acknowledge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from notifier.channels.registry import open_channels
from notifier.channels.sms_segments import segment_info
from notifier.cli import cli
from notifier.notification import IncidentContext, Notification
from notifier.runtime import sample_notification
from notifier.store.memory import MemoryStore
from notifier.templates import (
    FALLBACK_HTML,
    FALLBACK_SLACK,
    FALLBACK_TEXT,
    Renderer,
    template_context,
)
from notifier.testing import config_for_tests, make_payload

CONTEXT = IncidentContext(
    id="a1b2c3d4e5f6",
    state="open",
    policy="oncall",
    step=2,
    steps=3,
    opened_at=1_800_000_000.0,
    ack_code="4821",
    paged_channels=("alerts-slack", "oncall-sms"),
    others_paged=("alerts-slack",),
    ack_url="https://notifier.example.com/api/v1/incidents/a1b2c3d4e5f6/ack",
    ack_command="notifier incidents ack a1b2c3d4e5f6 --by NAME",
)


def page(channel: str, **payload: Any) -> Notification:
    notification = sample_notification(make_payload(**payload), channel)
    return notification.model_copy(update={"kind": "page", "incident": CONTEXT})


def announcement(channel: str) -> Notification:
    context = CONTEXT.model_copy(
        update={
            "state": "acknowledged",
            "announcement": "acknowledged",
            "by": "kim",
            "acknowledged_at": 1_800_000_060.0,
        }
    )
    notification = sample_notification(make_payload(), channel)
    return notification.model_copy(update={"kind": "announcement", "incident": context})


@pytest.mark.parametrize(
    "template", ["critical_alert.txt", "performance_alert.json", "performance_alert.html"]
)
def test_a_seed_template_shows_the_page_and_the_announcement(template: str) -> None:
    renderer = Renderer(config_for_tests({"c": {}}, []).templates_dir)
    failures: list[str] = []
    renderer._on_fallback = lambda channel, name: failures.append(name)
    text = renderer.render_file(template, template_context(page("c"), "x"), "").text
    for expected in ("a1b2c3d4e5f6", "2", "3", "alerts-slack", "ACK 4821"):
        assert expected in text
    told = renderer.render_file(template, template_context(announcement("c"), "x"), "").text
    assert "a1b2c3d4e5f6" in told and "kim" in told and "ACKNOWLEDGED" in told.upper()
    assert "ACK 4821" not in told
    if template.endswith(".json"):
        message = json.loads(text)
        assert "step 2 of 3" in json.dumps(message)
    assert failures == []


def test_an_alert_without_an_incident_renders_as_before() -> None:
    renderer = Renderer(config_for_tests({"c": {}}, []).templates_dir)
    context = template_context(sample_notification(make_payload(), "c"), "sms")
    text = renderer.render_file("critical_alert.txt", context, "").text
    assert text.startswith("[FIRING] TestAlert critical") and "ACK" not in text


@pytest.mark.parametrize("fallback", [FALLBACK_TEXT, FALLBACK_HTML, FALLBACK_SLACK])
def test_the_fallbacks_say_how_to_acknowledge(fallback: str) -> None:
    renderer = Renderer(config_for_tests({"c": {}}, []).templates_dir)
    text = renderer.fall_back("broken", ValueError("x"), fallback, template_context(page("c"), "x"))
    assert "a1b2c3d4e5f6" in text.text and "notifier incidents ack" in text.text


async def test_a_long_sms_page_is_trimmed_before_its_reply_line() -> None:
    loaded = config_for_tests(
        {
            "sms": {
                "type": "sms",
                "account_sid": "AC1",
                "auth_token": "t",
                "from": "+15005550006",
                "to": ["+15005550007"],
                "template": "critical_alert.txt",
                "max_segments": 1,
            }
        },
        [],
    )
    channels = await open_channels(loaded, Renderer(loaded.templates_dir), MemoryStore())
    try:
        long = page("sms", annotations={"summary": "word " * 100})
        body = channels["sms"].preview(long).partition("\n")[2]
    finally:
        await channels.aclose()
    assert body.endswith("Reply ACK 4821") and "..." in body
    assert segment_info(body).segments == 1


async def test_a_webhook_page_carries_the_incident() -> None:
    loaded = config_for_tests({"hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}}, [])
    channels = await open_channels(loaded, Renderer(loaded.templates_dir), MemoryStore())
    try:
        hook = channels["hook"]
        body = json.loads(hook.body(page("hook")))  # type: ignore[attr-defined]
        plain = json.loads(hook.body(sample_notification(make_payload(), "hook")))  # type: ignore[attr-defined]
    finally:
        await channels.aclose()
    assert body["notifier"]["kind"] == "page"
    assert body["notifier"]["incident"]["ack_code"] == "4821"
    assert set(plain["notifier"]) == {"channel", "route", "job_id"}


def test_check_config_renders_templates_as_pages_too_and_lists_the_policies(
    tmp_path: Path,
) -> None:
    (tmp_path / "page.txt").write_text(
        "{{ common_labels.alertname }}{% if incident %} {{ incident.no_such_field }}{% endif %}"
    )
    config = tmp_path / "notifier.yaml"
    config.write_text(
        f"""
storage: {{url: "memory://"}}
templates_dir: "{tmp_path}"
channels:
  pager: {{type: log, template: page.txt}}
escalation_policies:
  oncall: {{steps: [{{after: 0s, channels: [pager]}}]}}
routes:
  - {{name: critical, escalation: oncall}}
"""
    )
    result = CliRunner().invoke(cli, ["check-config", "--config", str(config)])
    assert result.exit_code == 1
    assert "channels.pager.template: UndefinedError" in result.output
    assert "(as an escalation page)" in result.output
    (tmp_path / "page.txt").write_text("{{ common_labels.alertname }}")
    result = CliRunner().invoke(cli, ["check-config", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "oncall: +0s pager (routes: critical)" in result.output
