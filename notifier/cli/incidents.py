"""``notifier incidents``: list, show, acknowledge, un-acknowledge and silence incidents of a
running service, through its HTTP API (DESIGN §3a, §8) with the service's credentials."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import click

from notifier.cli.common import config_option, fail, load_or_exit


def _base_url(config_path: Path, url: str | None) -> str:
    if url is None:
        return f"http://{load_or_exit(config_path, placeholders=True).config.server.listen}"
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--url")
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


async def _call(
    method: str, url: str, token: str | None, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.request(method, url, json=body, headers=headers) as response,
        ):
            try:
                answer = await response.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                answer = {}
            if response.status >= 400:
                error = answer.get("error") if isinstance(answer, dict) else None
                fail(f"{url} answered {response.status}: {error or response.reason}")
            return answer if isinstance(answer, dict) else {}
    except (aiohttp.ClientError, TimeoutError) as exc:
        fail(f"cannot reach {url}: {type(exc).__name__}: {exc}")


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _alertname(incident: dict[str, Any]) -> str:
    alerts = incident.get("alerts") or [{}]
    return str(alerts[0].get("labels", {}).get("alertname", "-"))


def _line(incident: dict[str, Any]) -> str:
    step = f"{incident['step']}/{incident['steps']}"
    acked = incident.get("acknowledged_by") or "-"
    return (
        f"{incident['id']}  {incident['state']:<12} step {step:<5} {incident['policy']:<16}"
        f" {_alertname(incident):<24} opened {_when(incident['opened_at'])}  ack {acked}"
    )


def _show(incident: dict[str, Any]) -> None:
    click.echo(_line(incident))
    click.echo(f"  route {incident['route']}, group {incident['group_key']}")
    click.echo(f"  paged: {', '.join(incident['paged_channels']) or '(nobody yet)'}")
    click.echo(f"  ack code {incident['ack_code']}")
    for entry in incident["timeline"]:
        detail = f": {entry['detail']}" if entry["detail"] else ""
        click.echo(f"  {_when(entry['at'])}  {entry['event']}{detail}")


url_option = click.option(
    "--url", help="The service's base URL (http://HOST:PORT). Default: http://<server.listen>."
)
token_option = click.option(
    "--token",
    default=lambda: os.environ.get("NOTIFIER_TOKEN"),
    show_default="$NOTIFIER_TOKEN",
    help="Bearer token of the service.",
)
by_option = click.option(
    "--by",
    default=lambda: os.environ.get("NOTIFIER_RESPONDER") or os.environ.get("USER", ""),
    show_default="$NOTIFIER_RESPONDER or $USER",
    help="The responder (a name under responders:).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")


@click.group("incidents")
def incidents() -> None:
    """Incidents of a running service: list, show, ack, unack, silence."""


@incidents.command("list")
@config_option
@url_option
@token_option
@json_option
@click.option("--state", type=click.Choice(["open", "all"]), default="all", show_default=True)
def list_command(
    config_path: Path, url: str | None, token: str | None, as_json: bool, state: str
) -> None:
    """Incidents, open ones first, newest first."""
    answer = _get(config_path, url, token, f"/api/v1/incidents?state={state}")
    if as_json:
        click.echo(json.dumps(answer))
        return
    if not answer.get("incidents"):
        click.echo("no incidents")
    for incident in answer.get("incidents", []):
        click.echo(_line(incident))


@incidents.command("show")
@config_option
@url_option
@token_option
@json_option
@click.argument("incident_id")
def show_command(
    config_path: Path, url: str | None, token: str | None, as_json: bool, incident_id: str
) -> None:
    """One incident and its timeline."""
    answer = _get(config_path, url, token, f"/api/v1/incidents/{incident_id}")
    if as_json:
        click.echo(json.dumps(answer))
        return
    _show(answer["incident"])


def _get(config_path: Path, url: str | None, token: str | None, path: str) -> dict[str, Any]:
    return asyncio.run(_call("GET", _base_url(config_path, url) + path, token))


def _act(
    config_path: Path,
    url: str | None,
    token: str | None,
    incident_id: str,
    action: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    if not body.get("by"):
        raise click.UsageError("name the responder with --by")
    base = _base_url(config_path, url)
    return asyncio.run(
        _call("POST", f"{base}/api/v1/incidents/{incident_id}/{action}", token, body)
    )


@incidents.command("ack")
@config_option
@url_option
@token_option
@by_option
@click.argument("incident_id")
def ack_command(
    config_path: Path, url: str | None, token: str | None, by: str, incident_id: str
) -> None:
    """Acknowledge: stop the escalation; the paged channels hear who acknowledged."""
    answer = _act(config_path, url, token, incident_id, "ack", {"by": by})
    incident = answer["incident"]
    if answer["changed"]:
        click.echo(f"incident {incident_id} acknowledged by {by}")
    else:
        click.echo(
            f"incident {incident_id} was already acknowledged by {incident['acknowledged_by']}"
        )


@incidents.command("unack")
@config_option
@url_option
@token_option
@by_option
@click.argument("incident_id")
def unack_command(
    config_path: Path, url: str | None, token: str | None, by: str, incident_id: str
) -> None:
    """Take an acknowledgement back: escalation starts again at step 1."""
    _act(config_path, url, token, incident_id, "unack", {"by": by})
    click.echo(f"incident {incident_id} escalates again")


@incidents.command("silence")
@config_option
@url_option
@token_option
@by_option
@click.option("--for", "duration", required=True, help="How long, e.g. 1h.")
@click.argument("incident_id")
def silence_command(
    config_path: Path, url: str | None, token: str | None, by: str, duration: str, incident_id: str
) -> None:
    """Pause the escalation steps for a while."""
    answer = _act(config_path, url, token, incident_id, "silence", {"by": by, "for": duration})
    until = answer["incident"]["silenced_until"]
    click.echo(f"incident {incident_id} silenced until {_when(until)}")
