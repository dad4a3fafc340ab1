"""The fenced code blocks of a Markdown document, by section: how the tests run the README's and
docs/'s examples as written, so that the documents cannot drift away from what works."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def doc_sh_blocks(document: str | Path, heading: str) -> list[str]:
    """The ```sh blocks of `document`'s section under `heading`."""
    return [block for language, block in doc_blocks(document, heading) if language == "sh"]


def doc_blocks(document: str | Path, heading: str, *, within: str = "") -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the section under `heading` (up to the next
    heading of the same or a higher level, down to `##`: a `# ` line is a shell comment), in
    order; with `within`, `heading` is looked for only inside that section. `document` is a
    path relative to the repository root (or an absolute one)."""
    text = (REPO_ROOT / document).read_text()
    if within:
        text = _section(text, within, document)
    section = _section(text, heading, document)
    blocks = []
    for part in section.split("\n```")[1::2]:
        language, _, code = part.partition("\n")
        blocks.append((language.strip(), code))
    return blocks


def _section(text: str, heading: str, document: str | Path) -> str:
    marker = f"\n{heading}\n"
    assert marker in f"\n{text}", f"{document} has no section {heading!r}"
    section = f"\n{text}".split(marker, 1)[1]
    level = heading.split(" ", 1)[0]
    for depth in range(len(level), 1, -1):
        section = section.split(f"\n{'#' * depth} ", 1)[0]
    return section
