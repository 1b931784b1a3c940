"""The objects the stages pass along: Kubernetes objects with where they came from, and cluster facts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .findings import ObjectRef
from .record import Record
if TYPE_CHECKING:  # annotations only: `--list-rules` does not load yaml
    from .yamlio import Document

#: Kinds that have no namespace (Argo CD puts every other kind into the destination namespace).
CLUSTER_SCOPED = frozenset({
    "APIService", "CSIDriver", "CSINode", "ClusterIssuer", "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "IngressClass", "MutatingWebhookConfiguration", "Namespace", "Node",
    "PersistentVolume", "PriorityClass", "RuntimeClass", "StorageClass", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration", "VolumeAttachment",
})

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"})
#: Workloads whose containers serve for a long time, and so need probes.
LONG_RUNNING_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})


# --- type-safe access: repository text can put any type anywhere ----------------------------

def mapping(value: Any) -> dict:
    """``value`` when it is a mapping, else an empty one: a rule reads what it can and skips the rest
    (the schema stage reports the wrong type)."""
    return value if isinstance(value, dict) else {}


def sequence(value: Any) -> list:
    """``value`` when it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def dig(value: Any, *path: Any) -> Any:
    """The value at ``path`` (keys and list indexes), or None when a step is missing or of another type."""
    for p in path:
        if isinstance(value, dict):
            value = value.get(p)
        elif isinstance(value, list) and isinstance(p, int) and -len(value) <= p < len(value):
            value = value[p]
        else:
            return None
    return value


def no_objects(doc: dict) -> bool:
    """Whether Argo CD deploys nothing of ``doc``: an empty list. Its repo-server deploys a list's
    items (any object whose ``items`` is a list, kubectl's reading too) and nothing of one whose
    ``items`` is null with no spec or status (reposerver/repository.go: ``IsList``, ``isNullList``).
    kubeconform, given one, reports a result that names no object (exit 2 before)."""
    if "items" not in doc:
        return False
    items = doc["items"]
    return items == [] if isinstance(items, list) else items is None and "spec" not in doc and "status" not in doc


#: What ``at_path`` returns for a missing step when asked to tell it from a stored None.
MISSING = object()


def at_path(value: Any, path: tuple, default: Any = None) -> Any:
    """The value at ``path`` (keys and non-negative list indexes), or ``default`` when a step is missing."""
    for p in path:
        if isinstance(value, dict) and p in value:
            value = value[p]
        elif isinstance(value, list) and isinstance(p, int) and 0 <= p < len(value):
            value = value[p]
        else:
            return default
    return value


