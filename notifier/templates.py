"""Jinja2 templates: a sandboxed environment, the template context (DESIGN §4), built-in fallbacks.

Alert labels and annotations are untrusted text: the environment is sandboxed,
``.html`` templates are autoescaped, Slack templates see payload strings already escaped
for mrkdwn (``slack_text``; the ``raw`` filter opts a value out, ``slack_link`` makes a
checked link), and undefined names fail loudly (``StrictUndefined``)
so a typo shows up in ``check-config`` rather than as an empty message. A template that
still fails at render time falls back to a built-in plain one; the failure is logged
and reported to ``on_fallback`` (a metric): a template bug never loses an alert.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from notifier import builtin_templates
from notifier.channels import slack_text
from notifier.durations import format_duration
from notifier.notification import Notification
from notifier.payload import Alert
from notifier.untrusted import http_url

log = logging.getLogger(__name__)

FALLBACK_TEXT = (
    "[{{ status | upper }}] {{ common_labels.alertname | default('alerts') }}"
    " ({{ alerts | length }} alert{{ 's' if alerts | length != 1 }})\n"
    "{% for a in alerts -%}\n"
    "- {{ a.labels.alertname | default('alert') }} {{ a.labels.severity | default('') }}"
    " {{ a.labels.instance | default('') }}: {{ a.annotations.summary | default('') }}\n"
    "{% endfor %}"
    "{% if incident %}Incident {{ incident.id }}"
    "{% if kind == 'page' %}: step {{ incident.step }} of {{ incident.steps }}"
    "{% if incident.others_paged %}; also paged: {{ incident.others_paged | join(', ') }}"
    "{% endif %}."
    " Acknowledge: {{ incident.ack_command }}. Reply ACK {{ incident.ack_code }}"
    "{% else %} {{ incident.announcement }}{% if incident.by %} by {{ incident.by }}{% endif %}"
    "{% endif %}\n{% endif %}"
)
FALLBACK_HTML = "<pre>" + FALLBACK_TEXT + "</pre>"
# Counts every alert of the group, also those a length budget left out of ``alerts``.
FALLBACK_SLACK = (
    '{"text": {{ (status | upper ~ ": " ~ (common_labels.alertname | default("alerts"))'
    ' ~ " (" ~ ((alerts | length) + truncated_alerts) ~ " alerts)"'
    ' ~ ((" · incident " ~ incident.id ~ (" step " ~ incident.step ~ " of " ~ incident.steps'
    ' ~ " · ack: " ~ incident.ack_command if kind == "page" else " " ~ incident.announcement))'
    ' if incident else "")) | tojson }}}'
)


def since(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``value`` was, as a Prometheus-style duration (``1h5m``)."""
    if value is None:
        return ""
    elapsed = (now or datetime.now(UTC)) - value
    return format_duration(timedelta(seconds=max(0, int(elapsed.total_seconds()))))


def format_datetime(
    value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S %Z", tz: str = "UTC"
) -> str:
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(tz)).strftime(fmt)


def duration(seconds: float | timedelta) -> str:
    if isinstance(seconds, timedelta):
        return format_duration(seconds)
    return format_duration(timedelta(seconds=seconds))


def _tojson(value: Any) -> str:
    # Not Jinja's built-in |tojson: that one HTML-escapes (<, >, &) for <script> blocks,
    # which would corrupt Slack JSON. Values are escaped for JSON only.
    return json.dumps(value, ensure_ascii=False, default=str)


def _keep(value: str) -> str:
    return value


def _escaper(channel_type: str) -> Callable[[str], str]:
    """How payload strings reach ``channel_type``'s templates: escaped for Slack's mrkdwn
    (HTML templates autoescape instead; SMS and mail sanitise their output)."""
    return slack_text.escape if channel_type == "slack" else _keep


def _url_escaper(channel_type: str) -> Callable[[str], str]:
    """How payload URLs reach templates. Slack's are kept (escaped) so that ``slack_link``
    shows one it refuses as text; elsewhere a URL that is not plain http(s) becomes "", so
    no template makes a ``javascript:`` or ``data:`` URL a link."""
    if channel_type == "slack":
        return slack_text.escape
    return http_url


def _strings(values: Mapping[str, str], escape: Callable[[str], str]) -> dict[str, str]:
    return {escape(name): escape(value) for name, value in values.items()}


def _alert_context(
    alert: Alert, escape: Callable[[str], str], url: Callable[[str], str]
) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": _strings(alert.labels, escape),
        "annotations": _strings(alert.annotations, escape),
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        # Annotations holding URLs go through ``safe_url`` / ``slack_link`` in the template.
        "generator_url": url(alert.generator_url),
        "fingerprint": escape(alert.fingerprint),
    }


