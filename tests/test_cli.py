"""The CLI's checks, as an operator and a CI job would run them (exit codes of DESIGN §3a)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from notifier.cli import cli
from tests.conftest import FIXTURES, ROOT
from tests.test_config import SECRETS

SEED = str(ROOT / "config/notifier.yaml")
CRITICAL = ["oncall-sms", "alerts-slack", "ops-email", "ops-webhook"]


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env=env or {})
    return result.exit_code, result.stdout, result.stderr


def test_check_config_passes_with_the_secrets_set() -> None:
    code, out, _ = run(["check-config", "--config", SEED], SECRETS)
    assert code == 0
    assert (
        'critical: severity="critical" -> oncall-sms, alerts-slack, ops-email, ops-webhook' in out
    )
    for secret in ("pw", "xoxb-1", "hmac", "twilio"):
        assert secret not in out.split()


def test_check_config_names_a_missing_secret() -> None:
    env = {k: v for k, v in SECRETS.items() if k != "SLACK_BOT_TOKEN"}
    env["SLACK_BOT_TOKEN"] = ""  # CliRunner merges env: blank it out explicitly
    code, _, err = run(["check-config", "--config", SEED], env)
    assert code == 1
    assert "SLACK_BOT_TOKEN" in err
    assert "channels.alerts-slack.token" in err


def test_check_config_names_an_undefined_channel_and_a_bad_regex(tmp_path: Path) -> None:
    config = (ROOT / "tests/fixtures/invalid_configs/several_problems.yaml").read_text()
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    code, _, err = run(["check-config", "--config", str(path)])
    assert code == 1
    assert "undefined channel 'pager'" in err
    assert "invalid regex '[crit'" in err


def test_check_config_trial_renders_templates(tmp_path: Path) -> None:
    (tmp_path / "broken.txt").write_text("{{ alerts[0].labels.alertname | nosuchfilter }}")
    path = tmp_path / "c.yaml"
    path.write_text(
        f"templates_dir: {tmp_path}\nchannels:\n  log: {{type: log, template: broken.txt}}\n"
    )
    code, _, err = run(["check-config", "--config", str(path)])
    assert code == 1
    assert "channels.log.template" in err and "nosuchfilter" in err


def test_check_config_trial_renders_digest_templates(tmp_path: Path) -> None:
    (tmp_path / "storm.txt").write_text("{{ digest.nosuchfield.x }}")
    path = tmp_path / "c.yaml"
    sms = (
        "{type: sms, account_sid: AC1, auth_token: t, from: '+15005550006',"
        " to: ['+15005550007'], digest_template: storm.txt}"
    )
    path.write_text(f"templates_dir: {tmp_path}\nchannels:\n  pager: {sms}\n")
    code, _, err = run(["check-config", "--config", str(path)])
    assert code == 1
    assert "channels.pager.digest_template" in err and "nosuchfield" in err


def test_routes_test_prints_the_critical_channels() -> None:
    code, out, _ = run(
        ["routes", "test", "--config", SEED, "severity=critical", "alertname=HighErrorRate"]
    )
    assert code == 0
    assert f"channels: {', '.join(CRITICAL)}" in out


def test_routes_test_json_and_expect() -> None:
    code, out, _ = run(
        [
            "routes",
            "test",
            "--config",
            SEED,
            "severity=warning",
            "--json",
            "--expect",
            "ops-email,alerts-slack",
        ]
    )
    assert code == 0
    assert json.loads(out) == {
        "routes": ["warning"],
        "channels": ["alerts-slack", "ops-email"],
        "heartbeats": [],
        "expected": ["ops-email", "alerts-slack"],
        "ok": True,
    }
    code, _, err = run(
        ["routes", "test", "--config", SEED, "severity=warning", "--expect", "oncall-sms"]
    )
    assert code == 1
    assert "expected oncall-sms" in err


@pytest.mark.parametrize(
    "args", [["routes", "test", "--config", SEED, "severity"], ["nope"], ["fire"]]
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert run(args)[0] == 2


def test_render_a_template_against_a_fixture() -> None:
    payload = str(FIXTURES / "firing_single.json")
    code, out, _ = run(["render", "--config", SEED, "performance_alert.json", "--payload", payload])
    assert code == 0
    message = json.loads(out)
    assert "InstanceDown" in message["text"]
    assert message["blocks"][0]["type"] == "header"


def test_fire_dry_run_prints_routing_and_messages_and_sends_nothing() -> None:
    code, out, _ = run(
        [
            "fire",
            "--config",
            SEED,
            "--severity",
            "critical",
            "--alertname",
            "HighErrorRate",
            "--dry-run",
        ]
    )
    assert code == 0, out
    for channel in CRITICAL:
        assert f"--- {channel} (" in out
    assert "HighErrorRate" in out


def test_serve_with_a_bad_listen_is_a_usage_error() -> None:
    code, _, err = run(["serve", "--config", str(ROOT / "config/demo.yaml"), "--listen", "abc"])
    assert code == 2
    assert "listen must be HOST:PORT, got 'abc'" in err


def test_a_heartbeat_alert_is_listed_and_routed_nowhere() -> None:
    code, out, _ = run(["check-config", "--config", SEED], SECRETS)
    assert code == 0
    assert (
        'heartbeat watchdog: alertname="Watchdog", timeout 10m -> oncall-sms, alerts-slack' in out
    )
    code, out, _ = run(["routes", "test", "--config", SEED, "alertname=Watchdog", "--expect", ""])
    assert code == 0, out
    assert "heartbeats: watchdog (renewed, not routed)" in out
    assert "channels: (none)" in out
