"""Alertmanager-style matchers and the ordered route list: alert labels -> channel names.

Pure functions only: no I/O, no clock. A route matches when all of its matchers hold;
routes are tried in order and the first match wins unless it says ``continue: true``.
Alerts that no route takes go to ``default_channels``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum


class MatchType(Enum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


_MATCHER = re.compile(
    r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*|\"(?:[^\"\\]|\\.)*\")\s*(=~|!~|!=|=)\s*(.*?)\s*$"
)
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


class MatcherError(ValueError):
    """A matcher string that does not parse, or whose regex does not compile."""


def _unquote(text: str) -> str:
    if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
        if '"' in text:
            raise MatcherError(f"unbalanced quotes in {text!r}")
        return text
    body, out, index = text[1:-1], [], 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            out.append(_ESCAPES.get(body[index + 1], "\\" + body[index + 1]))
            index += 2
            continue
        if char == '"':
            raise MatcherError(f"unescaped quote inside {text!r}")
        out.append(char)
        index += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Matcher:
    """One ``name<op>"value"`` condition on an alert's labels.

    A regex must match the whole value, as Alertmanager's ``^(?:value)$`` does in RE2.
    Python's ``$`` also matches before a trailing newline, so the anchoring is
    ``fullmatch`` rather than ``^...$``: ``"critical\\n"`` is not ``=~"critical"``.
    """

    name: str
    type: MatchType
    value: str
    pattern: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        match = _MATCHER.match(text)
        if match is None:
            raise MatcherError(f'not a matcher: {text!r} (expected e.g. severity="critical")')
        name, op, raw_value = match.groups()
        match_type = MatchType(op)
        value = _unquote(raw_value)
        pattern = None
        if match_type in (MatchType.REGEX, MatchType.NOT_REGEX):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise MatcherError(f"invalid regex {value!r}: {exc}") from None
        return cls(_unquote(name), match_type, value, pattern)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.type is MatchType.EQUAL:
            return actual == self.value
        if self.type is MatchType.NOT_EQUAL:
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.type is MatchType.REGEX else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.type.value}"{escaped}"'


@dataclass(frozen=True, slots=True)
class Route:
    """A named, ordered rule: when every matcher holds, these channels hear about the alert."""

    name: str
    matchers: tuple[Matcher, ...]
    channels: tuple[str, ...]
    continue_matching: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(matcher.matches(labels) for matcher in self.matchers)


DEFAULT_ROUTE = "default"


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Which routes matched an alert's labels, and the channels they add up to (in order)."""

    routes: tuple[str, ...]
    channels: tuple[tuple[str, str], ...]  # (channel, route that sent it there)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(channel for channel, _ in self.channels)


def route_labels(
    labels: Mapping[str, str], routes: Sequence[Route], default_channels: Sequence[str]
) -> RoutingDecision:
    """The routes and channels an alert with ``labels`` reaches.

    A channel named by several matching routes is listed once, under the first.
    """
    matched: list[str] = []
    channels: dict[str, str] = {}
    for route in routes:
        if not route.matches(labels):
            continue
        matched.append(route.name)
        for channel in route.channels:
            channels.setdefault(channel, route.name)
        if not route.continue_matching:
            break
    if not matched:
        for channel in default_channels:
            channels.setdefault(channel, DEFAULT_ROUTE)
    return RoutingDecision(tuple(matched), tuple(channels.items()))
