"""How a rule is declared. A rule is data (id, severity, why, examples) plus, for policy rules,
a pure function from one object and its context to problems."""

from __future__ import annotations

from collections.abc import Hashable
from functools import cached_property
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from ..findings import Problem, Severity
from ..model import WORKLOAD_KINDS, ClusterFacts, Manifest, dig, pod_labels, port_number, selector_matches
from ..record import Frozen, Record
if TYPE_CHECKING:  # annotations only: `--list-rules` does not load yaml
    from ..yamlio import Document


def node_ports(m: Manifest) -> list[tuple[int, int]]:
    """(index in spec.ports, nodePort) of a Service's ports; empty for other kinds."""
    spec = m.doc.get("spec")
    if m.kind != "Service" or not isinstance(spec, dict):
        return []
    return [(i, n) for i, port in enumerate(spec.get("ports") or [])
            if isinstance(port, dict) and (n := port_number(port.get("nodePort")))]


def _labels_or_none(m: Manifest) -> dict | None:
    """The pod template labels of a workload, None when they are not a mapping (or unreadable)."""
    try:
        labels = pod_labels(m)
    except (AttributeError, TypeError):  # a malformed template: the schema stage reports it
        return None
    return labels if isinstance(labels, dict) else None


def _hashable(value) -> bool:
    return isinstance(value, Hashable)


