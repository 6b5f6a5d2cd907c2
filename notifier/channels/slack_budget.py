"""Slack's Block Kit length budget (DESIGN §4): at most 50 blocks, at most 3000 characters
per text (150 for a header), the rest summarised as "+N more alerts". Pure.

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
TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})
ELLIPSIS = "…"

SlackMessage = dict[str, Any]


def more_alerts_block(hidden: int) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": f"+{hidden} more alerts"}]}


def largest_fitting(total: int, fits: Callable[[int], bool]) -> int:
    """The largest ``k`` in ``0..total`` with ``fits(k)``, for ``fits`` true up to some ``k``
    and false after; 0 when nothing fits. Calls ``fits`` about log2(total) times."""
    if fits(total):
        return total
    low, high = 0, total  # invariant: high does not fit; low fits or is 0
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def cap_blocks(blocks: list[Any], hidden: int) -> list[Any]:
    """At most ``MAX_BLOCKS`` blocks: the first ones and a closing "+N more alerts" context."""
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    return [*blocks[: MAX_BLOCKS - 1], more_alerts_block(hidden)]


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
