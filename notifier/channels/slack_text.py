"""Alert text made inert for Slack: mrkdwn escaping, checked links, ``verbatim`` text objects.

Slack reads ``<...>`` in text as a link or a mention (``<!channel>`` pings a whole
channel) and ``&...;`` as an entity; it asks that exactly ``&``, ``<`` and ``>`` be
escaped, and decodes those three entities for display (DESIGN §4). Alert labels,
annotations and URLs are written by whoever can expose a metric, so they reach a Slack
template already escaped, as ``Mrkdwn`` strings, the way an HTML template autoescapes:
a template written naively cannot ping or phish. ``escape`` leaves a ``Mrkdwn`` alone
(no double escaping); the ``raw`` filter (``original``) opts one value out. ``link``
makes ``<url|label>`` only of a plain http(s) URL. ``verbatim_by_default`` stops Slack
from turning bare URLs, channel names and mentions in mrkdwn into live ones.

Pure: this module never renders a template or sends anything.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_SPECIAL = re.compile("[&<>]")
_ENTITY = re.compile("&(amp|lt|gt);")
_DECODED = {"amp": "&", "lt": "<", "gt": ">"}
# Characters that end or split a ``<url|label>`` link, or that a URL never holds raw.
_NOT_IN_LINK = re.compile(r"[|<>\s\x00-\x1f\x7f]")


class Mrkdwn(str):
    """Text already escaped for mrkdwn: escaping it again leaves it as it is."""

    __slots__ = ()


def escape(value: object) -> Mrkdwn:
    """``value`` as mrkdwn that shows it literally (``&``, ``<``, ``>`` as entities)."""
    if isinstance(value, Mrkdwn):
        return value
    return Mrkdwn(_SPECIAL.sub(lambda match: ENTITIES[match.group()], str(value)))


def original(value: Any) -> Any:
    """The text a ``Mrkdwn`` was escaped from; anything else as it is (the ``raw`` filter)."""
    if isinstance(value, Mrkdwn):
        return _ENTITY.sub(lambda match: _DECODED[match.group(1)], value)
    return value


def is_link_target(url: str) -> bool:
    """Whether ``url`` can be the target of ``<url|label>``: http(s), a host, nothing that
    would end the link early or split it (``|``, ``<``, ``>``, whitespace, controls)."""
    if _NOT_IN_LINK.search(url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def link(url: object, label: object) -> Mrkdwn:
    """``<url|label>`` for a plain http(s) ``url``; otherwise the URL as escaped text.

    ``url`` may come escaped (a ``Mrkdwn`` from the template context): it is checked as
    the original text. An empty URL gives an empty string.
    """
    target = str(original(url))
    if not target:
        return Mrkdwn("")
    if not is_link_target(target):
        return escape(target)
    return Mrkdwn(f"<{escape(target)}|{escape(label)}>")


def verbatim_by_default(node: Any) -> Any:
    """``node`` (blocks, or any part of them) with ``"verbatim": true`` on every mrkdwn
    text object that does not set it; a template that wants Slack's auto-linking says
    ``"verbatim": false``."""
    if isinstance(node, list):
        return [verbatim_by_default(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
        return {"verbatim": True, **node}
    return {key: verbatim_by_default(value) for key, value in node.items()}
