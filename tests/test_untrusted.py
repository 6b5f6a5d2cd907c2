"""Making untrusted alert text inert: tables, no I/O."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

import pytest

from notifier.untrusted import header_text, http_url, plain_text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("disk full", "disk full"),
        ("a\x00b\x1bc\x7fd", "abcd"),  # NUL, ESC, DEL
        ("\u202egnp.exe", "gnp.exe"),  # right-to-left override
        ("a\u200bb\u200cc\u200dd\u2060e\ufeff", "abcde"),  # zero-width characters, BOM
        ("a\u2066b\u2069c", "abc"),  # bidi isolates
        ("\U000e0041\U000e0042hidden", "hidden"),  # tag characters
        ("lone \ud800 surrogate", "lone  surrogate"),
        ("a\x85b", "a\nb"),  # NEL is a line break, not something to drop
        ("one\r\ntwo\rthree\u2028four\x0bfive", "one\ntwo\nthree\nfour\nfive"),
        ("col\tcol", "col col"),
        ("Straße 東京 \U0001f525 ü", "Straße 東京 \U0001f525 ü"),  # letters and emoji stay
    ],
)
def test_plain_text_drops_invisible_characters(value: str, expected: str) -> None:
    assert plain_text(value) == expected


def test_plain_text_without_newlines_makes_breaks_spaces() -> None:
    assert plain_text("a\r\nb\u2029c", newlines=False) == "a b c"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[FIRING] DiskFull", "[FIRING] DiskFull"),
        ("A\r\nBcc: evil@example.com", "A Bcc: evil@example.com"),
        ("  spaced \t out\n", "spaced out"),
        ("nul\x00here", "nulhere"),
        (
            "=?utf-8?q?X=0D=0ABcc:_attacker@evil.example?=",
            "= ?utf-8?q?X=0D=0ABcc:_attacker@evil.example?=",
        ),
        ("inside=?utf-8?b?DQpCY2M6IHg=?=word", "inside= ?utf-8?b?DQpCY2M6IHg= ?=word"),
        ("=?=?=?", "= ?= ?= ?"),
        ("=\u200b?utf-8?q?X=0D=0A?=", "= ?utf-8?q?X=0D=0A?="),  # a zero-width space hides nothing
        ("free = ? text", "free = ? text"),
    ],
)
def test_header_text_is_one_line_without_encoded_words(value: str, expected: str) -> None:
    assert header_text(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "=?utf-8?q?X=0D=0ABcc:_attacker@evil.example?=",
        "=?utf-8?b?WA0KQmNjOiBhdHRhY2tlckBldmlsLmV4YW1wbGU=?=",
        "x =?UTF-8?Q?=0D=0A=0D=0Abody?= y",
        "=?iso-8859-1?q?=0A?==?utf-8?q?=0D?=",
    ],
)
def test_header_text_survives_pythons_own_folding(value: str) -> None:
    """The value as Python writes it: one line, whatever this Python's email package does."""
    message = EmailMessage()
    message["Subject"] = header_text(value)

    folded = email.policy.SMTP.fold_binary("Subject", message["Subject"])

    unfolded = folded.removesuffix(b"\r\n").replace(b"\r\n ", b" ")
    assert b"\r" not in unfolded and b"\n" not in unfolded


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://prometheus:9090/graph?g0.expr=up", "http://prometheus:9090/graph?g0.expr=up"),
        ("HTTPS://runbooks.example/disk#full", "HTTPS://runbooks.example/disk#full"),
        ("javascript:alert(1)", ""),
        ("JavaScript:alert(document.cookie)", ""),
        ("data:text/html,<script>alert(1)</script>", ""),
        ("vbscript:msgbox", ""),
        ("java\tscript:alert(1)", ""),
        (" javascript:alert(1)", ""),
        ("\x00https://example.com", ""),
        ("https://example.com/\u202eexe.txt", ""),
        ("http://a.example/ x", ""),
        ("http://", ""),
        ("https:///path-only", ""),
        ("//evil.example/x", ""),
        ("/relative/path", ""),
        ("http://[::1", ""),
        ("", ""),
        (None, ""),
        (42, ""),
    ],
)
def test_http_url_keeps_only_plain_http_links(value: object, expected: str) -> None:
    assert http_url(value) == expected
