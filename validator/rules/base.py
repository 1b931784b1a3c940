"""How a rule is declared. A rule is data (id, severity, why, examples) plus, for policy rules,
a pure function from one object and its context to problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable, Mapping

from ..findings import Problem, Severity
from ..model import ClusterFacts, Manifest
from ..yamlio import Document


@dataclass(frozen=True)
class Context:
    """What a rule may look at besides the object itself. Immutable; shared by all rules."""
    objects: tuple[Manifest, ...] = ()          # every object of the same cluster
    facts: ClusterFacts | None = None
    allowed_registries: tuple[str, ...] = ()
    #: kinds with a schema (Kubernetes + CRDs in play); empty when unknown
    known_kinds: frozenset[str] = field(default_factory=frozenset)
    #: app -> (file, document) of the values it was rendered with, chart defaults first, so a
    #: finding about a rendered value can point at the line that set it
    values: Mapping[str, tuple[tuple[str, Document], ...]] = field(default_factory=dict)

    def find(self, kind: str, namespace: str | None, name: str) -> Manifest | None:
        for m in self.objects:
            if m.kind == kind and m.name == name and m.namespace == namespace:
                return m
        return None

    def in_namespace(self, kind: str, namespace: str | None) -> list[Manifest]:
        return [m for m in self.objects if m.kind == kind and m.namespace == namespace]

    def rendered_by(self, app: str, kind: str) -> list[Manifest]:
        """Objects of ``kind`` that the Application ``app`` renders (an app-of-apps' children)."""
        return self._by_app_kind.get((app, kind), [])

    @cached_property
    def _by_app_kind(self) -> dict[tuple[str | None, str], list[Manifest]]:
        index: dict[tuple[str | None, str], list[Manifest]] = {}
        for m in self.objects:
            index.setdefault((m.app, m.kind), []).append(m)
        return index


Check = Callable[[Manifest, Context], Iterable[Problem]]


@dataclass
class ClusterProblem:
    """What a cluster-level rule reports: about the cluster as a whole, pointing at the object
    that contributes most (``subject`` and a path in it) or at an explicit file and line."""
    message: str
    subject: Manifest | None = None
    path: tuple = ()
    file: str | None = None
    line: int | None = None


#: A rule over all the objects of one cluster at once (a sum, not a per-object property).
ClusterCheck = Callable[[Context], Iterable[ClusterProblem]]


@dataclass(frozen=True)
class Rule:
    id: str                      # "category/name"
    severity: Severity           # default; the config may re-grade it
    summary: str                 # one line: what it catches
    why: str                     # one paragraph: why it matters
    bad: str                     # a failing example (YAML)
    good: str                    # a passing example (YAML)
    check: Check | None = None   # None: the finding comes from a pipeline stage (yaml, schema, ...)
    cluster_check: ClusterCheck | None = None  # a rule over a whole cluster (capacity/)

    @property
    def category(self) -> str:
        return self.id.split("/", 1)[0]