class Context(Frozen):
    """What a rule may look at besides the object itself. Immutable; shared by all rules.

    Rules never scan ``objects`` for other objects: they use the look-ups below, which read indexes
    built once per run, on first use (so a run is linear in the number of objects). An index holds
    objects in their order in ``objects``, so a look-up returns what a scan would have.
    """
    objects: tuple[Manifest, ...]               # every object of the same cluster
    facts: ClusterFacts | None
    allowed_registries: tuple[str, ...]
    #: kinds with a schema (Kubernetes + CRDs in play); empty when unknown
    known_kinds: frozenset[str]
    #: app -> (file, document) of the values it was rendered with, chart defaults first, so a
    #: finding about a rendered value can point at the line that set it
    values: Mapping[str, tuple[tuple[str, Document], ...]]
    #: (app, namespace) of the apps of the cluster that did not render (a values error, a helm
    #: failure): what they would have rendered is unknown, so references into them are not checked
    unrendered: frozenset[tuple[str, str]]

    def __init__(self, objects: tuple[Manifest, ...] = (), facts: ClusterFacts | None = None,
                 allowed_registries: tuple[str, ...] = (), known_kinds: frozenset[str] = frozenset(),
                 values: Mapping[str, tuple[tuple[str, Document], ...]] | None = None,
                 unrendered: frozenset[tuple[str, str]] = frozenset()) -> None:
        self._assign(objects, facts, allowed_registries, known_kinds, {} if values is None else values, unrendered)

    # --- look-ups --------------------------------------------------------------------------------

    def find(self, kind: str, namespace: str | None, name: str) -> Manifest | None:
        """The first object of that kind, namespace and name."""
        if not _hashable(namespace):
            return next((m for m in self._odd_namespace if m.kind == kind and m.name == name
                         and m.namespace == namespace), None)
        return self._by_name.get((kind, namespace, name))

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
        """Every object of that kind in that namespace (None: objects without one)."""
        if not _hashable(namespace):
            return [m for m in self._odd_namespace if m.kind == kind and m.namespace == namespace]
        return list(self._by_namespace.get((kind, namespace), ()))

    def of_kind(self, kind: str) -> list[Manifest]:
        """Every object of that kind, in any namespace."""
        return list(self._by_kind.get(kind, ()))

    def workloads_in(self, namespace: str | None) -> list[Manifest]:
        """The workloads (pod templates, hooks left out) of a namespace."""
        if not _hashable(namespace):
            return [w for w in self._workloads if w.namespace == namespace]
        return list(self._workloads_by_namespace.get(namespace, ()))

    def workloads_selected_by(self, namespace: str | None, selector: dict) -> list[Manifest]:
        """The workloads (hooks left out) of ``namespace`` whose pod template labels match every
        ``key: value`` of ``selector`` (values compared as strings), as a Service selects pods."""
        if not _hashable(namespace):
            return [w for w in self.workloads_in(namespace) if _matches(_labels_or_none(w), selector)]
        if not selector:
            return [w for w in self.workloads_in(namespace) if _labels_or_none(w) is not None]
        # the workloads carrying the rarest pair, in their order; then the whole selector on those
        fewest = min((self._workloads_by_label.get((namespace, k, str(v)), ()) for k, v in selector.items()), key=len)
        return [w for w in fewest if _matches(_labels_or_none(w), selector)]

    def workloads_selected(self, namespace: str | None, selector: dict) -> list[Manifest]:
        """The workloads (not hooks) in ``namespace`` whose pod template labels the LabelSelector
        ``selector`` (matchLabels and matchExpressions) matches; narrowed by the label index first."""
        match_labels = selector.get("matchLabels")
        candidates = (self.workloads_selected_by(namespace, match_labels) if isinstance(match_labels, dict)
                      and match_labels else self.workloads_in(namespace))
        return [w for w in candidates if selector_matches(selector, _labels_or_none(w))]

    def services_selecting(self, namespace: str | None, labels: dict) -> list[Manifest]:
        """The Services in ``namespace`` whose (map) selector selects pods with ``labels``."""
        out = []
        for s in self.selector_candidates("Service", namespace, labels):
            spec = s.doc.get("spec")
            sel = spec.get("selector") if isinstance(spec, dict) else None
            if isinstance(sel, dict) and sel and selector_matches({"matchLabels": sel}, labels):
                out.append(s)
        return out

    def selector_candidates(self, kind: str, namespace: str | None, labels: dict) -> list[Manifest]:
        """The objects of ``kind`` (a key of ``SELECTORS``) in ``namespace`` whose selector may select
        pods with ``labels``: those whose rarest matchLabels pair (the one fewest workloads carry) is
        among ``labels`` (compared as strings), plus those without such a pair (matchExpressions only, malformed), but not those
        that select every pod (``selecting_every_pod``). A superset, in the order of ``objects``: the
        caller applies its own exact match."""
        if not _hashable(namespace):
            return [m for m in self.in_namespace(kind, namespace) if not _selects_all(m, kind)]
        anchored, rest, _ = self._selector_index(kind)
        found = [m for k, v in labels.items() for m in anchored.get((namespace, str(k), str(v)), ())]
        found += rest.get(namespace, ())
        if len(found) > 1:
            order = self._position
            found.sort(key=lambda m: order[id(m)])
        return found

    def selecting_every_pod(self, kind: str, namespace: str | None) -> list[Manifest]:
        """The objects of ``kind`` in ``namespace`` whose LabelSelector is empty (``{}``: every pod)."""
        if not _hashable(namespace):
            return [m for m in self.in_namespace(kind, namespace) if _selects_all(m, kind)]
        return list(self._selector_index(kind)[2].get(namespace, ()))

    def workloads_labelled(self, namespace: str | None, pairs: dict, hooks: bool = False) -> list[Manifest]:
        """The workloads of ``namespace`` (hooks too with ``hooks``) whose pod template labels hold
        every ``key: value`` of ``pairs`` (compared as strings; ``{}``: all of them), in the order of
        ``objects``. Narrowed by the rarest pair first."""
        if not _hashable(namespace):
            found: Iterable[Manifest] = [w for w in self._odd_namespace if w.kind in WORKLOAD_KINDS]
        elif not pairs:
            found = self._pods_by_label.get((namespace,), ())
        else:
            found = min((self._pods_by_label.get((namespace, str(k), str(v)), ()) for k, v in pairs.items()), key=len)
        return [w for w in found if (hooks or not w.is_hook()) and all(
            _pair_in(_labels_or_none(w), k, v) for k, v in pairs.items())]

    def derived(self, key: Hashable, build: Callable[[], object]) -> object:
        """A value a rule derives from the whole context (its own index), built once per run on first
        use; ``key`` names it (start it with the rule's module name)."""
        memo = self._derived
        if key not in memo:
            memo[key] = build()
        return memo[key]

    def services_with_node_port(self, port: int) -> list[tuple[str, str, int]]:
        """(namespace or "", name, index in spec.ports) of every Service port asking for ``port``."""
        return list(self._node_ports.get(port, ()))

    @cached_property
    def namespaces(self) -> frozenset[str]:
        """The namespaces of the cluster: those of its objects, and its Namespace objects."""
        names = {ns for _, _, ns, _ in self._identity if ns and _hashable(ns)}
        names |= {m.name for m in self._by_kind.get("Namespace", ())}
        return frozenset(names)

    # --- the indexes (each built on first use; cached_property writes past the frozen fields) -----

    @cached_property
    def _identity(self) -> list[tuple[Manifest, str, str | None, str]]:
        """(object, kind, namespace, name) of every object, in order, each read once per run: the
        indexes below share it (the objects are not changed once a Context holds them)."""
        return [(m, *m.identity()) for m in self.objects]

    @cached_property
    def _by_kind(self) -> dict[str, list[Manifest]]:
        out: dict[str, list[Manifest]] = {}
        for m, kind, _, _ in self._identity:
            out.setdefault(kind, []).append(m)
        return out

    @cached_property
    def _odd_namespace(self) -> list[Manifest]:
        """Objects whose metadata.namespace is not hashable (a list, a mapping): never indexed."""
        return [m for m, _, ns, _ in self._identity if not _hashable(ns)]

    @cached_property
    def _by_name(self) -> dict[tuple, Manifest]:
        out: dict[tuple, Manifest] = {}
        for m, kind, ns, name in self._identity:
            if _hashable(ns):
                out.setdefault((kind, ns, name), m)
        return out

    @cached_property
    def _by_namespace(self) -> dict[tuple, list[Manifest]]:
        out: dict[tuple, list[Manifest]] = {}
        for m, kind, ns, _ in self._identity:
            if _hashable(ns):
                out.setdefault((kind, ns), []).append(m)
        return out

    @cached_property
    def _workloads(self) -> list[Manifest]:
        return [m for m, kind, _, _ in self._identity if kind in WORKLOAD_KINDS and not m.is_hook()]

    @cached_property
    def _workloads_by_namespace(self) -> dict:
        out: dict = {}
        for w in self._workloads:
            if _hashable(w.namespace):
                out.setdefault(w.namespace, []).append(w)
        return out

    @cached_property
    def _workloads_by_label(self) -> dict[tuple, list[Manifest]]:
        """(namespace, label key, str(label value)) -> the workloads carrying that label, in order."""
        out: dict[tuple, list[Manifest]] = {}
        for ns, workloads in self._workloads_by_namespace.items():
            for w in workloads:
                for k, v in (_labels_or_none(w) or {}).items():
                    out.setdefault((ns, k, str(v)), []).append(w)
        return out

    @cached_property
    def _node_ports(self) -> dict[int, list[tuple[str, str, int]]]:
        out: dict[int, list[tuple[str, str, int]]] = {}
        for s in self._by_kind.get("Service", ()):
            for i, n in node_ports(s):
                out.setdefault(n, []).append((s.namespace or "", s.name, i))
        return out

    @cached_property
    def _derived(self) -> dict:
        return {}

    @cached_property
    def _position(self) -> dict[int, int]:
        return {id(m): i for i, m in enumerate(self.objects)}

    def _selector_index(self, kind: str) -> tuple[dict[tuple, list[Manifest]], dict, dict]:
        """(namespace, a matchLabels key, its value as text) -> objects; namespace -> objects
        without one; namespace -> objects selecting every pod."""
        def build():
            path, label_selector = SELECTORS[kind]
            anchored: dict[tuple, list[Manifest]] = {}
            rest: dict = {}
            every: dict = {}
            for m in self._by_kind.get(kind, ()):
                if not _hashable(m.namespace):
                    continue
                sel = dig(m.doc, *path)
                pairs = sel.get("matchLabels") if label_selector and isinstance(sel, dict) else sel
                if isinstance(pairs, dict) and pairs:   # filed under its rarest pair: fewest candidates
                    anchor = min(((m.namespace, str(k), str(v)) for k, v in pairs.items()),
                                 key=lambda key: len(self._pods_by_label.get(key, ())))
                    anchored.setdefault(anchor, []).append(m)
                else:
                    (every if _selects_all(m, kind) else rest).setdefault(m.namespace, []).append(m)
            return anchored, rest, every
        return self.derived(("base.selectors", kind), build)  # type: ignore[return-value]

    @cached_property
    def _pods_by_label(self) -> dict[tuple, list[Manifest]]:
        """(namespace, label key, its value as text) -> workloads carrying it, hooks included;
        (namespace,) -> all its workloads."""
        out: dict[tuple, list[Manifest]] = {}
        for w, kind, ns, _ in self._identity:
            if kind in WORKLOAD_KINDS and _hashable(ns):
                out.setdefault((ns,), []).append(w)
                for k, v in (_labels_or_none(w) or {}).items():
                    out.setdefault((ns, str(k), str(v)), []).append(w)
        return out

    def rendered_by(self, app: str, kind: str) -> list[Manifest]:
        """Objects of ``kind`` that the Application ``app`` renders (an app-of-apps' children)."""
        return self._by_app_kind.get((app, kind), [])

    @cached_property
    def _by_app_kind(self) -> dict[tuple[str | None, str], list[Manifest]]:
        index: dict[tuple[str | None, str], list[Manifest]] = {}
        for m, kind, _, _ in self._identity:
            index.setdefault((m.app, kind), []).append(m)
        return index


