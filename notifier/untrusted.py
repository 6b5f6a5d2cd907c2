"""Making untrusted alert text inert: pure functions, no I/O (DESIGN §4).

Labels, annotations and URLs in a payload are written by whoever can expose a metric.
What is dangerous differs by where the text ends up, so there is one function per place:

- ``plain_text``: no control, format or surrogate characters (NUL, ESC, DEL, bidi
  overrides such as U+202E, zero-width characters, tag characters). They are invisible,
  reorder what a person reads, and one of them switches a whole SMS to UCS-2. Line
  breaks of every kind become ``\\n`` (or spaces), a tab a space.
- ``header_text``: one line of ``plain_text`` for a mail header, with RFC 2047 encoded
  words broken up. Python's email package decodes ``=?utf-8?q?...?=`` in a value it is
  given and, before 3.11.10 / 3.12.5 (CPython gh-121650), writes decoded CR/LF out raw:
  an alertname could add a ``Bcc:`` header or replace the body.
- ``http_url``: a URL only if it is plain ``http``/``https``, else ``""``, so a
  ``javascript:`` or ``data:`` URL never becomes a link.

This module decides what text is safe; it does not escape for a markup language (Jinja's
autoescape does HTML, ``slack_escape`` does mrkdwn).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

# Cc: C0/C1 controls (NUL, ESC, DEL, ...); Cf: format characters (bidi embeddings,
# overrides and isolates, zero-width space/joiners, BOM, soft hyphen, tag characters);
# Cs: lone surrogates, which no encoder will write.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs"})
_ENCODED_WORD_START = "=?"
# A space keeps both characters visible (a reader sees what was sent) while no RFC 2047
# decoder, Python's included, takes "= ?" for the start of an encoded word.
_ENCODED_WORD_BROKEN = "= ?"
_HTTP_URL = re.compile(r"https?://\S+", re.IGNORECASE)


def _visible(line: str) -> str:
    """``line`` (no line breaks in it) with tabs as spaces and invisible characters dropped."""
    return "".join(
        " " if char == "\t" else char
        for char in line
        if char == "\t" or unicodedata.category(char) not in _INVISIBLE
    )


def plain_text(value: str, *, newlines: bool = True) -> str:
    """``value`` without control, format and surrogate characters.

    Every line break ``str.splitlines`` knows (CR, LF, CRLF, VT, FF, NEL, U+2028, U+2029,
    ...) becomes ``\\n``, or a space when ``newlines`` is false; a tab becomes a space.
    """
    return ("\n" if newlines else " ").join(_visible(line) for line in value.splitlines())


def header_text(value: str) -> str:
    """``value`` as one inert line for a mail header built from alert data.

    Whitespace runs collapse to one space; every ``=?`` becomes ``= ?`` (the inserted
    space never forms a new ``=?``), so no encoded word in the value gets decoded.
    """
    line = " ".join(plain_text(value, newlines=False).split())
    return line.replace(_ENCODED_WORD_START, _ENCODED_WORD_BROKEN)


def http_url(value: object) -> str:
    """``value`` unchanged when it is an absolute ``http``/``https`` URL with a host and no
    whitespace or control character in it, else ``""``.

    Strict on purpose: browsers drop tabs and line breaks inside a URL and trim controls
    around it ("java\\tscript:" runs), so anything that needs such cleaning is no link.
    """
    if not isinstance(value, str) or not _HTTP_URL.fullmatch(value):
        return ""
    if any(unicodedata.category(char) in _INVISIBLE for char in value):
        return ""
    try:
        host = urlsplit(value).hostname
    except ValueError:  # a malformed port or IPv6 literal
        return ""
    return value if host else ""
