"""Every relative link in README.md and docs/**/*.md resolves: the file exists and, for a link with a
#fragment into a Markdown file, a heading (GitHub's anchor rules) or an explicit anchor exists."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [f for f in files if f.is_file()]


def prose_lines(path: Path):
    """(line number, text) outside fenced code blocks, with inline code removed."""
    fenced = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = FENCE.match(line)
        if match:
            if fenced is None:
                fenced = match.group(1)
            elif match.group(1) == fenced:
                fenced = None
            continue
        if fenced is None:
            yield number, INLINE_CODE.sub("", line)


def github_slug(heading: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # GitHub drops punctuation, keeps letters, digits, _ and -
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    fenced = None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = FENCE.match(line)
        if match:
            fenced = match.group(1) if fenced is None else (None if match.group(1) == fenced else fenced)
            continue
        if fenced is not None:
            continue
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading:
            slug = github_slug(heading.group(2))
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links(path: Path):
    for number, line in prose_lines(path):
        targets = INLINE_LINK.findall(line)
        ref = REFERENCE_DEF.match(line)
        if ref:
            targets.append(ref.group(1))
        for target in targets:
            if SCHEME.match(target) or target.startswith("//"):
                continue
            yield number, target


def broken_links(path: Path) -> list[str]:
    problems = []
    for number, target in links(path):
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where} -> no such file")
            continue
        try:
            dest.relative_to(ROOT)
        except ValueError:
            problems.append(f"{where} -> outside the repository")
            continue
        if fragment and dest.suffix == ".md" and unquote(fragment).lower() not in anchors(dest):
            problems.append(f"{where} -> no heading or anchor #{fragment} in {dest.relative_to(ROOT)}")
    return problems


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_the_docs_are_linked_from_somewhere():
    """Each page under docs/ is reachable from README.md or another doc page."""
    linked: set[Path] = set()
    for path in markdown_files():
        for _, target in links(path):
            file_part = target.partition("#")[0]
            if file_part:
                linked.add((path.parent / unquote(file_part)).resolve())
    orphans = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").rglob("*.md")) if p.resolve() not in linked]
    assert orphans == []


def test_link_checker_catches_broken_links(tmp_path, monkeypatch):
    """The checker itself: a missing file and a missing anchor are reported, good links are not."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/a.md").write_text(
        "# Title\n\n## Pending pods: the node is full\n\n## Errors: `metadata.annotations: Too long`\n\n"
        "[ok](b.md) [ok](#pending-pods-the-node-is-full) [ok](#errors-metadataannotations-too-long)\n"
        "[web](https://example.test/x) `[code](missing.md)`\n"
        "```\n[fenced](missing.md)\n```\n"
        "[bad file](missing.md) [bad anchor](b.md#nowhere)\n[ref]: ../README.md\n"
    )
    (tmp_path / "docs/b.md").write_text("# B\n")
    (tmp_path / "README.md").write_text("[a](docs/a.md)\n")
    problems = broken_links(tmp_path / "docs/a.md")
    assert [p.split(": ", 1)[1] for p in problems] == [
        "missing.md -> no such file",
        "b.md#nowhere -> no heading or anchor #nowhere in docs/b.md",
    ]


RULE_CATEGORIES = ("yaml", "schema", "values", "resources", "probes", "secrets", "refs", "images", "security",
                   "argocd", "capacity")
RULE_ID = re.compile(r"`((?:%s)/[a-z0-9-]+)`" % "|".join(RULE_CATEGORIES))


def test_rule_ids_named_in_the_docs_exist():
    """A runbook naming a validator rule (`images/pull-always`) names one the catalogue documents."""
    catalogue = ROOT / "docs/rules.md"
    assert catalogue.is_file(), "docs/rules.md is generated by make docs"
    documented = {m.group(2) for m in re.finditer(r"^(#+)\s+`?([a-z]+/[a-z0-9-]+)`?\s*$", catalogue.read_text(), re.M)}
    unknown = []
    for path in markdown_files():
        if path == catalogue:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for rule in RULE_ID.findall(line):
                if rule not in documented and not (ROOT / rule).exists():
                    unknown.append(f"{path.relative_to(ROOT)}:{number}: {rule}")
    assert unknown == []
