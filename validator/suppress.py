"""What a run does not report: findings in excluded paths (config ``exclude`` and a rule's own
``exclude``), and findings already recorded in a baseline file (``--baseline``), so a large
repository can adopt the gate and block only new findings.

Globs are matched against repo-relative paths: ``*`` and ``?`` stay within one path segment,
``**`` spans any number of segments, and a pattern naming a directory (``legacy/`` or ``legacy``)
covers everything below it.

A baseline entry's fingerprint leaves out the line number and the severity, so moving a finding
(lines added above it) or re-grading its rule keeps it known; each entry covers one finding, so a
second copy of a known finding is new.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

from .findings import RENDERED_BY, Finding

BASELINE_VERSION = 1


class BaselineError(Exception):
    pass


@lru_cache(maxsize=512)
def _glob_re(pattern: str) -> re.Pattern:
    pat = pattern.strip().lstrip("./").rstrip("/") if pattern.strip() not in ("", "/") else ""
    out = []
    i = 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif pat[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pat[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pat[i]))
            i += 1
    return re.compile("".join(out) + "(?:/.*)?")


def path_matches(path: str | None, patterns: tuple[str, ...] | list[str]) -> bool:
    return bool(path) and any(_glob_re(p).fullmatch(path) for p in patterns)


def excluded(f: Finding, exclude: tuple[str, ...], rule_exclude: dict[str, tuple[str, ...]]) -> bool:
    return path_matches(f.file, exclude) or path_matches(f.file, rule_exclude.get(f.rule, ()))


def fingerprint(f: Finding) -> str:
    message = re.sub(r"\bline \d+\b", "line N", f.message)
    if f.related and f.related[0].label == RENDERED_BY:
        # the template used to be named in the message: baselines written then still match
        message += f" (set here, rendered by {f.related[0].file})"
    key = "\0".join((f.rule, f.file or "", f.app or "", str(f.object or ""), message))
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def write_baseline(path: Path, findings: list[Finding]) -> None:
    entries = sorted(({"fingerprint": fingerprint(f), "rule": f.rule, "file": f.file, "message": f.message}
                      for f in findings), key=lambda e: (e["file"] or "", e["rule"], e["fingerprint"]))
    path.write_text(json.dumps({"version": BASELINE_VERSION, "tool": "gitops-validate", "findings": entries},
                               indent=2) + "\n", encoding="utf-8")


def read_baseline(path: Path) -> Counter:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries = doc["findings"] if isinstance(doc, dict) and doc.get("version") == BASELINE_VERSION else None
        if not isinstance(entries, list):
            raise ValueError(f"not a gitops-validate baseline (version {BASELINE_VERSION}); "
                             "write one with --write-baseline")
        return Counter(str(e["fingerprint"]) for e in entries)
    except OSError as e:
        raise BaselineError(f"{path}: cannot read: {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise BaselineError(f"{path}: {e}") from None


def apply_baseline(findings: list[Finding], known: Counter) -> tuple[list[Finding], int, int]:
    """The findings not in the baseline, how many were hidden, and how many entries no longer occur."""
    left = Counter(known)
    new = []
    for f in findings:
        fp = fingerprint(f)
        if left[fp] > 0:
            left[fp] -= 1
        else:
            new.append(f)
    return new, len(findings) - len(new), sum(left.values())
