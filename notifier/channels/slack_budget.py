"""Slack's Block Kit length budget (DESIGN §4): at most 50 blocks, at most 3000 characters
per text (150 for a header), at most ``MAX_TOTAL_TEXT`` characters of text in all the
blocks, the rest summarised as "+N more alerts". Pure.

Slack refuses blocks holding more than about 12,000 characters of text in all
(``msg_blocks_too_long``); the limit is undocumented and seems to count more than the
texts (slackapi/bolt-js#2509, #2867), so the budget keeps a margin below it.

The Slack channel narrows the alerts a template sees until the blocks fit
(``largest_fitting``), so the template itself says how many it left out
(``truncated_alerts``); ``cap_blocks`` is the last resort for a template whose fixed
blocks alone exceed the budget, and ``clamp_texts`` cuts over-long texts without
splitting a mrkdwn link (``<url|label>``) or entity (``&amp;``). This module never
renders or sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_BLOCKS = 50
MAX_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_TOTAL_TEXT = 10_000  # below Slack's undocumented total, with a margin (see above)
TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})
ELLIPSIS = "…"

SlackMessage = dict[str, Any]


def more_alerts_block(hidden: int) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": f"+{hidden} more alerts"}]}


def largest_fitting(total: int, fits: Callable[[int], bool], guess: int) -> int:
    """The largest ``k`` in ``0..total`` with ``fits(k)``, for ``fits`` true up to some ``k``
    and false after; 0 when nothing fits (``fits(0)`` is never asked).

    Tries ``guess`` first and doubles from there while it fits, then bisects: the counts
    tried stay within about twice the answer, however large ``total`` is.
    """
    if total == 0:
        return 0
    low = 0  # fits, or is 0
    probe = min(max(guess, 1), total)
    while fits(probe):
        low = probe
        if probe == total:
            return total
        probe = min(probe * 2, total)
    high = probe  # does not fit
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def text_length(node: Any) -> int:
    """The characters of every ``text`` string in ``node`` (blocks), as Slack's total counts."""
    if isinstance(node, list):
        return sum(text_length(item) for item in node)
    if not isinstance(node, dict):
        return 0
    return sum(
        len(value) if key == "text" and isinstance(value, str) else text_length(value)
        for key, value in node.items()
    )


def within_budget(blocks: list[Any]) -> bool:
    return len(blocks) <= MAX_BLOCKS and text_length(blocks) <= MAX_TOTAL_TEXT


def cap_blocks(blocks: list[Any], hidden: int) -> list[Any]:
    """The first blocks that fit the budget with a closing "+N more alerts" context."""
    if within_budget(blocks):
        return blocks
    more = more_alerts_block(hidden)
    room = MAX_TOTAL_TEXT - text_length(more)
    kept: list[Any] = []
    for block in blocks[: MAX_BLOCKS - 1]:
        room -= text_length(block)
        if room < 0:
            break
        kept.append(block)
    return [*kept, more]


def clamp_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, not inside ``<...>`` or ``&...;``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    open_link = cut.rfind("<")
    if open_link > cut.rfind(">"):
        cut = cut[:open_link]
    ampersand = cut.rfind("&")
    if ampersand > cut.rfind(";") and len(cut) - ampersand <= len("&amp;"):
        cut = cut[:ampersand]
    return cut + ELLIPSIS


def _clamp_node(node: Any, limit: int) -> Any:
    if isinstance(node, list):
        return [_clamp_node(item, limit) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") in TEXT_TYPES and isinstance(node.get("text"), str):
        return {**node, "text": clamp_text(node["text"], limit)}
    inner = MAX_HEADER_TEXT if node.get("type") == "header" else limit
    return {key: _clamp_node(value, inner) for key, value in node.items()}


def clamp_texts(message: SlackMessage) -> SlackMessage:
    """``message`` with its top-level text and every Block Kit text object within budget."""
    clamped = dict(message)
    if isinstance(clamped.get("text"), str):
        clamped["text"] = clamp_text(clamped["text"], MAX_TEXT)
    if isinstance(clamped.get("blocks"), list):
        clamped["blocks"] = _clamp_node(clamped["blocks"], MAX_TEXT)
    return clamped
