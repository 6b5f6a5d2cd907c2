"""Slack's length budget as pure decisions: the search for what fits, clamping, capping."""

from __future__ import annotations

from typing import Any

import pytest

from notifier.channels.slack_budget import (
    MAX_BLOCKS,
    MAX_TOTAL_TEXT,
    cap_blocks,
    clamp_text,
    clamp_texts,
    largest_fitting,
    text_length,
    within_budget,
)


@pytest.mark.parametrize(
    ("total", "limit", "guess", "expected"),
    [
        (0, 0, 50, 0),
        (10, 10, 50, 10),
        (10, 3, 50, 3),
        (120, 48, 50, 48),
        (5, 0, 50, 0),
        (1, 0, 50, 0),
        (10_000, 48, 50, 48),
        (10_000, 130, 50, 130),
        (10_000, 10_000, 50, 10_000),
        (10_000, 9_999, 50, 9_999),
    ],
)
def test_largest_fitting(total: int, limit: int, guess: int, expected: int) -> None:
    calls: list[int] = []

    def fits(count: int) -> bool:
        calls.append(count)
        return count <= limit

    assert largest_fitting(total, fits, guess) == expected
    assert max(calls, default=0) <= max(2 * limit, guess)  # never far past what fits
    assert len(calls) <= 2 * total.bit_length() + 1


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("abcdefghijkl", 10, "abcdefghi…"),
        ("see <http://x.example/long|graph>", 12, "see …"),
        ("a &amp; b", 4, "a …"),
        ("a &amp; b", 8, "a &amp;…"),
    ],
)
def test_clamp_text(text: str, limit: int, expected: str) -> None:
    assert clamp_text(text, limit) == expected
    assert len(clamp_text(text, limit)) <= limit


def test_clamp_texts_walks_every_text_object_and_headers() -> None:
    message = {
        "text": "t" * 4000,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "h" * 200}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 3500}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "ok"}]},
        ],
    }

    clamped = clamp_texts(message)

    assert len(clamped["text"]) == 3000
    assert len(clamped["blocks"][0]["text"]["text"]) == 150
    assert len(clamped["blocks"][1]["fields"][0]["text"]) == 3000
    assert clamped["blocks"][2] == message["blocks"][2]
    assert len(message["text"]) == 4000  # the input is left alone


def test_cap_blocks_keeps_49_and_summarises() -> None:
    blocks = [{"type": "section", "n": i} for i in range(60)]
    capped = cap_blocks(blocks, hidden=70)
    assert len(capped) == MAX_BLOCKS
    assert capped[:49] == blocks[:49]
    assert capped[-1]["elements"][0]["text"] == "+70 more alerts"
    assert cap_blocks(blocks[:50], hidden=3) == blocks[:50]


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def test_text_length_counts_every_text_in_the_blocks() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "abc"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "de"}], "block_id": "xyz"},
        {"type": "rich_text", "elements": [{"type": "text", "text": "fghi"}]},
        {"type": "divider"},
    ]
    assert text_length(blocks) == 9


def test_within_budget_holds_blocks_and_total_text() -> None:
    assert within_budget([section("x" * 2500)] * 4)
    assert not within_budget([section("x" * 2500)] * 5)  # 12,500 characters in all
    assert not within_budget([section("x")] * (MAX_BLOCKS + 1))


def test_cap_blocks_keeps_what_fits_the_total_text() -> None:
    blocks = [section("x" * 3000) for _ in range(5)]

    capped = cap_blocks(blocks, hidden=2)

    assert capped[:3] == blocks[:3]
    assert capped[-1]["elements"][0]["text"] == "+2 more alerts"
    assert text_length(capped) <= MAX_TOTAL_TEXT
