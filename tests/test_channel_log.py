"""The log channel: one JSON line per notification; a stream it cannot write fails the send."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.channels.base import FailureReason, RetryableError
from notifier.channels.log import LogChannel
from notifier.channels.registry import Channels, open_channels
from notifier.config import LoadedConfig
from notifier.config import LogChannel as LogConfig
from notifier.store.memory import MemoryStore
from notifier.templates import Renderer
from tests.channel_support import fixture, load, notification


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[LoadedConfig, Channels]]:
    loaded = load(
        tmp_path,
        {
            "plain": {"type": "log"},
            "sms-preview": {"type": "log", "template": "critical_alert.txt"},
            "slack-preview": {"type": "log", "template": "performance_alert.json"},
        },
    )
    channels = await open_channels(loaded, Renderer(loaded.templates_dir), MemoryStore())
    yield loaded, channels
    await channels.aclose()


async def test_writes_one_json_line_to_stdout(
    opened: tuple[LoadedConfig, Channels], capsys: pytest.CaptureFixture[str]
) -> None:
    loaded, channels = opened
    note = notification(loaded, "plain", fixture("grouped_firing_4_alerts"))

    receipt = await channels["plain"].send(note)

    out = capsys.readouterr().out
    assert out.count("\n") == 1
    line = json.loads(out)
    assert line == {
        "channel": "plain",
        "route": "all",
        "job_id": note.job_id,
        "status": "firing",
        "group_key": note.group_key,
        "alerts": 4,
        "message": line["message"],
    }
    assert line["message"].startswith("[FIRING] HighCPUUsage (4 alerts)\n- HighCPUUsage")
    assert receipt.detail == "written"


async def test_configured_template_is_the_message(
    opened: tuple[LoadedConfig, Channels], capsys: pytest.CaptureFixture[str]
) -> None:
    loaded, channels = opened
    sms = notification(loaded, "sms-preview", fixture("resolved_single"))
    slack = notification(loaded, "slack-preview", fixture("resolved_single"))

    await channels["sms-preview"].send(sms)
    await channels["slack-preview"].send(slack)

    sms_line, slack_line = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert sms_line["message"].startswith("[RESOLVED] InstanceDown critical:")
    assert sms_line["status"] == "resolved"
    assert json.loads(slack_line["message"])["text"] == "RESOLVED: InstanceDown (1 alert)"


async def test_preview_is_the_line_and_writes_nothing(
    opened: tuple[LoadedConfig, Channels], capsys: pytest.CaptureFixture[str]
) -> None:
    loaded, channels = opened
    note = notification(loaded, "plain", fixture("firing_single"))

    preview = channels["plain"].preview(note)

    assert json.loads(preview)["job_id"] == note.job_id
    assert capsys.readouterr().out == ""


async def test_injected_stream_is_written(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"plain": {"type": "log"}})
    config = loaded.config.channels["plain"]
    assert isinstance(config, LogConfig)
    note = notification(loaded, "plain", fixture("firing_single"))
    stream = io.StringIO()

    receipt = await LogChannel("plain", config, Renderer(loaded.templates_dir), stream=stream).send(
        note
    )

    assert json.loads(stream.getvalue())["alerts"] == 1
    assert receipt.detail == "written"


async def test_a_stream_it_cannot_write_fails_the_send_retryably(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"plain": {"type": "log"}})
    config = loaded.config.channels["plain"]
    assert isinstance(config, LogConfig)
    note = notification(loaded, "plain", fixture("firing_single"))
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: writing raises BrokenPipeError (an OSError)
    closed = io.StringIO()
    closed.close()  # writing raises ValueError

    broken_pipe = os.fdopen(write_end, "w")
    try:
        for stream, error in ((broken_pipe, "BrokenPipeError"), (closed, "ValueError")):
            channel = LogChannel("plain", config, Renderer(loaded.templates_dir), stream=stream)
            with pytest.raises(RetryableError) as raised:
                await channel.send(note)
            assert raised.value.reason is FailureReason.OTHER
            assert error in str(raised.value)
    finally:
        with contextlib.suppress(BrokenPipeError):  # the unwritten line is flushed once more
            broken_pipe.close()
