"""The ``notifier`` command (DESIGN §3a). Exit codes: 0 ok, 1 the check failed, 2 usage error.

Every command runs the production code path through the composition root
(``notifier.runtime``); this module only parses arguments and prints. It reads the
environment once, here, and hands it on.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from notifier import __version__
from notifier.channels.webhook import safe_url as redact_url
from notifier.cli.common import config_option, fail, load_or_exit, parse_pairs
from notifier.cli.windows import (
    channel_states,
    interval_lines,
    parse_instant,
    route_window_text,
    state_text,
)
from notifier.config import ConfigError, check_listen
from notifier.durations import format_duration
from notifier.heartbeats.state import matching
from notifier.routing import RoutingDecision, route_labels


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="notifier")
def cli() -> None:
    """notifier: routes Alertmanager's alerts to email, Slack, SMS and webhooks."""


def _listen(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        return None if value is None else check_listen(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@config_option
@click.option(
    "--listen", callback=_listen, help="HOST:PORT to listen on (overrides server.listen)."
)
@click.option(
    "--log-level",
    default=lambda: os.environ.get("NOTIFIER_LOG_LEVEL", "info"),
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    show_default="$NOTIFIER_LOG_LEVEL or info",
)
def serve(config_path: Path, listen: str | None, log_level: str) -> None:
    """Run the receiver and the dispatcher in one process."""
    from notifier.serve import run_server

    try:
        run_server(config_path, os.environ, listen=listen, log_level=log_level)
    except ConfigError as exc:
        fail(str(exc))


@cli.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the config, compile and trial-render every template, list channels and routes."""
    from notifier.runtime import load_checked

    try:
        loaded = load_checked(config_path, os.environ)
    except ConfigError as exc:
        fail(str(exc))
    config = loaded.config
    click.echo(f"{config_path}: ok (hash {loaded.digest})")
    click.echo(f"store: {redact_url(config.storage.url)}")
    click.echo("channels:")
    for name, channel in config.channels.items():
        click.echo(f"  {name} ({channel.type})")
    click.echo("routes:")
    for route in loaded.routes:
        matchers = ", ".join(str(m) for m in route.matchers) or "(every alert)"
        flow = " [continue]" if route.continue_matching else ""
        window = route_window_text(loaded, route.name)
        click.echo(f"  {route.name}: {matchers} -> {', '.join(route.channels)}{flow}{window}")
    for heartbeat in loaded.heartbeats:
        matchers = ", ".join(str(m) for m in heartbeat.matchers)
        timeout = format_duration(timedelta(seconds=heartbeat.timeout))
        channels = ", ".join(heartbeat.channels)
        click.echo(f"heartbeat {heartbeat.name}: {matchers}, timeout {timeout} -> {channels}")
    click.echo(f"default_channels: {', '.join(config.default_channels) or '(none)'}")
    if loaded.windows.intervals:
        click.echo("time_intervals:")
        for line in interval_lines(loaded, datetime.now(UTC)):
            click.echo(line)
    if config.escalation_policies:
        click.echo("escalation_policies:")
    for name, policy in config.escalation_policies.items():
        steps = "; ".join(
            f"+{format_duration(s.after)} {', '.join(s.channels)}" for s in policy.steps
        )
        users = [r.name for r in config.routes if r.escalation == name]
        click.echo(f"  {name}: {steps} (routes: {', '.join(users) or 'none'})")


@cli.group()
def routes() -> None:
    """Inspect routing."""


@routes.command("test")
@config_option
@click.argument("labels", nargs=-1, required=True)
@click.option("--expect", help="Comma-separated channels the alert must reach; exit 1 otherwise.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option(
    "--at",
    callback=parse_instant,
    help="An ISO 8601 time with offset: say which channels are active or muted then.",
)
def routes_test(
    config_path: Path,
    labels: tuple[str, ...],
    expect: str | None,
    as_json: bool,
    at: datetime | None,
) -> None:
    """Which routes and channels an alert with LABEL=VALUE... reaches (and, --at, whether
    their time windows let it through then)."""
    loaded = load_or_exit(config_path, placeholders=True)
    alert_labels = parse_pairs(labels, "LABELS")
    # A heartbeat's alerts renew it and are routed nowhere.
    renews = [heartbeat.name for heartbeat in matching(loaded.heartbeats, alert_labels)]
    decision = (
        RoutingDecision((), ())
        if renews
        else route_labels(alert_labels, loaded.routes, loaded.config.default_channels)
    )
    channels = list(decision.channel_names)
    expected = [c.strip() for c in expect.split(",") if c.strip()] if expect is not None else None
    matches = expected is None or sorted(expected) == sorted(channels)
    states = None if at is None else channel_states(loaded, decision, at)
    if as_json:
        answer: dict[str, object] = {
            "routes": list(decision.routes),
            "channels": channels,
            "heartbeats": renews,
            "expected": expected,
            "ok": matches,
        }
        if states is not None:
            answer["at"] = at.isoformat() if at else None
            answer["windows"] = states
        click.echo(json.dumps(answer))
    else:
        if renews:
            click.echo(f"heartbeats: {', '.join(renews)} (renewed, not routed)")
        else:
            click.echo(f"routes: {', '.join(decision.routes) or '(none: default_channels)'}")
        click.echo(f"channels: {', '.join(channels) or '(none)'}")
        if states is not None and at is not None:
            click.echo(f"at {at.isoformat()}:")
            for state in states:
                click.echo(f"  {state_text(state)}")
    if not matches:
        fail(f"expected {', '.join(expected or [])}, got {', '.join(channels) or '(none)'}")


# Commands that live in their own modules register here, after the group exists.
from notifier.cli import fire, incidents, ops  # noqa: E402

for _command in (
    fire.render,
    fire.fire,
    ops.dead_letters,
    ops.report,
    ops.loadtest,
    incidents.incidents,
):
    cli.add_command(_command)


def main() -> None:
    cli()
