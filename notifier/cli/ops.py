"""Operator commands over the store and a running service: dead letters, report, load test."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from notifier.cli.common import config_option, fail, load_or_exit
from notifier.config import LoadedConfig
from notifier.durations import parse_duration
from notifier.loadtest import LoadtestOptions, render_json, render_text, run_loadtest
from notifier.report import run_report
from notifier.store import open_store
from notifier.store.base import Store, StoreUnavailable

T = TypeVar("T")


def _duration_seconds(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _with_store(loaded: LoadedConfig, action: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = open_store(loaded)
        try:
            await store.open()
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreUnavailable as exc:
        fail(f"store unavailable: {exc}")


@click.group("dead-letters")
def dead_letters() -> None:
    """Inspect, replay and purge dead letters (works with the service running or not)."""


@dead_letters.command("list")
@config_option
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def dead_letters_list(config_path: Path, limit: int, as_json: bool) -> None:
    """List dead letters, newest first."""
    letters = _with_store(
        load_or_exit(config_path, placeholders=True), lambda s: s.dead_letters(limit)
    )
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "id": d.id,
                        "channel": d.channel,
                        "reason": d.reason,
                        "error": d.error,
                        "attempts": d.attempts,
                        "last_attempt_at": d.last_attempt_at,
                        "alerts": len(d.notification.alerts),
                    }
                    for d in letters
                ]
            )
        )
        return
    if not letters:
        click.echo("no dead letters")
    for d in letters:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.last_attempt_at or 0))
        click.echo(
            f"{d.id}  {d.channel}  {d.reason}  attempts={d.attempts}  last={when}Z  {d.error}"
        )


@dead_letters.command("replay")
@config_option
@click.argument("job_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
def dead_letters_replay(config_path: Path, job_id: str | None, replay_all: bool) -> None:
    """Put dead letter JOB_ID (or --all) back in the queue, due now."""
    if bool(job_id) == replay_all:
        raise click.UsageError("give a dead letter ID or --all, not both")
    loaded = load_or_exit(config_path, placeholders=True)
    now = time.time()
    if replay_all:
        count = _with_store(loaded, lambda s: s.replay_all(now))
        click.echo(f"replayed {count} dead letters")
        return
    assert job_id is not None
    if not _with_store(loaded, lambda s: s.replay(job_id, now)):
        fail(f"no dead letter {job_id}")
    click.echo(f"replayed {job_id}")


@dead_letters.command("purge")
@config_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dead_letters_purge(config_path: Path, yes: bool) -> None:
    """Delete every dead letter."""
    if not yes:
        click.confirm("Delete every dead letter?", abort=True)
    count = _with_store(
        load_or_exit(config_path, placeholders=True), lambda s: s.purge_dead_letters()
    )
    click.echo(f"purged {count} dead letters")


@click.command()
@config_option
@click.option(
    "--since",
    default="24h",
    show_default=True,
    callback=_duration_seconds,
    help="The period, as a duration (24h, 1h30m).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file instead of stdout.",
)
def report(config_path: Path, since: float, fmt: str, output: Path | None) -> None:
    """The daily performance report from the delivery log."""
    loaded = load_or_exit(config_path, placeholders=True)
    text = _with_store(loaded, lambda s: run_report(s, since, fmt, time.time()))
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


@click.command()
@click.option("--url", required=True, help="The receiver, e.g. http://127.0.0.1:9095/api/v1/alerts")
@click.option("--duration", default="30s", show_default=True, callback=_duration_seconds)
@click.option("--concurrency", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--alerts-per-payload", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--max-requests", default=1_000_000, show_default=True, type=click.IntRange(1))
@click.option("--token", envvar="NOTIFIER_TOKEN", help="Bearer token ($NOTIFIER_TOKEN).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def loadtest(
    url: str,
    duration: float,
    concurrency: int,
    alerts_per_payload: int,
    max_requests: int,
    token: str | None,
    fmt: str,
) -> None:
    """The seed's load tester: bounded in time and count, with a progress bar."""
    options = LoadtestOptions(
        url=url,
        duration=duration,
        concurrency=concurrency,
        alerts_per_payload=alerts_per_payload,
        max_requests=max_requests,
        token=token,
    )
    with click.progressbar(
        length=options.progress_steps, label="load testing", file=sys.stderr
    ) as bar:
        result = asyncio.run(run_loadtest(options, bar.update))
    click.echo(render_json(result) if fmt == "json" else render_text(result))
