"""Every relative link in the repository's Markdown leads to a file inside the repository.

A link to ``../somewhere`` may resolve on one machine (a folder kept beside the
checkout) and on no other, so a link that leaves the repository fails here even when
its target exists. A ``#fragment`` must name a heading of its target (GitHub's anchors).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Folders that are not the project's own text (venvs, caches, build output).
SKIPPED_PARTS = {"build", "dist", "node_modules", "data"}

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files() -> list[Path]:
    return sorted(
        path
        for path in ROOT.rglob("*.md")
        if not any(
            part.startswith(".") or part in SKIPPED_PARTS or part.endswith(".egg-info")
            for part in path.relative_to(ROOT).parts[:-1]
        )
    )


def links(text: str) -> list[str]:
    prose = FENCE.sub("", text)
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(h) for h in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))}


def broken_links(text: str, path: Path) -> list[str]:
    """The links of ``text``, read as the file at ``path``, that do not resolve."""
    problems = []
    for target in links(text):
        if SCHEME.match(target):
            continue  # http(s), mailto: not ours to check offline
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target}: leaves the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{target}: no heading #{fragment} in {resolved.relative_to(ROOT)}")
    return problems


def test_the_repository_has_its_docs() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in markdown_files()}
    assert {"README.md", "docs/architecture.md", "docs/http-api.md"} <= names
    assert {"docs/semantics.md", "docs/store.md", "docs/operations.md"} <= names


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves_inside_the_repository(path: Path) -> None:
    assert broken_links(path.read_text(encoding="utf-8"), path) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[DESIGN](../shared/DESIGN.md)", "leaves the repository"),
        ("[gone](docs/gone.md)", "no such file"),
        ("[x](#no-such-heading)", "no heading"),
        ("[x](docs/store.md#no-such-heading)", "no heading"),
        ("[ref]: ../../elsewhere.md", "leaves the repository"),
    ],
)
def test_a_bad_link_is_reported(text: str, problem: str) -> None:
    problems = broken_links(text, ROOT / "README.md")
    assert len(problems) == 1 and problem in problems[0], problems
