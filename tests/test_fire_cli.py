"""``notifier fire`` as an operator runs it: a real CLI process, a real ``notifier serve``
process, and local stand-ins of an SMTP server, Slack, Twilio and a webhook receiver.

- through the service, a critical test alert reaches all four channels, once each;
- ``--dry-run`` prints each channel's rendered message and sends nothing anywhere;
- ``--channel NAME`` sends straight through that one channel, without the service;
- ``--url`` (the base URL or the receiver's) needs no config file; without it the
  config's ``server.listen`` is the target.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.cli.fire import receiver_url
from tests.channel_support import free_port
from tests.processes import TOKEN, run_cli, running_notifier, scrape, wait_until
from tests.stand_ins import (
    ALL_CHANNELS,
    EMAIL,
    SEVERITY_ROUTES,
    SLACK,
    SMS,
    WEBHOOK,
    StandIns,
    stand_ins,
    write_config,
)

FIRE = ("fire", "--severity", "critical", "--alertname", "HighErrorRate")
NOTHING = {EMAIL: 0, SLACK: 0, SMS: 0, WEBHOOK: 0}


@pytest.fixture
async def local() -> AsyncIterator[StandIns]:
    async with stand_ins() as running:
        yield running


@pytest.fixture
def config(local: StandIns, tmp_path: Path) -> Path:
    return write_config(tmp_path / "notifier.yaml", local.channels(), SEVERITY_ROUTES)


async def test_fire_through_the_service_reaches_all_four_channels(
    local: StandIns, config: Path, tmp_path: Path
) -> None:
    async with running_notifier(config, tmp_path) as notifier:
        url = f"{notifier.url}/api/v1/alerts"
        result = await run_cli(*FIRE, "--config", str(config), "--url", url, "--token", TOKEN)
        assert result.code == 0, result.stderr
        assert result.stdout.startswith("202 ")
        assert json.loads(result.stdout[4:]) == {
            "accepted": 1,
            "notifications": 4,
            "deduplicated": 0,
        }
        await wait_until(
            lambda: local.counts() == {EMAIL: 1, SLACK: 1, SMS: 1, WEBHOOK: 1},
            "one notification in each channel",
            timeout=15,
        )
        await wait_until(notifier.idle, "notifier's queue to empty", timeout=10)
    assert local.counts() == {EMAIL: 1, SLACK: 1, SMS: 1, WEBHOOK: 1}
    assert "HighErrorRate" in local.twilio.delivered[0].body
    assert "HighErrorRate" in local.subjects()[0]


async def test_fire_with_a_url_needs_no_config_file(
    local: StandIns, config: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"  # no config/notifier.yaml here, no $NOTIFIER_CONFIG
    elsewhere.mkdir()
    async with running_notifier(config, tmp_path) as notifier:
        forms = [
            (notifier.url, ("--token", TOKEN), {}),  # the base URL, the token as an option
            (f"{notifier.url}/", (), {"NOTIFIER_TOKEN": TOKEN}),  # ... the token from the env
            (f"{notifier.url}/api/v1/alerts", (), {"NOTIFIER_TOKEN": TOKEN}),  # the receiver
        ]
        for index, (url, token, env) in enumerate(forms):
            fire = ("fire", "--severity", "critical", "--alertname", f"Fired{index}")
            result = await run_cli(*fire, "--url", url, *token, env=env, cwd=elsewhere)
            assert result.code == 0, f"{url}: {result.stderr}"
            assert result.stdout.startswith("202 "), result.stdout
        wrong = await run_cli(
            *FIRE, "--url", f"{notifier.url}/api/v2/alerts", "--token", TOKEN, cwd=elsewhere
        )
        assert wrong.code == 1
        assert "answered 404" in wrong.stderr and "base URL" in wrong.stderr, wrong.stderr
        await wait_until(
            lambda: local.counts() == {EMAIL: 3, SLACK: 3, SMS: 3, WEBHOOK: 3},
            "three notifications in each channel",
            timeout=15,
        )


async def test_fire_without_a_url_posts_to_server_listen(local: StandIns, tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "notifier.yaml",
        local.channels(),
        SEVERITY_ROUTES,
        server={"listen": f"127.0.0.1:{port}"},
    )
    async with running_notifier(config, tmp_path, port=port):
        result = await run_cli(*FIRE, "--config", str(config), "--token", TOKEN)
        assert result.code == 0, result.stderr
        assert result.stdout.startswith("202 ")
        await wait_until(
            lambda: local.counts() == {EMAIL: 1, SLACK: 1, SMS: 1, WEBHOOK: 1},
            "one notification in each channel",
            timeout=15,
        )


@pytest.mark.parametrize("url", ["127.0.0.1:9095", "ftp://127.0.0.1/", "http:///api/v1/alerts"])
async def test_fire_refuses_a_url_that_is_not_http(url: str, tmp_path: Path) -> None:
    result = await run_cli(*FIRE, "--url", url, "--token", TOKEN, cwd=tmp_path)
    assert result.code == 2
    assert "--url" in result.stderr and "http" in result.stderr, result.stderr


async def test_fire_with_a_wrong_token_fails_and_sends_nothing(
    local: StandIns, config: Path, tmp_path: Path
) -> None:
    async with running_notifier(config, tmp_path) as notifier:
        url = f"{notifier.url}/api/v1/alerts"
        result = await run_cli(*FIRE, "--config", str(config), "--url", url, "--token", "wrong")
        assert result.code == 1
        assert "401" in result.stdout + result.stderr
        assert TOKEN not in result.stdout + result.stderr
        assert await notifier.idle()
    assert local.counts() == NOTHING


async def test_dry_run_prints_every_rendered_message_and_sends_nothing(
    local: StandIns, config: Path, tmp_path: Path
) -> None:
    async with running_notifier(config, tmp_path) as notifier:
        url = f"{notifier.url}/api/v1/alerts"
        result = await run_cli(
            *FIRE, "--config", str(config), "--url", url, "--token", TOKEN, "--dry-run"
        )
        assert result.code == 0, result.stderr
        metrics = await scrape(f"{notifier.url}/metrics")
        assert metrics.total("notifier_http_requests_total") == 0  # the service heard nothing
    assert local.counts() == NOTHING
    assert local.slack.requests == [] and local.twilio.requests == []

    out = result.stdout
    headers = re.findall(r"^--- (\S+) \((\w+)\) via route (\S+)$", out, re.MULTILINE)
    assert headers == [
        (SMS, "sms", "critical"),
        (SLACK, "slack", "critical"),
        (EMAIL, "email", "critical"),
        (WEBHOOK, "webhook", "critical"),
    ]
    sections = re.split(r"^--- \S+ \(\w+\) via route \S+$", out, flags=re.MULTILINE)[1:]
    assert all("HighErrorRate" in section for section in sections), out
    # Secrets of the config stay out of the preview.
    assert local.slack.token not in out and local.twilio.auth_token not in out


@pytest.mark.parametrize("channel", ALL_CHANNELS)
async def test_channel_option_sends_straight_through_one_channel(
    local: StandIns, config: Path, channel: str
) -> None:
    result = await run_cli(*FIRE, "--config", str(config), "--channel", channel)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(f"{channel}: delivered")
    assert local.counts() == {**NOTHING, channel: 1}


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("http://127.0.0.1:9095", "http://127.0.0.1:9095/api/v1/alerts"),
        ("http://127.0.0.1:9095/", "http://127.0.0.1:9095/api/v1/alerts"),
        (" https://notifier.example ", "https://notifier.example/api/v1/alerts"),
        ("http://[::1]:9095", "http://[::1]:9095/api/v1/alerts"),
        ("http://127.0.0.1:9095/api/v1/alerts", "http://127.0.0.1:9095/api/v1/alerts"),
        ("https://proxy.example/notifier/in", "https://proxy.example/notifier/in"),  # as given
    ],
)
def test_receiver_url(given: str, used: str) -> None:
    assert receiver_url(given) == used


@pytest.mark.parametrize("given", ["", "localhost:9095", "http://127.0.0.1:99999", "//host/x"])
def test_receiver_url_refuses(given: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        receiver_url(given)
