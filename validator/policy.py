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

from typing import Iterable, Mapping

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


def locate(m: Manifest, path: tuple, related: tuple = ()) -> tuple[str | None, int | None]:
    """Where to point: the line inside a file we read, else (a rendered object) the value file
    line that set the field (or a related one) when provenance finds it, else the template."""
    if m.line is None and m.values is not None and path:
        found = m.values.locate(m.doc, (path, *related))
        if found is not None:
            return found
    return m.file, m.line_of(path) if path else m.line


def evaluate(manifests: Iterable[Manifest], ctx: Context,
             severities: Mapping[str, Severity | None] | None = None,
             rules: Iterable[Rule] = POLICY_RULES) -> list[Finding]:
    """Findings of ``rules`` on ``manifests``. ``severities`` maps a rule id to a new severity,
    or to None when the rule is off."""
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
                file, line = locate(m, problem.path, problem.related)
                msg = problem.message
                if file != m.file and m.file:
                    msg += f" (set here, rendered by {m.file})"
                if rule.id in unreasoned:
                    msg += f" (the {SKIP_ANNOTATION} annotation names this rule but gives no reason, so it is not skipped)"
                out.append(Finding(rule.id, severity, msg, file, line, m.ref, m.app))
    return out
