"""SMS length budget: GSM-7 / UCS-2 segment counting and trimming (DESIGN §4). Pure.

One non-GSM-7 character switches the whole message to UCS-2. A single segment holds 160
GSM-7 septets or 70 UCS-2 code units; a concatenated message carries a header in each
segment and holds 153 septets or 67 code units per segment. GSM-7 extension characters
(``{ } [ ] ~ \\ | ^ €`` and form feed) take two septets (escape + character), a
character outside the Basic Multilingual Plane (an emoji) takes two UTF-16 code units,
and neither is split across two segments. This module counts and trims; it never sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_CAPACITY: dict[Encoding, int] = {"GSM-7": 160, "UCS-2": 70}
MULTI_CAPACITY: dict[Encoding, int] = {"GSM-7": 153, "UCS-2": 67}
# The ellipsis that keeps a trimmed message in its encoding: "…" is not GSM-7.
ELLIPSIS: dict[Encoding, str] = {"GSM-7": "...", "UCS-2": "…"}


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    encoding: Encoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def encoding_of(text: str) -> Encoding:
    """GSM-7 when every character is in the basic or extension table, else UCS-2."""
    for char in text:
        if char not in GSM7_BASIC and char not in GSM7_EXTENSION:
            return "UCS-2"
    return "GSM-7"


def _unit_sizes(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if char in GSM7_EXTENSION else 1 for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def _segments(sizes: list[int], encoding: Encoding) -> int:
    total = sum(sizes)
    if total <= SINGLE_CAPACITY[encoding]:
        return 1
    capacity = MULTI_CAPACITY[encoding]
    segments, used = 1, 0
    for size in sizes:
        # A two-unit character never straddles a segment boundary.
        if used + size > capacity:
            segments += 1
            used = 0
        used += size
    return segments


def segment_info(text: str) -> SegmentInfo:
    """The encoding, length in units and segments of ``text`` (an empty text is one segment)."""
    encoding = encoding_of(text)
    sizes = _unit_sizes(text, encoding)
    return SegmentInfo(encoding, sum(sizes), _segments(sizes, encoding))


def segment_count(text: str) -> int:
    return segment_info(text).segments


def _with_ellipsis(prefix: str) -> str:
    stem = prefix.rstrip()
    return stem + ELLIPSIS[encoding_of(stem)]


_WORD_SLACK = 15  # characters given up at most to end on a whole word


def trim_to_segments(text: str, max_segments: int) -> str:
    """``text`` unchanged if it fits in ``max_segments``, else its longest prefix that fits
    with an ellipsis appended ("..." while the prefix is GSM-7, "…" once it is UCS-2),
    ending on a whole word when a word ends within ``_WORD_SLACK`` characters of the cut.

    Cutting may drop the only UCS-2 character and bring the prefix back to GSM-7 with its
    larger segments; the fit is monotonic in the prefix length, so a binary search finds it.
    """
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    if segment_count(text) <= max_segments:
        return text
    text = text.rstrip()
    if segment_count(text) <= max_segments:
        return text
    low, high = 0, len(text)  # invariant: text[:low] fits, text[:high] does not
    while high - low > 1:
        middle = (low + high) // 2
        if segment_count(_with_ellipsis(text[:middle])) <= max_segments:
            low = middle
        else:
            high = middle
    cut = text[:low]
    # End on a word when one ends close to the cut: "disk fu..." reads worse than "disk...".
    # A shorter prefix still fits (the fit is monotonic), so this never breaks the budget.
    space = cut.rfind(" ")
    if space > 0 and len(cut) - space <= _WORD_SLACK:
        cut = cut[:space].rstrip()
    return _with_ellipsis(cut)


def trim_keeping_end(text: str, end: str, max_segments: int) -> str:
    """Like ``trim_to_segments``, but ``end`` (the last line of ``text``, an escalation
    page's "Reply ACK 4821") stays whole: what is trimmed is what comes before it."""
    if segment_count(text) <= max_segments or not text.endswith(end):
        return trim_to_segments(text, max_segments)
    head = text.removesuffix(end).rstrip()
    low, high = 0, len(head)  # invariant: head[:low] fits with the end, head[:high] does not
    if segment_count(_with_ellipsis("") + "\n" + end) > max_segments:
        return trim_to_segments(text, max_segments)  # the end alone does not fit
    while high - low > 1:
        middle = (low + high) // 2
        if segment_count(_with_ellipsis(head[:middle]) + "\n" + end) <= max_segments:
            low = middle
        else:
            high = middle
    return _with_ellipsis(head[:low]) + "\n" + end
