"""The objects the stages pass along: Kubernetes objects with where they came from, and cluster facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from .findings import ObjectRef
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


@dataclass
class Manifest:
    """One Kubernetes object: rendered by helm, read from a repo file, or given with --manifests."""
    doc: dict
    file: str | None = None          # repo-relative file it was read from, or the chart template
    line: int | None = None          # only when ``file`` is a file we read ourselves
    app: str | None = None
    cluster: str | None = None
    yaml: Document | None = None     # node graph, for line numbers inside a file we read
    #: for an object rendered by helm: the value files it was rendered from (where a finding
    #: without a line of its own may find the setting that caused it)
    hints: tuple[str, ...] = ()

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
        return self.metadata.get("namespace")

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


@dataclass
class ClusterFacts:
    name: str
    kubernetes_version: str | None = None
    capacity: dict = field(default_factory=dict)
    #: (namespace, name) -> keys of Secrets created outside git
    external_secrets: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    directory: str | None = None  # repo-relative folder (clusters/<name>)
    #: the kustomization that installs Argo CD into this cluster (cluster.yaml ``argocdInstall``)
    argocd_install: str | None = None
    #: AppProjects that exist in the cluster without being in the repo (cluster.yaml ``existingProjects``)
    existing_projects: frozenset[str] = frozenset()
    #: projects an app-of-apps may give its children (cluster.yaml ``appOfAppsProjects``); None: any but `default`
    app_of_apps_projects: frozenset[str] | None = None


# --- pod-spec helpers shared by the rules ---------------------------------------------------

def pod_template(m: Manifest) -> tuple[dict, tuple] | None:
    """The pod spec of a workload and its path inside the object."""
    spec = m.doc.get("spec")
    if not isinstance(spec, dict) or m.kind not in WORKLOAD_KINDS:
        return None
    if m.kind == "Pod":
        return spec, ("spec",)
    if m.kind == "CronJob":
        tpl = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {})
        pod = tpl.get("spec")
        return (pod, ("spec", "jobTemplate", "spec", "template", "spec")) if isinstance(pod, dict) else None
    pod = (spec.get("template") or {}).get("spec") if isinstance(spec.get("template"), dict) else None
    return (pod, ("spec", "template", "spec")) if isinstance(pod, dict) else None


def pod_labels(m: Manifest) -> dict:
    if m.kind == "Pod":
        return m.metadata.get("labels") or {}
    spec = m.doc.get("spec") or {}
    if m.kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec") or {})
    tpl = spec.get("template") if isinstance(spec, dict) else None
    return ((tpl or {}).get("metadata") or {}).get("labels") or {}


@dataclass
class Container:
    spec: dict
    path: tuple
    init: bool

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
        return [p for p in self.spec.get("ports") or [] if isinstance(p, dict)]


def containers(m: Manifest) -> Iterator[Container]:
    found = pod_template(m)
    if not found:
        return
    pod, base = found
    for key, init in (("initContainers", True), ("containers", False)):
        for i, c in enumerate(pod.get(key) or []):
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
