"""How a rule is declared. A rule is data (id, severity, why, examples) plus, for policy rules,
a pure function from one object and its context to problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..findings import Problem, Severity
from ..model import WORKLOAD_KINDS, ClusterFacts, Manifest, pod_labels, selector_matches


@dataclass(frozen=True)
class Context:
    """What a rule may look at besides the object itself. Immutable; shared by all rules."""
    objects: tuple[Manifest, ...] = ()          # every object of the same cluster
    facts: ClusterFacts | None = None
    allowed_registries: tuple[str, ...] = ()
    #: kinds with a schema (Kubernetes + CRDs in play); empty when unknown
    known_kinds: frozenset[str] = field(default_factory=frozenset)
    #: apps of the cluster that did not render (a values error, a helm failure): what they would
    #: have rendered is unknown, so references into them are not checked
    unrendered: frozenset[str] = field(default_factory=frozenset)

    def find(self, kind: str, namespace: str | None, name: str) -> Manifest | None:
        for m in self.objects:
            if m.kind == kind and m.name == name and m.namespace == namespace:
                return m
        return None

    def in_namespace(self, kind: str, namespace: str | None) -> list[Manifest]:
        return [m for m in self.objects if m.kind == kind and m.namespace == namespace]

    def workloads_selected(self, namespace: str | None, selector: dict) -> list[Manifest]:
        """The workloads (not hooks) in ``namespace`` whose pod template labels the LabelSelector
        ``selector`` matches (``model.selector_matches``)."""
        return [w for kind in sorted(WORKLOAD_KINDS) for w in self.in_namespace(kind, namespace)
                if not w.is_hook() and selector_matches(selector, pod_labels(w))]

    def services_selecting(self, namespace: str | None, labels: dict) -> list[Manifest]:
        """The Services in ``namespace`` whose (map) selector selects pods with ``labels``."""
        out = []
        for s in self.in_namespace("Service", namespace):
            spec = s.doc.get("spec")
            sel = spec.get("selector") if isinstance(spec, dict) else None
            if isinstance(sel, dict) and sel and selector_matches({"matchLabels": sel}, labels):
                out.append(s)
        return out


Check = Callable[[Manifest, Context], Iterable[Problem]]


@dataclass(frozen=True)
class Rule:
    id: str                      # "category/name"
    severity: Severity           # default; the config may re-grade it
    summary: str                 # one line: what it catches
    why: str                     # one paragraph: why it matters
    bad: str                     # a failing example (YAML)
    good: str                    # a passing example (YAML)
    check: Check | None = None   # None: the finding comes from a pipeline stage (yaml, schema, ...)

    @property
    def category(self) -> str:
        return self.id.split("/", 1)[0]
