"""Slack's mrkdwn escaping, links and ``verbatim`` as pure functions (``slack_text``)."""

from __future__ import annotations

import pytest

from notifier.channels.slack_text import (
    Mrkdwn,
    escape,
    is_link_target,
    link,
    original,
    verbatim_by_default,
)

PHISHING_URL = "http://prom/|graph> <!channel> <http://evil.example/login|Fix now"


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("<!channel> Disk", "&lt;!channel&gt; Disk"),
        ("a & b", "a &amp; b"),
        ("already &lt;", "already &amp;lt;"),
        ("*bold* `code` 'q' \"q\"", "*bold* `code` 'q' \"q\""),  # only & < > (Slack's rule)
        ("", ""),
    ],
)
def test_escape_and_back(text: str, escaped: str) -> None:
    assert escape(text) == escaped
    assert isinstance(escape(text), Mrkdwn)
    assert escape(escape(text)) == escaped  # escaping escaped text changes nothing
    assert original(escape(text)) == text


def test_original_leaves_text_that_was_not_escaped_alone() -> None:
    assert original("&lt;!here&gt;") == "&lt;!here&gt;"
    assert original(3) == 3


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://prometheus:9090/graph?g0.expr=up&g0.tab=1", True),
        ("https://grafana.example/d/abc", True),
        ("HTTPS://grafana.example/", True),
        (PHISHING_URL, False),
        ("http://a.example/x|label", False),
        ("http://a.example/a b", False),
        ("http://a.example/\tb", False),
        ("http://a.example/<b", False),
        ("javascript:alert(1)", False),
        ("mailto:ops@example.com", False),
        ("http://", False),
        ("//evil.example/path", False),
        ("http://[::1", False),
        ("", False),
    ],
)
def test_is_link_target(url: str, ok: bool) -> None:
    assert is_link_target(url) is ok


def test_link_makes_a_link_of_a_plain_url_only() -> None:
    assert (
        link("http://p.example/graph?a=1&b=2", "graph")
        == "<http://p.example/graph?a=1&amp;b=2|graph>"
    )
    assert (
        link(escape("http://p.example/?a=1&b=2"), "graph")
        == "<http://p.example/?a=1&amp;b=2|graph>"
    )
    assert link("http://p.example/", "<b>") == "<http://p.example/|&lt;b&gt;>"
    assert link(PHISHING_URL, "graph") == escape(PHISHING_URL)
    assert link(escape(PHISHING_URL), "graph") == escape(PHISHING_URL)
    assert link("", "graph") == ""


def test_verbatim_by_default() -> None:
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "a"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "b", "verbatim": False}},
        {"type": "header", "text": {"type": "plain_text", "text": "c"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "d"}]},
    ]

    marked = verbatim_by_default(blocks)

    assert marked[0]["text"]["verbatim"] is True
    assert marked[1]["text"]["verbatim"] is False  # the template chose Slack's parsing
    assert "verbatim" not in marked[2]["text"]  # plain_text has no such field
    assert marked[3]["elements"][0]["verbatim"] is True
    assert "verbatim" not in blocks[0]["text"]  # the input is left alone