class Manifest(Record):
    """One Kubernetes object: rendered by helm, read from a repo file, or given with --manifests."""
    __slots__ = ("doc", "file", "line", "app", "cluster", "yaml", "values", "hints", "json_text")
    _not_compared = ("json_text",)
    doc: dict
    file: str | None                 # repo-relative file it was read from, or the chart template
    line: int | None                 # only when ``file`` is a file we read ourselves
    app: str | None
    cluster: str | None
    yaml: Document | None            # node graph, for line numbers inside a file we read
    #: for a rendered object: where its scalar fields were set in the values (provenance.ValueIndex)
    values: Any
    #: for an object rendered by helm: the value files it was rendered from (where a finding
    #: without a line of its own may find the setting that caused it)
    hints: tuple[str, ...]
    #: the object as ``schema.as_json`` writes it, when a cache kept it (kustomize.py); else None.
    #: Derived from ``doc``: not compared, not shown
    json_text: str | None

    def __init__(self, doc: dict, file: str | None = None, line: int | None = None, app: str | None = None,
                 cluster: str | None = None, yaml: Document | None = None, values: Any = None,
                 hints: tuple[str, ...] = (), json_text: str | None = None) -> None:
        self.doc = doc
        self.file = file
        self.line = line
        self.app = app
        self.cluster = cluster
        self.yaml = yaml
        self.values = values
        self.hints = hints
        self.json_text = json_text

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.doc.get("apiVersion", ""))

    @property
    def metadata(self) -> dict:
        m = self.doc.get("metadata")
        return m if isinstance(m, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str | None:
        ns = self.metadata.get("namespace")
        return None if ns is None else str(ns)

    def identity(self) -> tuple[str, str | None, str]:
        """(kind, namespace, name) as the properties give them, the metadata read once (what the
        rules' indexes file an object under)."""
        meta = self.metadata
        ns = meta.get("namespace")
        return str(self.doc.get("kind", "")), None if ns is None else str(ns), str(meta.get("name", ""))

    @property
    def spec(self) -> dict:
        return mapping(self.doc.get("spec"))

    @property
    def annotations(self) -> dict:
        a = self.metadata.get("annotations")
        return a if isinstance(a, dict) else {}

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef.of(self.doc)

    def line_of(self, path: tuple) -> int | None:
        if self.yaml is None or self.line is None:
            return self.line
        return self.yaml.line_of(path)

    def is_hook(self) -> bool:
        return "helm.sh/hook" in self.annotations or "argocd.argoproj.io/hook" in self.annotations


class ClusterFacts(Record):
    name: str
    kubernetes_version: str | None
    capacity: dict
    #: (namespace, name) -> keys of Secrets created outside git
    external_secrets: dict[tuple[str, str], frozenset[str]]
    directory: str | None         # repo-relative folder (clusters/<name>)
    capacity_lines: dict[str, int]  # capacity key -> line in cluster.yaml
    #: (namespace, name) -> key (or "" for the entry) -> line in cluster.yaml ``externalSecrets``
    external_secret_lines: dict[tuple[str, str], dict[str, int | None]]
    #: the kustomization that installs Argo CD into this cluster (cluster.yaml ``argocdInstall``)
    argocd_install: str | None
    #: AppProjects that exist in the cluster without being in the repo (cluster.yaml ``existingProjects``)
    existing_projects: frozenset[str]
    #: projects an app-of-apps may give its children (cluster.yaml ``appOfAppsProjects``); None: any but `default`
    app_of_apps_projects: frozenset[str] | None

    def __init__(self, name: str, kubernetes_version: str | None = None, capacity: dict | None = None,
                 external_secrets: dict | None = None, directory: str | None = None,
                 capacity_lines: dict | None = None, external_secret_lines: dict | None = None,
                 argocd_install: str | None = None, existing_projects: frozenset[str] = frozenset(),
                 app_of_apps_projects: frozenset[str] | None = None) -> None:
        self.name = name
        self.kubernetes_version = kubernetes_version
        self.capacity = {} if capacity is None else capacity
        self.external_secrets = {} if external_secrets is None else external_secrets
        self.directory = directory
        self.capacity_lines = {} if capacity_lines is None else capacity_lines
        self.external_secret_lines = {} if external_secret_lines is None else external_secret_lines
        self.argocd_install = argocd_install
        self.existing_projects = existing_projects
        self.app_of_apps_projects = app_of_apps_projects


# --- pod-spec helpers shared by the rules ---------------------------------------------------

#: (the object ``one_by_one`` hands out, [its pod_template, its containers]): two dozen rules ask for
#: them per workload, and rules are pure, so while they check one object the answers cannot change.
#: One tuple, replaced whole: a reader sees one object's answers or none.
_current: tuple = (None, [])
_UNSET = object()


def one_by_one(manifests: Iterable[Manifest]) -> Iterator[Manifest]:
    """Each of ``manifests``, its pod template and containers remembered while the caller's rules
    check it (policy.evaluate); forgotten when the loop ends, however it ends."""
    global _current
    try:
        for m in manifests:
            _current = (m.doc, [_UNSET, _UNSET])
            yield m
    finally:
        _current = (None, [])


def pod_template(m: Manifest) -> tuple[dict, tuple] | None:
    """The pod spec of a workload and its path inside the object."""
    doc, memo = _current
    if m.doc is doc:
        if memo[0] is _UNSET:
            memo[0] = _pod_template(m)
        return memo[0]
    return _pod_template(m)


def _pod_template(m: Manifest) -> tuple[dict, tuple] | None:
    spec = m.doc.get("spec")
    if not isinstance(spec, dict) or m.kind not in WORKLOAD_KINDS:
        return None
    if m.kind == "Pod":
        return spec, ("spec",)
    if m.kind == "CronJob":
        pod = dig(spec, "jobTemplate", "spec", "template", "spec")
        return (pod, ("spec", "jobTemplate", "spec", "template", "spec")) if isinstance(pod, dict) else None
    pod = dig(spec, "template", "spec")
    return (pod, ("spec", "template", "spec")) if isinstance(pod, dict) else None


def pod_labels(m: Manifest) -> dict:
    if m.kind == "Pod":
        return mapping(m.metadata.get("labels"))
    tpl = dig(m.doc, "spec", "jobTemplate", "spec", "template") if m.kind == "CronJob" else dig(m.doc, "spec", "template")
    return mapping(dig(tpl, "metadata", "labels"))


def port_number(port) -> int | None:
    """A numeric port (an int, or a string of digits), else None (a port name)."""
    if isinstance(port, bool):
        return None
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.strip().isdigit():
        return int(port.strip())
    return None


def selector_matches(selector, labels) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions: In, NotIn, Exists,
    DoesNotExist) selects ``labels``. An empty selector selects everything; a malformed one nothing."""
    if not isinstance(selector, dict) or not isinstance(labels, dict):
        return False
    labels = {str(k): str(v) for k, v in labels.items()}
    match = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or []
    if not isinstance(match, dict) or not isinstance(exprs, list):
        return False
    if any(labels.get(str(k)) != str(v) for k, v in match.items()):
        return False
    for e in exprs:
        if not isinstance(e, dict):
            return False
        key, op = str(e.get("key")), e.get("operator")
        values = {str(v) for v in e.get("values") or [] if v is not None} \
            if isinstance(e.get("values") or [], list) else set()
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


class Container(Record):
    __slots__ = ("spec", "path", "init")
    spec: dict
    path: tuple
    init: bool

    def __init__(self, spec: dict, path: tuple, init: bool) -> None:
        self.spec = spec
        self.path = path
        self.init = init

    @property
    def name(self) -> str:
        return str(self.spec.get("name", "?"))

    @property
    def label(self) -> str:
        return f"{'initContainer' if self.init else 'container'} {self.name!r}"

    @property
    def sidecar(self) -> bool:
        """A native sidecar: an init container that keeps running."""
        return self.init and self.spec.get("restartPolicy") == "Always"

    @property
    def long_running(self) -> bool:
        """Runs as long as the pod (and can serve traffic): a regular container or a native sidecar."""
        return not self.init or self.sidecar

    def ports(self) -> list[dict]:
        return [p for p in sequence(self.spec.get("ports")) if isinstance(p, dict)]


def containers(m: Manifest) -> Iterable[Container]:
    doc, memo = _current
    if m.doc is doc:
        if memo[1] is _UNSET:
            memo[1] = tuple(_containers(m))
        return memo[1]
    return _containers(m)


def _containers(m: Manifest) -> Iterator[Container]:
    found = pod_template(m)
    if not found:
        return
    pod, base = found
    for key, init in (("initContainers", True), ("containers", False)):
        for i, c in enumerate(sequence(pod.get(key))):
            if isinstance(c, dict):
                yield Container(c, base + (key, i), init)


def walk(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (path, value) pair in a nested structure."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, path + (i,))
