"""YAML -> validated, immutable configuration (DESIGN §3).

``load_config`` is the only place that reads the config file, the environment
(``${VAR}``) and secret files. Every problem is collected and raised at once as a
``ConfigError`` whose lines each start with the key path (``routes[1].matchers[0]: ...``).
Template *compilation* is checked by the composition root after loading
(``runtime.template_problems``, with the renderer); here we only check that the files exist.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from notifier import builtin_templates
from notifier.durations import format_duration, parse_duration
from notifier.envsubst import interpolate, key_path
from notifier.heartbeats.state import Heartbeat
from notifier.raw_lists import mapping_entries, repeated_name
from notifier.routing import Matcher, MatcherError, Route
from notifier.windows import RouteWindow, TimeWindows, WhenMuted, build_windows, window_problems


def _duration(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return parse_duration(value)
    except OverflowError:
        raise ValueError(f"duration too long: {value!r}") from None


def _spelled(value: timedelta) -> str:
    sign = "-" if value < timedelta(0) else ""
    return sign + format_duration(abs(value))


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"must be positive, got {_spelled(value)}")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError(f"must not be negative, got {_spelled(value)}")
    return value


# A bare YAML number passes ``_duration`` untouched and pydantic reads it as seconds, so a
# negative one is possible too: the checks run after parsing, on the timedelta.
Duration = Annotated[timedelta, BeforeValidator(_duration)]
# Timeouts, backoffs, leases, intervals: at zero a send could never finish, a retry would
# spin, a lease would expire as it is taken. Checked at load, so a reload keeps the old config.
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
NonNegativeDuration = Annotated[Duration, AfterValidator(_not_negative)]
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _e164(value: str) -> str:
    if not _E164.match(value):
        raise ValueError(f"{value!r} is not an E.164 phone number (like +15551234567)")
    return value


E164 = Annotated[str, AfterValidator(_e164)]


def check_listen(value: str) -> str:
    """``value`` if it is ``HOST:PORT`` (``server.listen``, ``serve --listen``), else ValueError."""
    _, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be HOST:PORT, got {value!r}")
    return value


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BasicAuth(Model):
    username: str
    password: SecretStr


class AuthConfig(Model):
    """Credentials that guard the receiver: a bearer token or HTTP basic, not both."""

    bearer_token: SecretStr | None = None
    basic: BasicAuth | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AuthConfig:
        if (self.bearer_token is None) == (self.basic is None):
            raise ValueError("set exactly one of bearer_token or basic")
        if self.bearer_token is not None and not self.bearer_token.get_secret_value():
            raise ValueError("bearer_token is empty")
        return self


class ServerConfig(Model):
    listen: str = "127.0.0.1:9095"
    # How Slack, Twilio and responders reach this service (acknowledgement links, signatures).
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+")
    auth: AuthConfig | None = None
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # 0s is a valid choice: on SIGTERM, hand the sends under way back at once.
    shutdown_grace: NonNegativeDuration = timedelta(seconds=10)
    # The longest a request body may take to arrive, so a stalled sender cannot hold a request.
    read_timeout: PositiveDuration = timedelta(seconds=10)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return check_listen(value)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class StorageConfig(Model):
    url: str = "sqlite:///data/notifier.db"
    workers: int = Field(default=256, ge=1, le=1024)
    lease: PositiveDuration = timedelta(seconds=60)
    delivery_log_size: int = Field(default=100_000, ge=100)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not re.match(r"^(sqlite:///|memory://|rediss?://)", value):
            raise ValueError("url must start with sqlite:///, redis://, rediss:// or memory://")
        return value


class RetryConfig(Model):
    initial_backoff: PositiveDuration = timedelta(seconds=1)
    max_backoff: PositiveDuration = timedelta(minutes=5)
    max_age: PositiveDuration = timedelta(hours=1)


class Defaults(Model):
    repeat_interval: PositiveDuration = timedelta(hours=4)
    send_resolved: bool = True
    timeout: PositiveDuration = timedelta(seconds=10)
    retry: RetryConfig = RetryConfig()


class DigestConfig(Model):
    """Storm mode (DESIGN §10): fold the backlog into one digest past ``max_drain``."""

    max_drain: PositiveDuration


class ChannelBase(Model):
    """Settings every channel type shares; unset ones fall back to ``defaults``."""

    send_resolved: bool | None = None
    timeout: PositiveDuration | None = None
    rate_limit: float | None = Field(default=None, gt=0, description="messages per second")
    max_in_flight: int | None = Field(
        default=None, ge=1, description="sends at once; unset: half of storage.workers"
    )
    circuit_breaker_failures: int = Field(default=5, ge=1)
    circuit_breaker_reset: PositiveDuration = timedelta(seconds=30)
    # Storm digests (DESIGN §10): unset takes the type's default (``notifier.digest``).
    digest: DigestConfig | Literal["off"] | None = None
    digest_template: str | None = None

    @model_validator(mode="after")
    def _digest_renders_here(self) -> ChannelBase:
        # A webhook sends Alertmanager's payload shape and a log channel its own JSON:
        # neither has a digest template, so a digest would reach them as an empty group.
        kind = getattr(self, "type", None)
        if kind in ("webhook", "log") and (
            self.digest not in (None, "off") or self.digest_template
        ):
            raise ValueError(f"storm digests (digest, digest_template) are not for {kind} channels")
        return self


class EmailChannel(ChannelBase):
    type: Literal["email"]
    host: str
    port: int = Field(default=587, gt=0, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    # PEM CA certificates to trust instead of the system's; usually given as ``ca_file``.
    ca: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    subject: str = "[{{ status | upper }}] {{ common_labels.alertname | default('alerts') }}"
    template: str = "performance_alert.html"
    text_template: str | None = None
    max_alerts: int = Field(default=50, ge=1)

    @field_validator("ca")
    @classmethod
    def _pem_certificates(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Checked here, so a bad file fails at load (and a reload keeps the running config)
        # instead of when the channel opens. A placeholder (``ca_file`` unread) passes.
        if value is not None and not (info.context or {}).get("placeholders"):
            try:
                ssl.create_default_context(cadata=value)
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(f"not PEM CA certificates ({exc.args[-1]})") from None
        return value


class SlackChannel(ChannelBase):
    type: Literal["slack"]
    token: SecretStr | None = None
    webhook_url: SecretStr | None = None
    channel: str | None = None
    template: str = "performance_alert.json"
    api_url: str = "https://slack.com/api/"
    rate_limit: float | None = Field(default=1.0, gt=0)
    # Verifies Slack's interaction requests: escalation messages get Acknowledge buttons.
    signing_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> SlackChannel:
        if (self.token is None) == (self.webhook_url is None):
            raise ValueError("set exactly one of token or webhook_url")
        if self.token is not None and not self.channel:
            raise ValueError("channel is required with a bot token")
        return self


class SmsChannel(ChannelBase):
    type: Literal["sms"]
    account_sid: str
    auth_token: SecretStr
    from_: E164 = Field(alias="from")
    to: list[E164] = Field(min_length=1)
    template: str = "critical_alert.txt"
    max_segments: int = Field(default=2, ge=1, le=10)
    api_url: str = "https://api.twilio.com"


class WebhookChannel(ChannelBase):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    hmac_secret: SecretStr | None = None
    # Alertmanager's webhook_config.max_alerts: the rest are counted in truncatedAlerts.
    max_alerts: int = Field(default=50, ge=1)


class LogChannel(ChannelBase):
    """Writes each rendered notification as one JSON line to stdout (demo, debugging)."""

    type: Literal["log"]
    template: str | None = None


ChannelConfig = Annotated[
    EmailChannel | SlackChannel | SmsChannel | WebhookChannel | LogChannel,
    Field(discriminator="type"),
]


class RouteConfig(Model):
    name: str
    matchers: list[str] = Field(default_factory=list)
    # May be empty when ``escalation`` is set: then only the policy's steps page.
    channels: list[str] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    repeat_interval: PositiveDuration | None = None
    send_resolved: bool | None = None
    escalation: str | None = None  # an ``escalation_policies`` name (DESIGN §8)
    # DESIGN §9: names from the top-level ``time_intervals`` (``notifier.windows``).
    active_time_intervals: list[str] = Field(default_factory=list)
    mute_time_intervals: list[str] = Field(default_factory=list)
    when_muted: WhenMuted = "defer"

    @model_validator(mode="after")
    def _tells_someone(self) -> RouteConfig:
        if not self.channels and self.escalation is None:
            raise ValueError("channels: at least one channel, unless the route has an escalation")
        return self


class TimeIntervalsConfig(Model):
    """A named list of Alertmanager time intervals; ``notifier.windows`` checks each item."""

    name: str
    time_intervals: list[dict[str, Any]] = Field(default_factory=list)


class HeartbeatConfig(Model):
    """A dead man's switch (DESIGN §11): the alerts that renew it, and who hears its silence."""

    name: str = Field(min_length=1)
    matchers: list[str] = Field(min_length=1)
    timeout: PositiveDuration
    channels: list[str] = Field(min_length=1)


