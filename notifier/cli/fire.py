"""``notifier render`` and ``notifier fire``: preview templates and test-fire routes or channels."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import click
from pydantic import ValidationError

from notifier.channels.base import DeliveryError
from notifier.channels.registry import open_channels
from notifier.cli.common import config_option, fail, load_or_exit, parse_pairs
from notifier.config import LoadedConfig
from notifier.dedup import plan_notifications
from notifier.payload import WebhookPayload
from notifier.runtime import sample_notification
from notifier.sample import build_payload, sample_payload
from notifier.store.memory import MemoryStore
from notifier.templates import Renderer, template_context


@click.command()
@config_option
@click.argument("template")
@click.option(
    "--payload",
    "payload_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="An Alertmanager webhook payload (JSON); default: a built-in sample.",
)
@click.option("--channel", help="Render as this channel would (its name and type in the context).")
def render(
    config_path: Path, template: str, payload_file: Path | None, channel: str | None
) -> None:
    """Render TEMPLATE (in templates_dir, or a built-in one) against a payload, to preview it."""
    loaded = load_or_exit(config_path, placeholders=True)
    payload = _read_payload(payload_file) if payload_file else sample_payload()
    channel_type = "log"
    if channel is not None:
        if channel not in loaded.config.channels:
            raise click.BadParameter(
                f"no channel {channel!r} in the config", param_hint="--channel"
            )
        channel_type = loaded.config.channels[channel].type
    context = template_context(sample_notification(payload, channel or "preview"), channel_type)
    renderer = Renderer(loaded.templates_dir)
    error = renderer.trial_render(template, None, context)
    if error is not None:
        fail(f"{template}: {error}")
    click.echo(renderer.render_file(template, context, fallback="").text)


def _read_payload(path: Path) -> WebhookPayload:
    try:
        return WebhookPayload.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        fail(f"{path}: not an Alertmanager webhook payload:\n{exc}")


RECEIVER_PATH = "/api/v1/alerts"


def receiver_url(url: str) -> str:
    """The receiver's URL from ``--url``: a base URL (no path, or ``/``) gets the receiver's
    path; any other path is taken as the receiver's (behind a proxy it may differ).

    Raises ``ValueError`` for anything but an http(s) URL with a host.
    """
    parts = urlsplit(url.strip())
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError(
            f"{url!r} is not an http(s) URL: give the service's base URL"
            f" (http://127.0.0.1:9095) or its receiver (http://127.0.0.1:9095{RECEIVER_PATH})"
        )
    if parts.path in ("", "/"):
        parts = parts._replace(path=RECEIVER_PATH)
    return urlunsplit(parts)


def _receiver_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        return None if value is None else receiver_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@config_option
@click.option("--severity", required=True, help="The severity label, e.g. critical.")
@click.option("--alertname", required=True, help="The alertname label.")
@click.option("--label", "labels", multiple=True, help="Another label, NAME=VALUE (repeatable).")
@click.option("--annotation", "annotations", multiple=True, help="An annotation, NAME=VALUE.")
@click.option("--resolve", is_flag=True, help="Send the alert as resolved.")
@click.option(
    "--url",
    callback=_receiver_url,
    help="The service's base URL (http://HOST:PORT) or its receiver URL; no config file is"
    " read then. Default: http://<server.listen> of the config.",
)
@click.option(
    "--token",
    default=lambda: os.environ.get("NOTIFIER_TOKEN"),
    show_default="$NOTIFIER_TOKEN",
    help="Bearer token for the receiver.",
)
@click.option("--channel", help="Send straight through this channel, without the server.")
@click.option(
    "--dry-run", is_flag=True, help="Print the routing and each rendered message; send nothing."
)
def fire(
    config_path: Path,
    severity: str,
    alertname: str,
    labels: tuple[str, ...],
    annotations: tuple[str, ...],
    resolve: bool,
    url: str | None,
    token: str | None,
    channel: str | None,
    dry_run: bool,
) -> None:
    """Test-fire an alert: post it to a running notifier, or through one channel, or dry-run."""
    payload = build_payload(
        alertname=alertname,
        severity=severity,
        labels=parse_pairs(labels, "--label"),
        annotations=parse_pairs(annotations, "--annotation"),
        resolved=resolve,
    )
    if dry_run:
        asyncio.run(_dry_run(load_or_exit(config_path, placeholders=True), payload))
    elif channel is not None:
        asyncio.run(_send_direct(load_or_exit(config_path), payload, channel))
    else:
        if url is None:
            listen = load_or_exit(config_path, placeholders=True).config.server.listen
            url = f"http://{listen}{RECEIVER_PATH}"
        asyncio.run(_post(url, token, payload))


async def _dry_run(loaded: LoadedConfig, payload: WebhookPayload) -> None:
    jobs = plan_notifications(payload, loaded, time.time(), lambda: "dry-run")
    notifications = [job.notification for job in jobs if job.notification is not None]
    if not notifications:
        click.echo("no channel would be notified")
        return
    channels = await open_channels(loaded, Renderer(loaded.templates_dir), MemoryStore())
    try:
        for notification in notifications:
            channel = channels[notification.channel]
            click.echo(
                f"--- {notification.channel} ({channel.type}) via route {notification.route}"
            )
            click.echo(channel.preview(notification))
    finally:
        await channels.aclose()


async def _send_direct(loaded: LoadedConfig, payload: WebhookPayload, name: str) -> None:
    if name not in loaded.config.channels:
        raise click.BadParameter(f"no channel {name!r} in the config", param_hint="--channel")
    notification = sample_notification(payload, name, route="cli").model_copy(
        update={"job_id": uuid.uuid4().hex}
    )
    channels = await open_channels(loaded, Renderer(loaded.templates_dir), MemoryStore())
    try:
        receipt = await channels[name].send(notification)
    except DeliveryError as exc:
        fail(f"{name}: delivery failed: {exc}")
    finally:
        await channels.aclose()
    click.echo(f"{name}: delivered {receipt.detail}".rstrip())


async def _post(url: str, token: str | None, payload: WebhookPayload) -> None:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(payload.to_alertmanager_json())
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.post(url, data=body, headers=headers) as response,
        ):
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        fail(f"cannot reach {url}: {type(exc).__name__}: {exc}")
    click.echo(f"{response.status} {text}")
    if response.status == 404:
        fail(f"{url} answered 404: is it the receiver? --url takes the service's base URL too")
    if response.status >= 300:
        fail(f"{url} answered {response.status}")
