"""Config loading: the shipped examples load, and every invalid fixture fails with its message."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from notifier.config import ConfigError, load_config, parse_config
from notifier.durations import format_duration, parse_duration
from notifier.testing import TEMPLATES_DIR

ROOT = Path(__file__).resolve().parent.parent
INVALID = sorted((ROOT / "tests/fixtures/invalid_configs").glob("*.yaml"))
SECRETS = {
    "NOTIFIER_TOKEN": "tok",
    "SMTP_USERNAME": "user",
    "SMTP_PASSWORD": "pw",
    "SLACK_BOT_TOKEN": "xoxb-1",
    "WEBHOOK_SECRET": "hmac",
    "TWILIO_ACCOUNT_SID": "AC1",
    "TWILIO_AUTH_TOKEN": "twilio",
}


def expected_errors(path: Path) -> list[str]:
    return [
        line.removeprefix("# error:").strip()
        for line in path.read_text().splitlines()
        if line.startswith("# error:")
    ]


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_config_reports_its_error(path: Path) -> None:
    expected = expected_errors(path)
    assert expected, f"{path.name} names no expected error"
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    message = str(caught.value)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_seed_config_loads_with_its_secrets() -> None:
    loaded = load_config(ROOT / "config/notifier.yaml", SECRETS)
    channels = loaded.config.channels
    assert {c.type for c in channels.values()} == {"email", "slack", "sms", "webhook"}
    assert channels["ops-email"].to == ["ops@autogrowth.com"]  # type: ignore[union-attr]
    assert [r.name for r in loaded.routes] == ["critical", "warning"]
    assert loaded.repeat_interval("critical") == timedelta(hours=1)
    assert loaded.repeat_interval("warning") == timedelta(hours=4)


def test_missing_secret_is_named_with_its_key() -> None:
    env = {k: v for k, v in SECRETS.items() if k != "TWILIO_AUTH_TOKEN"}
    with pytest.raises(ConfigError) as caught:
        load_config(ROOT / "config/notifier.yaml", env)
    assert caught.value.problems == [
        "channels.oncall-sms.auth_token: environment variable TWILIO_AUTH_TOKEN is not set"
    ]


def test_secrets_are_secret_str_and_never_printed() -> None:
    loaded = load_config(ROOT / "config/notifier.yaml", SECRETS)
    text = repr(loaded.config) + str(loaded.config.model_dump())
    for secret in ("pw", "xoxb-1", "hmac", "twilio", "tok"):
        assert f"'{secret}'" not in text


def test_demo_config_needs_no_environment() -> None:
    loaded = load_config(ROOT / "config/demo.yaml", {})
    assert all(c.type == "log" for c in loaded.config.channels.values())
    assert loaded.sqlite_path() == (ROOT / "data/demo.db")


def test_env_default_and_secret_file(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("from-file\n")
    text = """
server: {listen: "${LISTEN:-127.0.0.1:9999}"}
channels:
  hook: {type: webhook, url: "http://127.0.0.1:1/x", hmac_secret_file: secret.txt}
"""
    loaded = parse_config(text, tmp_path / "c.yaml", {})
    assert loaded.config.server.port == 9999
    hook = loaded.config.channels["hook"]
    assert hook.hmac_secret is not None and hook.hmac_secret.get_secret_value() == "from-file"  # type: ignore[union-attr]


def test_placeholders_let_routes_be_tested_without_secrets() -> None:
    loaded = load_config(ROOT / "config/notifier.yaml", {}, placeholders=True)
    assert loaded.config.channels["oncall-sms"].account_sid == "<TWILIO_ACCOUNT_SID>"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("1w", 604800)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def test_shutdown_grace_may_be_zero() -> None:
    # Unlike every other duration: 0s means "on SIGTERM, hand the sends under way back now".
    text = f"""
templates_dir: "{ROOT / "templates"}"
server: {{shutdown_grace: 0s}}
channels:
  log: {{type: log}}
"""
    loaded = parse_config(text, ROOT / "notifier.yaml", {})
    assert loaded.config.server.shutdown_grace == timedelta(0)


@pytest.mark.parametrize("text", ["", "5", "1x", "m5", "30m1h", "-1s", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_an_unread_ca_file_passes_where_placeholders_stand_in_for_secrets() -> None:
    text = f"""
templates_dir: "{TEMPLATES_DIR}"
channels:
  mail: {{type: email, host: h, from: a@example.com, to: [o@example.com], ca_file: missing.pem}}
"""
    loaded = parse_config(text, ROOT / "notifier.yaml", {}, placeholders=True)
    assert loaded.config.channels["mail"].ca == "<ca_file>"  # type: ignore[union-attr]