class Responder(Model):
    """A person who may acknowledge, and how each acknowledgement path recognises them."""

    name: str = Field(min_length=1)
    slack_user_id: str | None = None
    phone: E164 | None = None
    email: str | None = None


class EscalationStep(Model):
    after: NonNegativeDuration  # after the step before (the first: after the opening)
    channels: list[str] = Field(min_length=1)
    # Names from the top-level ``time_intervals`` (DESIGN §9): outside them the step waits.
    active_time_intervals: list[str] = Field(default_factory=list)


class EscalationPolicy(Model):
    steps: list[EscalationStep] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=100)
    ack_timeout: PositiveDuration | None = None

    @model_validator(mode="after")
    def _later_steps_wait(self) -> EscalationPolicy:
        for index, step in enumerate(self.steps[1:], start=1):
            if step.after <= timedelta(0):
                raise ValueError(
                    f"steps[{index}].after must be positive, got {_spelled(step.after)}"
                )
        return self


class Config(Model):
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    templates_dir: str = "../templates"
    defaults: Defaults = Defaults()
    channels: dict[str, ChannelConfig] = Field(min_length=1)
    heartbeats: list[HeartbeatConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    default_channels: list[str] = Field(default_factory=list)
    time_intervals: list[TimeIntervalsConfig] = Field(default_factory=list)
    responders: list[Responder] = Field(default_factory=list)
    escalation_policies: dict[str, EscalationPolicy] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _attempts_fit_in_the_lease(self) -> Config:
        # A send that outlives its lease lets another worker take the job: a duplicate.
        lease = self.storage.lease
        for name, channel in self.channels.items():
            timeout = channel.timeout or self.defaults.timeout
            if timeout >= lease:
                raise ValueError(
                    f"channels.{name}.timeout ({timeout.total_seconds():g}s) must be shorter"
                    f" than storage.lease ({lease.total_seconds():g}s)"
                )
        return self


class ConfigError(Exception):
    """Every problem of a config file, one line each, each starting with its key path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid config:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with what was derived from it at load time."""

    config: Config
    path: Path
    base_dir: Path
    templates_dir: Path
    routes: tuple[Route, ...]
    digest: str
    windows: TimeWindows = field(default_factory=TimeWindows)
    heartbeats: tuple[Heartbeat, ...] = ()

    def repeat_interval(self, route_name: str) -> timedelta:
        for route in self.config.routes:
            if route.name == route_name and route.repeat_interval is not None:
                return route.repeat_interval
        return self.config.defaults.repeat_interval

    def send_resolved(self, channel: str, route_name: str) -> bool:
        for route in self.config.routes:
            if route.name == route_name and route.send_resolved is not None:
                return route.send_resolved
        own = self.config.channels[channel].send_resolved
        return self.config.defaults.send_resolved if own is None else own

    def timeout(self, channel: str) -> timedelta:
        own = self.config.channels[channel].timeout
        return self.config.defaults.timeout if own is None else own

    def sqlite_path(self) -> Path | None:
        """The SQLite file of ``storage.url``, resolved against the config file's folder."""
        url = self.config.storage.url
        if not url.startswith("sqlite:///"):
            return None
        path = Path(url.removeprefix("sqlite:///"))
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def _pydantic_problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        # Drop the discriminator tag pydantic inserts (channels.x.email.host -> channels.x.host).
        loc = [
            part
            for index, part in enumerate(item["loc"])
            if not (index == 2 and item["loc"][0] == "channels" and isinstance(part, str))
        ]
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{key_path(tuple(loc))}: {message}")
    return problems


def _cross_check(raw: Mapping[str, Any], templates_dir: Path) -> list[str]:
    """Checks across keys; written over the raw tree so they run even when parsing failed."""
    problems: list[str] = []
    channels = raw.get("channels") if isinstance(raw.get("channels"), dict) else {}
    assert isinstance(channels, dict)
    problems.extend(_named_entry_problems(raw.get("routes"), "routes", "route", channels))
    problems.extend(
        _named_entry_problems(raw.get("heartbeats"), "heartbeats", "heartbeat", channels)
    )
    for index, channel in enumerate(raw.get("default_channels") or []):
        if isinstance(channel, str) and channel not in channels:
            problems.append(f"default_channels[{index}]: undefined channel {channel!r}")
    problems.extend(_escalation_cross_check(raw, channels))
    for name, channel in channels.items():
        if not isinstance(channel, dict):
            continue
        for key in ("template", "text_template", "digest_template"):
            template = channel.get(key)
            if (
                isinstance(template, str)
                and not (templates_dir / template).is_file()
                and not builtin_templates.exists(template)
            ):
                problems.append(
                    f"channels.{name}.{key}: template {template!r} not found in {templates_dir}"
                    " nor among the built-in templates"
                )
    return problems


def _escalation_cross_check(raw: Mapping[str, Any], channels: Mapping[str, Any]) -> list[str]:
    """Policies name defined channels, routes defined policies; responders are unique;
    a ``signing_secret`` needs a bot token (an incoming webhook cannot show buttons)."""
    problems: list[str] = []
    policies = raw.get("escalation_policies")
    policies = policies if isinstance(policies, dict) else {}
    intervals = raw.get("time_intervals")
    interval_names = {
        entry.get("name")
        for entry in (intervals if isinstance(intervals, list) else [])
        if isinstance(entry, dict)
    }
    for name, policy in policies.items():
        steps = policy.get("steps") if isinstance(policy, dict) else None
        for s_index, step in enumerate(steps if isinstance(steps, list) else []):
            windows = step.get("active_time_intervals") if isinstance(step, dict) else None
            for w_index, window in enumerate(windows if isinstance(windows, list) else []):
                if isinstance(window, str) and window not in interval_names:
                    problems.append(
                        f"escalation_policies.{name}.steps[{s_index}].active_time_intervals"
                        f"[{w_index}]: undefined time interval {window!r}"
                    )
            listed = step.get("channels") if isinstance(step, dict) else None
            for c_index, channel in enumerate(listed if isinstance(listed, list) else []):
                if isinstance(channel, str) and channel not in channels:
                    problems.append(
                        f"escalation_policies.{name}.steps[{s_index}].channels[{c_index}]:"
                        f" undefined channel {channel!r}"
                    )
    routes = raw.get("routes")
    for index, route in enumerate(routes if isinstance(routes, list) else []):
        policy_name = route.get("escalation") if isinstance(route, dict) else None
        if isinstance(policy_name, str) and policy_name not in policies:
            problems.append(
                f"routes[{index}].escalation: undefined escalation policy {policy_name!r}"
            )
    seen: set[str] = set()
    for index, responder in mapping_entries(raw.get("responders")):
        name = repeated_name(responder, seen)
        if name is not None:
            problems.append(f"responders[{index}].name: duplicate responder {name!r}")
    for name, channel in channels.items():
        if (
            isinstance(channel, dict)
            and channel.get("type") == "slack"
            and channel.get("signing_secret") is not None
            and channel.get("webhook_url") is not None
        ):
            problems.append(
                f"channels.{name}.signing_secret: needs a bot token (token), an incoming"
                " webhook cannot show Acknowledge buttons"
            )
    return problems


def _build_routes(config: Config) -> tuple[Route, ...]:
    return tuple(
        Route(
            name=route.name,
            matchers=tuple(Matcher.parse(m) for m in route.matchers),
            channels=tuple(route.channels),
            continue_matching=route.continue_,
        )
        for route in config.routes
    )


def _named_entry_problems(
    entries: object, key: str, noun: str, channels: Mapping[str, Any]
) -> list[str]:
    """For the routes or heartbeats under ``key``: duplicate names, matchers that do not
    parse, channels that do not exist."""
    problems: list[str] = []
    names: set[str] = set()
    for index, entry in mapping_entries(entries):
        name = repeated_name(entry, names)
        if name is not None:
            problems.append(f"{key}[{index}].name: duplicate {noun} name {name!r}")
        for m_index, matcher in enumerate(entry.get("matchers") or []):
            if not isinstance(matcher, str):
                continue
            try:
                Matcher.parse(matcher)
            except MatcherError as exc:
                problems.append(f"{key}[{index}].matchers[{m_index}]: {exc}")
        for c_index, channel in enumerate(entry.get("channels") or []):
            if isinstance(channel, str) and channel not in channels:
                problems.append(
                    f"{key}[{index}].channels[{c_index}]: undefined channel {channel!r}"
                )
    return problems


def _build_heartbeats(config: Config) -> tuple[Heartbeat, ...]:
    return tuple(
        Heartbeat(
            name=heartbeat.name,
            matchers=tuple(Matcher.parse(m) for m in heartbeat.matchers),
            timeout=heartbeat.timeout.total_seconds(),
            channels=tuple(heartbeat.channels),
        )
        for heartbeat in config.heartbeats
    )


def parse_config(
    text: str, path: Path, env: Mapping[str, str], *, placeholders: bool = False
) -> LoadedConfig:
    """Validate config ``text`` as if read from ``path``; raise ``ConfigError`` with every problem.

    ``placeholders`` lets unset ``${VAR}`` and unreadable ``*_file`` secrets through as
    ``<NAME>``: for commands that need the config's shape but not its secrets.
    """
    source = str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"(yaml) {where}{getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["(top level): expected a mapping of settings"])
    base_dir = path.resolve().parent
    problems: list[str] = []
    raw = interpolate(raw, env, base_dir, problems, placeholders=placeholders)
    templates_dir = base_dir / str(
        raw.get("templates_dir", Config.model_fields["templates_dir"].default)
    )
    config = None
    try:
        config = Config.model_validate(raw, context={"placeholders": placeholders})
    except ValidationError as exc:
        # A value emptied by an unset variable fails validation too: say it once.
        unset = [p.partition(":")[0] for p in problems]
        problems.extend(
            p
            for p in _pydantic_problems(exc)
            if not any(u.startswith(p.partition(":")[0]) for u in unset)
        )
    problems.extend(_cross_check(raw, templates_dir))
    problems.extend(window_problems(raw))
    if problems or config is None:
        raise ConfigError(source, problems)
    return LoadedConfig(
        config=config,
        path=path,
        base_dir=base_dir,
        templates_dir=templates_dir.resolve(),
        routes=_build_routes(config),
        heartbeats=_build_heartbeats(config),
        digest=hashlib.sha256(text.encode()).hexdigest()[:12],
        windows=build_windows(
            raw,
            {
                r.name: RouteWindow(
                    tuple(r.active_time_intervals), tuple(r.mute_time_intervals), r.when_muted
                )
                for r in config.routes
            },
        ),
    )


def load_config(path: Path, env: Mapping[str, str], *, placeholders: bool = False) -> LoadedConfig:
    """Read and validate the config file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"(file): cannot read: {exc.strerror}"]) from None
    return parse_config(text, path, env, placeholders=placeholders)
