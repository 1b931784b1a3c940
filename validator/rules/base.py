"""How a rule is declared. A rule is data (id, severity, why, examples) plus, for policy rules,
a pure function from one object and its context to problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable

from ..findings import Problem, Severity
from ..model import ClusterFacts, Manifest


@dataclass(frozen=True)
class Context:
    """What a rule may look at besides the object itself. Immutable; shared by all rules."""
    objects: tuple[Manifest, ...] = ()          # every object of the same cluster
    facts: ClusterFacts | None = None
    allowed_registries: tuple[str, ...] = ()
    #: kinds with a schema (Kubernetes + CRDs in play); empty when unknown
    known_kinds: frozenset[str] = field(default_factory=frozenset)

    def find(self, kind: str, namespace: str | None, name: str) -> Manifest | None:
        for m in self.objects:
            if m.kind == kind and m.name == name and m.namespace == namespace:
                return m
        return None

    @cached_property
    def _argo(self) -> dict[tuple[str, str], Manifest]:
        """Argo CD objects by (kind, name), built once; the first definition wins, as in the cluster."""
        index: dict[tuple[str, str], Manifest] = {}
        for m in self.objects:
            if m.api_version.startswith("argoproj.io/"):
                index.setdefault((m.kind, m.name), m)
        return index

    def argo_object(self, kind: str, name: str) -> Manifest | None:
        """The Application or AppProject of that name (Argo CD's namespace holds them all)."""
        return self._argo.get((kind, name))

    def in_namespace(self, kind: str, namespace: str | None) -> list[Manifest]:
        return [m for m in self.objects if m.kind == kind and m.namespace == namespace]


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
