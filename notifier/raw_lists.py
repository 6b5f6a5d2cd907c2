"""Walking the lists of a raw YAML config tree, for the checks that run before pydantic's.

Cross-checks are written over the raw tree so that they report alongside pydantic's
problems even when parsing failed; a value of the wrong shape is pydantic's to report,
so these helpers pass over it rather than fail on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def mapping_entries(value: object) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """The index and entry of each mapping in ``value``, if it is a list at all."""
    for index, entry in enumerate(value if isinstance(value, list) else []):
        if isinstance(entry, Mapping):
            yield index, entry


def repeated_name(entry: Mapping[str, Any], seen: set[str]) -> str | None:
    """The entry's ``name`` if an earlier entry had it; else None, and the name is noted."""
    name = entry.get("name")
    if not isinstance(name, str):
        return None
    if name in seen:
        return name
    seen.add(name)
    return None
