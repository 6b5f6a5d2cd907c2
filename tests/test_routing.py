"""Matchers and routes, table-driven (Alertmanager's syntax and semantics)."""

from __future__ import annotations

import pytest

from notifier.routing import Matcher, MatcherError, Route, route_labels

LABELS = {"alertname": "HighErrorRate", "severity": "critical", "job": "api-gateway", "env": "prod"}


@pytest.mark.parametrize(
    ("matcher", "matches"),
    [
        ('severity="critical"', True),
        ("severity=critical", True),
        ('severity="warning"', False),
        ('severity!="warning"', True),
        ('job=~"api-.*"', True),
        ('job=~"api"', False),  # anchored: a substring is not a match
        ('job=~"gateway"', False),
        ('job!~"db-.*"', True),
        ('job=~"api-gateway|web"', True),
        ('team=""', True),  # a missing label is the empty string
        ('team!=""', False),
        ('team=~".*"', True),
        ('alertname=~"High.*Rate"', True),
        ('env="pr\\"od"', False),
        ('  env = "prod"  ', True),
    ],
)
def test_matcher(matcher: str, matches: bool) -> None:
    assert Matcher.parse(matcher).matches(LABELS) is matches


@pytest.mark.parametrize(
    ("matcher", "value", "matches"),
    [
        # Fully anchored as RE2 anchors Alertmanager's ^(?:...)$: a trailing newline is a
        # character like any other, not an end of line that $ may stop before.
        ('severity=~"critical"', "critical\n", False),
        ('severity!~"critical"', "critical\n", True),
        ('severity=~"critical$"', "critical\n", False),
        ('severity=~"crit.*"', "critical\n", False),  # . does not match a newline
        ('severity=~"critical\\n"', "critical\n", True),  # unless the pattern says so
        ('severity=~"a|b"', "ab", False),
        ('severity=~"a|ab"', "ab", True),
        ('severity=~"critical"', "\ncritical", False),
    ],
)
def test_regex_matchers_are_fully_anchored(matcher: str, value: str, matches: bool) -> None:
    assert Matcher.parse(matcher).matches({"severity": value}) is matches


@pytest.mark.parametrize(
    ("text", "value"),
    [('a="x\\"y"', 'x"y'), ('a="x\\\\y"', "x\\y"), ('a="line\\nbreak"', "line\nbreak")],
)
def test_quoted_values_with_escapes(text: str, value: str) -> None:
    assert Matcher.parse(text).value == value


@pytest.mark.parametrize(
    "text", ["severity", 'severity=="x"', '=~"x"', 'a=~"(x"', 'a="x"y"', "1a=b"]
)
def test_bad_matchers(text: str) -> None:
    with pytest.raises(MatcherError):
        Matcher.parse(text)


def route(name: str, matchers: list[str], channels: list[str], cont: bool = False) -> Route:
    return Route(name, tuple(Matcher.parse(m) for m in matchers), tuple(channels), cont)


ROUTES = [
    route("critical", ['severity="critical"'], ["sms", "slack", "email", "hook"]),
    route("warning", ['severity="warning"'], ["slack", "email"]),
    route("db-team", ['team="db"'], ["db-email"], cont=True),
    route("db-critical", ['team="db"', 'severity="critical"'], ["db-pager"]),
]


@pytest.mark.parametrize(
    ("labels", "routes", "channels"),
    [
        ({"severity": "critical"}, ["critical"], ["sms", "slack", "email", "hook"]),
        ({"severity": "warning"}, ["warning"], ["slack", "email"]),
        ({"severity": "info"}, [], ["default"]),
        ({}, [], ["default"]),
        # first match wins: the db team's critical alert stops at "critical"
        ({"severity": "critical", "team": "db"}, ["critical"], ["sms", "slack", "email", "hook"]),
        # continue: true goes on to the next matching route
        ({"severity": "info", "team": "db"}, ["db-team"], ["db-email"]),
    ],
)
def test_routes(labels: dict[str, str], routes: list[str], channels: list[str]) -> None:
    decision = route_labels(labels, ROUTES, ["default"])
    assert list(decision.routes) == routes
    assert list(decision.channel_names) == channels


def test_continue_collects_channels_once_under_the_first_route() -> None:
    routes = [
        route("db-team", ['team="db"'], ["db-email", "slack"], cont=True),
        route("db-critical", ['team="db"', 'severity="critical"'], ["db-pager", "slack"]),
    ]
    decision = route_labels({"team": "db", "severity": "critical"}, routes, ["default"])
    assert decision.routes == ("db-team", "db-critical")
    assert decision.channels == (
        ("db-email", "db-team"),
        ("slack", "db-team"),
        ("db-pager", "db-critical"),
    )
