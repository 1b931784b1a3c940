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


def locate(m: Manifest, path: tuple) -> tuple[str | None, int | None]:
    return m.file, m.line_of(path) if path else m.line


def unreadable(m: Manifest, what: str, error: Exception) -> Finding:
    """The finding for an object that ``what`` (a rule, a stage) could not read: a field of the wrong type."""
    return Finding("schema/malformed", Severity.ERROR,
                   f"{what} could not read this object ({type(error).__name__}: {error}); a field has the "
                   "wrong type or shape, fix it (the API server would refuse it too)",
                   m.file, m.line, m.ref, m.app)


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
            try:
                problems = list(rule.check(m, ctx))  # type: ignore[misc]
            except Exception as e:  # noqa: BLE001 - a malformed object must not end the run, nor pass silently
                out.append(unreadable(m, rule.id, e))
                continue
            for problem in problems:
                file, line = locate(m, problem.path)
                msg = problem.message
                if rule.id in unreasoned:
                    msg += f" (the {SKIP_ANNOTATION} annotation names this rule but gives no reason, so it is not skipped)"
                out.append(Finding(rule.id, severity, msg, file, line, m.ref, m.app))
    return out
