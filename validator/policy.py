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
from typing import Any, Iterable, Mapping

from . import provenance
from .findings import Finding, Location, Problem, Severity
from .model import Manifest, one_by_one
from .provenance import template_line  # noqa: F401  (determinism.py reads it from here)
from .rules import CLUSTER_RULES, POLICY_RULES, REGISTRY, Context, Rule

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


def point(m: Manifest, problem: Problem, repo: Path | None) -> provenance.Place:
    """The place a finding points at: the problem's own (provenance.where), or the first of its
    ``also`` places an override set; the other places become related locations."""
    own = provenance.where(m, problem.path, repo, problem.related)
    places = [(own, problem.label)]
    for target, path, label in problem.also:
        if isinstance(target, Location):  # a line of a file we read: a fact this repo sets
            places.append((provenance.Place(target.file, target.line, overridden=True), label))
        else:
            places.append((provenance.where(target, path, repo), label))
    chosen = own if own.overridden else next((p for p, _ in places if p.overridden), own)
    others = tuple(Location(p.file, p.line, label) for p, label in places if p is not chosen and p.file)
    return provenance.Place(chosen.file, chosen.line, chosen.related + others, chosen.overridden)


def unreadable(m: Manifest, what: str, error: Exception) -> Finding:
    """The finding for an object that ``what`` (a rule, a stage) could not read: a field of the wrong type."""
    return Finding("schema/malformed", Severity.ERROR,
                   f"{what} could not read this object ({type(error).__name__}: {error}); a field has the "
                   "wrong type or shape, fix it (the API server would refuse it too)",
                   m.file, m.line, m.ref, m.app)



class Watched:
    """A Context that notes whether a rule read more of it than the config's facts. A rule that
    did not found what it found in the object alone: its findings can be cached with the object."""
    LOCAL = frozenset({"facts", "allowed_registries"})   # both in the result cache's key

    def __init__(self, ctx: Context):
        self._ctx = ctx
        self.crossed = False

    def __getattr__(self, name: str) -> Any:
        if name not in self.LOCAL:
            self.crossed = True
        return getattr(self._ctx, name)


def evaluate(manifests: Iterable[Manifest], ctx: Context,
             severities: Mapping[str, Severity | None] | None = None,
             rules: Iterable[Rule] = POLICY_RULES, repo: Path | None = None,
             only: Mapping[int, Iterable[str]] | None = None,
             record: dict[int, tuple[list[Finding], list[str]]] | None = None) -> list[Finding]:
    """Findings of ``rules`` on ``manifests``. ``severities`` maps a rule id to a new severity,
    or to None when the rule is off. With ``repo``, a finding on a rendered object points at the
    value file line that set the field, or at the template line that spells it out.

    For the result cache: with ``only`` (``id(object)`` -> rule ids), such an object is checked by
    those rules alone; with ``record``, ``record[id(object)]`` gets (the findings of the rules that
    read nothing but the object and the config's facts, the ids of the rules that read more)."""
    severities = severities or {}
    active = [(r, severities.get(r.id, r.severity)) for r in rules]
    active = [(r, sev) for r, sev in active if sev is not None]
    out: list[Finding] = []
    by_kind: dict[str, list[tuple[Rule, Severity]]] = {}   # a rule that cannot apply to a kind costs nothing for it
    for m in one_by_one(manifests):   # each object's pod template and containers read once
        kind = m.kind
        applicable = by_kind.get(kind)
        if applicable is None:
            applicable = by_kind[kind] = [(r, sev) for r, sev in active if r.kinds is None or kind in r.kinds]
        skips, unreasoned = parse_skips(m)
        wanted = set(only[id(m)]) if only is not None and id(m) in only else None
        local: list[Finding] = []
        cross: list[str] = []
        if record is not None:
            record[id(m)] = (local, cross)
        filtered = bool(skips) or wanted is not None   # most objects: neither, and most rules find nothing
        for rule, severity in applicable:
            if filtered and (rule.id in skips or (wanted is not None and rule.id not in wanted)):
                continue
            watched = Watched(ctx) if record is not None else ctx
            try:
                problems = list(rule.check(m, watched))  # type: ignore[misc, arg-type]
            except Exception as e:  # noqa: BLE001 - a malformed object must not end the run, nor pass silently
                out.append(unreadable(m, rule.id, e))
                if record is not None and watched.crossed:
                    cross.append(rule.id)
                else:
                    local.append(out[-1])
                continue
            if record is None:
                if not problems:
                    continue
                into = local
            elif watched.crossed:
                cross.append(rule.id)
                into = None
            else:
                into = local
            for problem in problems:
                rule_id, sev = rule.id, severity
                if problem.rule is not None:  # a sibling rule (refs/not-checked): its own severity and config
                    rule_id = problem.rule
                    sev = severities.get(rule_id, REGISTRY[rule_id].severity)
                    if sev is None or rule_id in skips:
                        continue
                at = problem.at or m  # another object's file (the AppProject that refuses an app)
                place = point(at, problem, repo)  # type: ignore[arg-type]
                msg = problem.message
                if rule_id in unreasoned:
                    msg += f" (the {SKIP_ANNOTATION} annotation names this rule but gives no reason, so it is not skipped)"
                # an Application read from a file is its own app (path-scoped runs keep its findings)
                app = m.app if m.app is not None or m.kind != "Application" else m.name
                out.append(Finding(rule_id, sev, msg, place.file, place.line, m.ref, app, place.related))
                if into is not None:
                    into.append(out[-1])
    return out


def evaluate_cluster(ctx: Context, severities: Mapping[str, Severity | None] | None = None,
                     rules: Iterable[Rule] = CLUSTER_RULES, repo: Path | None = None) -> list[Finding]:
    """Findings of the cluster-level ``rules`` (a sum over every object of ``ctx``). A finding
    about an object can be skipped by that object's annotation, like any other."""
    severities = severities or {}
    out: list[Finding] = []
    for rule in rules:
        severity = severities.get(rule.id, rule.severity)
        if severity is None:
            continue
        for problem in rule.cluster_check(ctx):  # type: ignore[misc]
            m = problem.subject
            if m is not None and rule.id in parse_skips(m)[0]:
                continue
            place = provenance.Place(problem.file, problem.line)
            if place.file is None and m is not None:
                place = provenance.where(m, problem.path, repo)
            out.append(Finding(rule.id, severity, problem.message, place.file, place.line,
                               m.ref if m is not None else None, m.app if m is not None else None, place.related))
    return out