#: Where the kinds that select pods keep their selector, and whether it is a LabelSelector
#: (matchLabels, matchExpressions) rather than a plain map (a Service's).
SELECTORS: dict[str, tuple[tuple[str, ...], bool]] = {
    "Service": (("spec", "selector"), False),
    "NetworkPolicy": (("spec", "podSelector"), True),
}


def _selects_all(m: Manifest, kind: str) -> bool:
    """Whether the object's LabelSelector is empty: no matchLabels pair, no matchExpressions."""
    path, label_selector = SELECTORS[kind]
    sel = dig(m.doc, *path)
    return label_selector and isinstance(sel, dict) and not (sel.get("matchLabels") if isinstance(
        sel.get("matchLabels"), dict) else None) and not (sel.get("matchExpressions") if isinstance(
        sel.get("matchExpressions"), list) else None)


def _pair_in(labels: dict | None, key: object, value: object) -> bool:
    return labels is not None and any(str(k) == str(key) and str(v) == str(value) for k, v in labels.items())


def _matches(labels: dict | None, selector: dict) -> bool:
    return labels is not None and all(k in labels and str(labels.get(k)) == str(v) for k, v in selector.items())


Check = Callable[[Manifest, Context], Iterable[Problem]]


class ClusterProblem(Record):
    """What a cluster-level rule reports: about the cluster as a whole, pointing at the object
    that contributes most (``subject`` and a path in it) or at an explicit file and line."""
    message: str
    subject: Manifest | None
    path: tuple
    file: str | None
    line: int | None

    def __init__(self, message: str, subject: Manifest | None = None, path: tuple = (), file: str | None = None,
                 line: int | None = None) -> None:
        self.message = message
        self.subject = subject
        self.path = path
        self.file = file
        self.line = line


#: A rule over all the objects of one cluster at once (a sum, not a per-object property).
ClusterCheck = Callable[[Context], Iterable[ClusterProblem]]


class Rule(Frozen):
    id: str                      # "category/name"
    severity: Severity           # default; the config may re-grade it
    summary: str                 # one line: what it catches
    why: str                     # one paragraph: why it matters
    bad: str                     # a failing example (YAML)
    good: str                    # a passing example (YAML)
    check: Check | None          # None: the finding comes from a pipeline stage (yaml, schema, ...)
    cluster_check: ClusterCheck | None  # a rule over a whole cluster (capacity/)
    #: the kinds ``check`` can find anything in (None: any); policy.evaluate calls it for those alone
    kinds: frozenset[str] | None

    def __init__(self, id: str, severity: Severity, summary: str, why: str, bad: str, good: str,
                 check: Check | None = None, cluster_check: ClusterCheck | None = None,
                 kinds: frozenset[str] | None = None) -> None:
        self._assign(id, severity, summary, why, bad, good, check, cluster_check, kinds)

    @property
    def category(self) -> str:
        return self.id.split("/", 1)[0]