def template_context(
    notification: Notification, channel_type: str, alerts: tuple[Alert, ...] | None = None
) -> dict[str, Any]:
    """What every template sees (DESIGN §4). ``alerts`` narrows the list (length budgets).

    Strings from the payload are escaped as ``channel_type`` needs (``_escaper``); the
    channel's own name and route come from the config and are left as they are.
    """
    escape, url = _escaper(channel_type), _url_escaper(channel_type)
    shown = notification.alerts if alerts is None else alerts
    all_alerts = [_alert_context(a, escape, url) for a in shown]
    return {
        "status": notification.status,
        "alerts": all_alerts,
        "firing": [a for a in all_alerts if a["status"] == "firing"],
        "resolved": [a for a in all_alerts if a["status"] == "resolved"],
        "group_labels": _strings(notification.group_labels, escape),
        "common_labels": _strings(notification.common_labels, escape),
        "common_annotations": _strings(notification.common_annotations, escape),
        "external_url": url(notification.external_url),
        "receiver": escape(notification.receiver),
        "group_key": escape(notification.group_key),
        "truncated_alerts": notification.truncated_alerts + len(notification.alerts) - len(shown),
        "channel": {
            "name": notification.channel,
            "type": channel_type,
            "route": notification.route,
        },
        "kind": notification.kind,
        "incident": _incident_context(notification),
    }


def _incident_context(notification: Notification) -> dict[str, Any] | None:
    """The incident of a page or an announcement (DESIGN §8), times as aware datetimes."""
    incident = notification.incident
    if incident is None:
        return None
    context = incident.model_dump()
    for key in ("opened_at", "acknowledged_at", "silenced_until"):
        value = context[key]
        context[key] = None if value is None else datetime.fromtimestamp(value, UTC)
    return context


class _StrictButTestable(jinja2.StrictUndefined):
    """Strict for output (a typo fails loudly) but falsy in tests, so ``{% if labels.x %}``
    and ``labels.x | default('-')`` work for labels an alert may not have."""

    def __bool__(self) -> bool:  # type: ignore[override]
        return False


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    fell_back: bool = False  # the template failed and the built-in fallback was rendered


class Renderer:
    """Loads templates from one folder, then the built-in ones, and renders them with fallbacks."""

    def __init__(
        self,
        templates_dir: Path,
        on_fallback: Callable[[str, str], None] | None = None,
    ) -> None:
        self._env = ImmutableSandboxedEnvironment(
            # The config's folder first, so an operator's file overrides a built-in one.
            loader=jinja2.ChoiceLoader(
                [
                    jinja2.FileSystemLoader(str(templates_dir)),
                    jinja2.FunctionLoader(builtin_templates.source),
                ]
            ),
            autoescape=jinja2.select_autoescape(["html", "htm"], default_for_string=False),
            undefined=_StrictButTestable,
            # A reload builds a new renderer: no need to stat template files on every render.
            auto_reload=False,
            trim_blocks=False,
            keep_trailing_newline=False,
        )
        self._env.filters.update(
            slack_escape=slack_text.escape,
            slack_link=slack_text.link,
            raw=slack_text.original,
            since=since,
            datetime=format_datetime,
            duration=duration,
            tojson=_tojson,
            safe_url=http_url,
        )
        self._on_fallback = on_fallback
        self._strings: dict[str, jinja2.Template] = {}

    def trial_render(
        self, name: str | None, source: str | None, context: Mapping[str, Any]
    ) -> str | None:
        """Render a template file (``name``) or an inline one (``source``) strictly.

        Returns the error text, or None when it renders: ``check-config`` reports it.
        """
        try:
            if name is not None:
                self._env.get_template(name).render(context)
            elif source is not None:
                self._env.from_string(source).render(context)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def render_file(self, name: str, context: Mapping[str, Any], fallback: str) -> Rendered:
        """Render template file ``name``; on any error render ``fallback`` instead."""
        try:
            return Rendered(self._env.get_template(name).render(context))
        except Exception as exc:  # a template bug must never lose the alert
            return self.fall_back(name, exc, fallback, context)

    def render_string(self, source: str, context: Mapping[str, Any], fallback: str) -> Rendered:
        """Render an inline template (an email subject); on any error render ``fallback``."""
        try:
            template = self._strings.get(source)
            if template is None:
                template = self._strings[source] = self._env.from_string(source)
            return Rendered(template.render(context))
        except Exception as exc:
            return self.fall_back("(inline)", exc, fallback, context)

    def fall_back(
        self, name: str, exc: Exception, fallback: str, context: Mapping[str, Any]
    ) -> Rendered:
        """Log and count a failed render of ``name``, and render ``fallback`` instead.

        Public for channels that find a rendered message unusable (Slack: not JSON).
        """
        channel = context.get("channel", {}).get("name", "")
        log.warning(
            "template failed, using the built-in fallback",
            extra={"template": name, "channel": channel, "error": f"{type(exc).__name__}: {exc}"},
        )
        if self._on_fallback is not None:
            self._on_fallback(channel, name)
        # The fallback is a plain, lenient template: it cannot fail on missing names.
        # It stands in for ``name``, so it is escaped as ``name`` would be (labels are untrusted).
        lenient = jinja2.sandbox.ImmutableSandboxedEnvironment(
            autoescape=name.endswith((".html", ".htm"))
        )
        lenient.filters.update(tojson=_tojson, safe_url=http_url)
        return Rendered(lenient.from_string(fallback).render(context), fell_back=True)
