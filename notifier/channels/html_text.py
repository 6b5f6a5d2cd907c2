"""HTML -> readable plain text, for the text part of an email derived from its HTML part. Pure.

Drops ``<head>``, ``<style>`` and ``<script>``; paragraphs, headings and tables are set
apart by a blank line, table rows and list items are lines, cells in a row are joined
with ": ", links keep their target in parentheses, entities are decoded. It is a
readable fallback for mail clients that show text, not a general HTML renderer.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIPPED = frozenset({"head", "style", "script", "title"})
_WHITESPACE = re.compile(r"\s+")
_LINES = frozenset({"tr", "li"})
_PARAGRAPHS = frozenset(
    {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "pre", "hr"}
)


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._cells_in_row = 0
        self._href: str | None = None
        self._preformatted = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _LINES:
            self.parts.append("\n")
            self._cells_in_row = 0
        elif tag in _PARAGRAPHS:
            self.parts.append("\n\n")
            if tag == "pre":
                self._preformatted += 1
        elif tag in ("td", "th"):
            if self._cells_in_row:
                self.parts.append(": ")
            self._cells_in_row += 1
        elif tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _PARAGRAPHS:
            self.parts.append("\n\n")
            if tag == "pre" and self._preformatted:
                self._preformatted -= 1
        elif tag == "a" and self._href:
            self.parts.append(f" ({self._href})")
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        # Line breaks in HTML source are spaces, except inside <pre>.
        self.parts.append(data if self._preformatted else _WHITESPACE.sub(" ", data))


def html_to_text(html: str) -> str:
    extractor = _Extractor()
    extractor.feed(html)
    extractor.close()
    lines = [" ".join(line.split()) for line in "".join(extractor.parts).splitlines()]
    text: list[str] = []
    for line in lines:
        if line or (text and text[-1]):
            text.append(line)
    return "\n".join(text).strip() + "\n"
