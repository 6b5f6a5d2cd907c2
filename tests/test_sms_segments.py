"""SMS segment counting and trimming: tables, no I/O."""

from __future__ import annotations

import pytest

from notifier.channels.sms_segments import (
    encoding_of,
    segment_count,
    segment_info,
    trim_to_segments,
)

EMOJI = "\U0001f525"  # outside the BMP: two UTF-16 code units


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", "GSM-7", 42, 1),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
        ("€" * 81, "GSM-7", 162, 2),
        ("{}[]~\\|^", "GSM-7", 16, 1),
        # 152 septets then an extension character: it does not straddle the boundary.
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 164, 2),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),
        ("ç", "UCS-2", 1, 1),  # only the capital Ç is GSM-7
        ("Ж" * 70, "UCS-2", 70, 1),
        ("Ж" * 71, "UCS-2", 71, 2),
        ("Ж" * 134, "UCS-2", 134, 2),
        ("Ж" * 135, "UCS-2", 135, 3),
        ("…", "UCS-2", 1, 1),
        (EMOJI * 35, "UCS-2", 70, 1),  # an emoji counts two code units
        (EMOJI * 36, "UCS-2", 72, 2),
        # 33 emoji fill 66 of 67 units: the 34th does not split across segments.
        (EMOJI * 67, "UCS-2", 134, 3),
        ("a" * 150 + EMOJI, "UCS-2", 152, 3),  # one emoji turns the whole text UCS-2
    ],
)
def test_segment_info(text: str, encoding: str, units: int, segments: int) -> None:
    info = segment_info(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)
    assert encoding_of(text) == encoding
    assert segment_count(text) == segments


def test_text_that_fits_is_unchanged() -> None:
    text = "[FIRING] InstanceDown critical: node-7 down"
    assert trim_to_segments(text, 1) == text
    assert trim_to_segments("a" * 306, 2) == "a" * 306


@pytest.mark.parametrize("max_segments", [1, 2, 3, 10])
def test_gsm_text_is_trimmed_with_a_gsm_ellipsis(max_segments: int) -> None:
    text = "word " * 400
    trimmed = trim_to_segments(text, max_segments)
    assert trimmed.endswith("...")
    assert text.startswith(trimmed.removesuffix("...").rstrip())
    info = segment_info(trimmed)
    assert info.encoding == "GSM-7"
    assert info.segments == max_segments
    # It ends on a whole word, and as late as one fits: one more word would not.
    assert trimmed.removesuffix("...").endswith("word")
    capacity = 160 if max_segments == 1 else 153 * max_segments
    assert info.units > capacity - len("word ")


def test_ucs2_text_is_trimmed_with_a_unicode_ellipsis() -> None:
    trimmed = trim_to_segments("Ж" * 200, 2)
    assert trimmed == "Ж" * 133 + "…"
    assert segment_info(trimmed).segments == 2


def test_emoji_text_keeps_pairs_whole() -> None:
    trimmed = trim_to_segments(EMOJI * 100, 1)
    assert trimmed == EMOJI * 34 + "…"  # 68 + 1 units <= 70
    assert segment_count(trimmed) == 1


def test_cut_that_drops_the_only_ucs2_character_returns_to_gsm() -> None:
    text = "a" * 200 + "Ж"
    trimmed = trim_to_segments(text, 1)
    assert trimmed == "a" * 157 + "..."
    assert segment_info(trimmed).encoding == "GSM-7"


def test_the_cut_ends_on_a_word_when_one_ends_nearby() -> None:
    assert trim_to_segments("ab " * 100, 1) == "ab " * 51 + "ab..."
    # no word ends within reach of the cut: cut inside the word
    assert trim_to_segments("short " + "z" * 300, 1) == "short " + "z" * 151 + "..."


def test_trailing_whitespace_is_not_kept_before_the_ellipsis() -> None:
    assert trim_to_segments("x" * 156 + " " + "y" * 50, 1) == "x" * 156 + "..."
    assert trim_to_segments("short" + " " * 200, 1) == "short"


def test_extension_characters_count_double_when_trimming() -> None:
    trimmed = trim_to_segments("€" * 100, 1)
    assert trimmed == "€" * 78 + "..."
    assert segment_info(trimmed).units == 159


def test_max_segments_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        trim_to_segments("text", 0)
