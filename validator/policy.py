"""Stage 4, policy: run every enabled policy rule over every object.

Rules are pure functions; this module adds what they should not care about: the rule's
configured severity, rules turned off, per-object skip annotations, and where to point.

Skipping one rule for one object takes an annotation that names the rule and gives a reason::

    metadata:
      annotations:
        gitops-validate/skip: |
          probes/missing-liveness: a one-shot migration job, nothing to probe
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from .appsource import find_setting
from .findings import Finding, Severity
from .model import Manifest
from .rules import POLICY_RULES, Context, Rule

SKIP_ANNOTATION = "gitops-validate/skip"


def parse_skips(m: Manifest) -> tuple[dict[str, str], list[str]]:
    """Rule id -> reason from the skip annotation, plus the ids named without a reason."""
    raw = m.annotations.get(SKIP_ANNOTATION)
    if not isinstance(raw, str):
        return {}, []
    skips: dict[str, str] = {}
    unreasoned: list[str] = []
    for part in raw.replace(";", "\n").splitlines():
        if not part.strip():
            continue
        rule, _, reason = part.partition(":")
        rule, reason = rule.strip(), reason.strip()
        if reason:
            skips[rule] = reason
        else:
            unreasoned.append(rule)
    return skips, unreasoned


def locate(m: Manifest, path: tuple, repo: Path | None = None) -> tuple[str | None, int | None]:
    line = m.line_of(path) if path else m.line
    if line is None and path and m.hints and repo is not None:  # a rendered field: the value file that set it
        value: object = m.doc
        for p in path:
            value = value.get(p) if isinstance(value, dict) else (
                value[p] if isinstance(value, list) and isinstance(p, int) and p < len(value) else None)
        found = find_setting(repo, m.hints, path[-1], value)
        if found:
            return found
    return m.file, line


def evaluate(manifests: Iterable[Manifest], ctx: Context,
             severities: Mapping[str, Severity | None] | None = None,
             rules: Iterable[Rule] = POLICY_RULES, repo: Path | None = None) -> list[Finding]:
    """Findings of ``rules`` on ``manifests``. ``severities`` maps a rule id to a new severity,
    or to None when the rule is off. ``repo`` lets a finding on a rendered object point at the
    value file line that set the field."""
    severities = severities or {}
    active = [(r, severities.get(r.id, r.severity)) for r in rules]
    active = [(r, sev) for r, sev in active if sev is not None]
    out: list[Finding] = []
    for m in manifests:
        skips, unreasoned = parse_skips(m)
        for rule, severity in active:
            if rule.id in skips:
                continue
            for problem in rule.check(m, ctx):  # type: ignore[misc]
                file, line = locate(problem.at or m, problem.path, repo)  # type: ignore[arg-type]
                msg = problem.message
                if rule.id in unreasoned:
                    msg += f" (the {SKIP_ANNOTATION} annotation names this rule but gives no reason, so it is not skipped)"
                # an Application read from a file is its own app (path-scoped runs keep its findings)
                app = m.app if m.app is not None or m.kind != "Application" else m.name
                out.append(Finding(rule.id, severity, msg, file, line, m.ref, app))
    return out
