"""Every relative link in the README and docs/ leads somewhere: the file exists and, with a
`#fragment`, so does the heading it names. The documents moved once; links must not rot."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def heading_anchors(text: str) -> set[str]:
    """The fragments a Markdown renderer gives the headings (GitHub's rule: lower case, spaces
    to hyphens, punctuation other than hyphens and underscores dropped); code blocks skipped."""
    anchors, in_code = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def broken_links(document: Path) -> list[str]:
    broken = []
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a URL, not a file of the repository
        path, _, fragment = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and fragment not in heading_anchors(linked.read_text()):
            broken.append(f"{target}: {linked.name} has no heading #{fragment}")
    return broken


def test_every_relative_link_resolves() -> None:
    broken = {
        str(document.relative_to(REPO_ROOT)): found
        for document in DOCUMENTS
        if (found := broken_links(document))
    }
    assert broken == {}


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\n## CORS (browser storefronts)\n")
    document = tmp_path / "b.md"
    document.write_text(
        "[ok](a.md#cors-browser-storefronts) [gone](c.md) [no heading](a.md#limits) "
        "[url](https://example.org/x)\n"
    )
    assert broken_links(document) == [
        "c.md: no such file",
        "a.md#limits: a.md has no heading #limits",
    ]
