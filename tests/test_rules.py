"""The Prometheus alert rules in config/: valid for real promtool, complete, and firing as meant."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.durations import parse_duration
from tests.binaries import require_binary
from tests.promql_names import exported_metrics, referenced_metrics

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "config" / "prometheus-rules.yml"
RULES_TEST = ROOT / "tests" / "fixtures" / "rules_test.yml"
RUNBOOK = "https://github.com/autogrowth/notifier/blob/main/docs/operations.md#"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool", package="prometheus"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


WATCHDOG = "Watchdog"  # always firing, by design: it renews notifier's heartbeat


def _alert_rules(*, with_watchdog: bool = False) -> list[dict[str, Any]]:
    """The alerts about notifier itself (and, when asked, the Watchdog)."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        rule
        for group in groups
        for rule in group["rules"]
        if "alert" in rule and (with_watchdog or rule["alert"] != WATCHDOG)
    ]


def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_rules(with_watchdog=True))} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A half-open circuit must not fire NotifierCircuitOpen: expecting it to is caught."""
    wrong = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'notifier_circuit_breaker_state{channel="c",type="slack"}',
                        "values": "1x20",
                    }
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "NotifierCircuitOpen",
                        "exp_alerts": [{"exp_labels": {"severity": "warning", "channel": "c"}}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "wrong_test.yml"
    path.write_text(yaml.safe_dump(wrong))
    result = _promtool("test", "rules", str(path))
    assert result.returncode != 0
    assert "NotifierCircuitOpen" in result.stdout + result.stderr


def test_the_seed_and_operations_alerts_are_all_there() -> None:
    names = {rule["alert"] for rule in _alert_rules()}
    assert names >= {
        "NotifierDown",
        "NotifierHighResponseTime",
        "NotifierHighErrorRate",
        "NotifierLowThroughput",
        "NotifierDeliveryFailureRate",
        "NotifierHighCPU",
        "NotifierHighMemory",
        "NotifierDeadLettersGrowing",
        "NotifierCircuitOpen",
        "NotifierQueueBacklog",
        "NotifierConfigReloadFailed",
        "NotifierRateLimitSaturated",
    }


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_is_complete(rule: dict[str, Any]) -> None:
    assert rule.get("for"), "every alert waits a while before firing"
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    assert annotations["runbook_url"] == RUNBOOK + rule["alert"].lower()


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_queries_exported_metrics(rule: dict[str, Any]) -> None:
    names, exported = referenced_metrics(rule["expr"]), exported_metrics()
    assert names, "the expression selects no metric"
    assert names <= exported, f"not exported: {names - exported}"


def test_every_alert_has_its_runbook_section() -> None:
    """Each rule's runbook_url anchor resolves to a heading of docs/operations.md."""
    rules = yaml.safe_load(RULES.read_text())["groups"]
    page = (RULES.parent.parent / "docs/operations.md").read_text()
    headings = {line[3:].strip().lower() for line in page.splitlines() if line.startswith("## ")}
    for group in rules:
        for rule in group["rules"]:
            assert rule["alert"].lower() in headings, rule["alert"]


def test_the_alertmanager_example_is_valid_for_the_real_alertmanager() -> None:
    amtool = require_binary("amtool", "prometheus-alertmanager")
    result = subprocess.run(
        [amtool, "check-config", str(RULES.parent / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 receivers" in result.stdout


def test_the_watchdog_fires_always_and_reaches_notifier_within_the_heartbeat_timeout() -> None:
    (watchdog,) = [r for r in _alert_rules(with_watchdog=True) if r["alert"] == WATCHDOG]
    assert watchdog["expr"] == "vector(1)"
    assert "for" not in watchdog
    amtool = require_binary("amtool", "prometheus-alertmanager")
    config = RULES.parent / "alertmanager.yml"
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", f"alertname={WATCHDOG}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["notifier"]
    (route,) = [
        r
        for r in yaml.safe_load(config.read_text())["route"]["routes"]
        if f'alertname="{WATCHDOG}"' in r["matchers"]
    ]
    notifier = yaml.safe_load((RULES.parent / "notifier.yaml").read_text())
    (heartbeat,) = [h for h in notifier["heartbeats"] if f'alertname="{WATCHDOG}"' in h["matchers"]]
    repeat = parse_duration(route["repeat_interval"]) + parse_duration(route["group_interval"])
    assert repeat < parse_duration(heartbeat["timeout"]) / 2
