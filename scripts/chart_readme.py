#!/usr/bin/env python3
"""Keep the values table of each chart README in step with the chart's values.yaml.

Every chart under apps/ documents its values helm-docs style: a ``# -- description`` comment directly
above each leaf key (continued by the ``#`` lines below it, up to the key), or above a map that is one
value (``resources``); an optional ``# @default -- text`` line replaces the rendered default. Maps
without a ``# --`` comment are walked into, and their keys are listed dotted (``image.tag``).

The table sits in the chart's README.md between ``<!-- values:start -->`` and ``<!-- values:end -->``.

    python scripts/chart_readme.py --write           regenerate the tables
    python scripts/chart_readme.py --check           exit 1 and print a diff when a table is stale
    python scripts/chart_readme.py --check apps/x    only the given chart directories

Exit codes: 0 up to date (or written), 1 stale (--check), 2 could not run (unparsable values.yaml,
an undocumented key, a README without the markers). Standard library and PyYAML only.
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
START = "<!-- values:start -->"
END = "<!-- values:end -->"
HEADER = "| Key | Type | Default | Description |\n|-----|------|---------|-------------|"


class ReadmeError(Exception):
    """A problem in a chart's files that stops the table from being built."""


@dataclass
class Row:
    key: str
    type: str
    default: str
    description: str


def _comment_above(lines: list[str], line_no: int) -> tuple[str | None, str | None]:
    """The ``# --`` description and ``# @default --`` text of the comment block right above line_no."""
    block: list[str] = []
    i = line_no - 1
    while i >= 0 and lines[i].strip().startswith("#"):
        block.insert(0, lines[i].strip())
        i -= 1
    starts = [n for n, text in enumerate(block) if text.startswith("# --")]
    if not starts:
        return None, None
    description: list[str] = []
    default: str | None = None
    for text in block[starts[-1]:]:
        if text.startswith("# @default --"):
            default = text[len("# @default --"):].strip()
        elif text.startswith("# --"):
            description.append(text[len("# --"):].strip())
        else:
            description.append(text.lstrip("#").strip())
    return " ".join(part for part in description if part), default


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def value_rows(values_file: Path) -> list[Row]:
    """One row per documented value of values_file, in file order."""
    text = values_file.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ReadmeError(f"{values_file}: not valid YAML: {exc}") from exc
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise ReadmeError(f"{values_file}: the top level is not a map")
    lines = text.splitlines()
    rows: list[Row] = []
    problems: list[str] = []

    def walk(node: yaml.MappingNode, path: list[str], value: dict) -> None:
        for key_node, value_node in node.value:
            key = str(key_node.value)
            here = path + [key]
            dotted = ".".join(here)
            child = value.get(key)
            description, default = _comment_above(lines, key_node.start_mark.line)
            if description is None and isinstance(value_node, yaml.MappingNode) and value_node.value:
                walk(value_node, here, child)
                continue
            if not description:
                problems.append(f"{values_file}:{key_node.start_mark.line + 1}: `{dotted}` has no "
                                "`# -- description` comment directly above it")
                continue
            shown = default if default is not None else "`" + json.dumps(child, separators=(",", ":")) + "`"
            rows.append(Row(dotted, _type_name(child), _cell(shown), _cell(description)))

    walk(root, [], data)
    if problems:
        raise ReadmeError("\n".join(problems))
    return rows


def render_table(chart_dir: Path) -> str:
    """The Markdown values table of the chart in chart_dir."""
    rows = value_rows(chart_dir / "values.yaml")
    body = "\n".join(f"| {r.key} | {r.type} | {r.default} | {r.description} |" for r in rows)
    return f"{HEADER}\n{body}\n" if body else f"{HEADER}\n"


def updated_readme(chart_dir: Path) -> tuple[str, str]:
    """The README's current text and the text it should have."""
    readme = chart_dir / "README.md"
    if not readme.is_file():
        raise ReadmeError(f"{readme}: missing (it needs the markers {START} and {END})")
    current = readme.read_text(encoding="utf-8")
    start, end = current.find(START), current.find(END)
    if start < 0 or end < 0 or end < start:
        raise ReadmeError(f"{readme}: the markers {START} and {END} are missing or out of order")
    head = current[: start + len(START)]
    tail = current[end:]
    return current, f"{head}\n{render_table(chart_dir)}{tail}"


def charts(root: Path = ROOT) -> list[Path]:
    return sorted(p.parent for p in (root / "apps").glob("*/Chart.yaml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the values tables")
    mode.add_argument("--check", action="store_true", help="exit 1 with a diff when a table is stale")
    parser.add_argument("charts", nargs="*", type=Path, help="chart directories (default: apps/*)")
    args = parser.parse_args(argv)

    targets = [p.resolve() for p in args.charts] or charts()
    if not targets:
        print(f"chart_readme: no charts under {ROOT / 'apps'}", file=sys.stderr)
        return 2
    stale = 0
    for chart_dir in targets:
        try:
            current, wanted = updated_readme(chart_dir)
        except (ReadmeError, OSError) as exc:
            print(f"chart_readme: {exc}", file=sys.stderr)
            return 2
        if current == wanted:
            continue
        readme = chart_dir / "README.md"
        try:
            shown = readme.relative_to(ROOT)
        except ValueError:
            shown = readme
        if args.write:
            readme.write_text(wanted, encoding="utf-8")
            print(f"chart_readme: wrote {shown}")
        else:
            stale += 1
            sys.stdout.writelines(difflib.unified_diff(
                current.splitlines(keepends=True), wanted.splitlines(keepends=True),
                fromfile=f"{shown} (current)", tofile=f"{shown} (from values.yaml)"))
    if stale:
        print(f"chart_readme: {stale} README(s) out of date; run: .venv/bin/python scripts/chart_readme.py --write",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
