"""security/: every pod meets the Pod Security Standard "restricted" (hooks and Jobs included), and
every namespace an Application deploys to has Pod Security Admission enforce a level.

Fields that exist on both the pod and the container securityContext (runAsNonRoot, runAsUser,
seccompProfile) take the container's value when it sets one, else the pod's, as Kubernetes does.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from ..findings import Problem, Severity
from ..model import WORKLOAD_KINDS, Container, Manifest, containers, pod_template, sequence
from .base import Context, Rule
from .examples import example_deployment

CATEGORY = "security"

ALLOWED_SECCOMP = ("RuntimeDefault", "Localhost")
ALLOWED_ADD_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


def _sc(d: dict) -> dict:
    sc = d.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _pod(m: Manifest) -> tuple[dict, tuple] | None:
    found = pod_template(m)
    if not found:
        return None
    pod, base = found
    return _sc(pod), base + ("securityContext",)


def _with_pod(m: Manifest) -> Iterator[tuple[Container, dict, tuple, dict]]:
    """(container, its securityContext, that context's path, the pod securityContext)."""
    found = _pod(m)
    if not found:
        return
    pod_sc, _ = found
    for c in containers(m):
        yield c, _sc(c.spec), c.path + ("securityContext",), pod_sc


def check_run_as_non_root(m: Manifest, ctx: Context) -> Iterable[Problem]:
    found = _pod(m)
    if not found or not any(True for _ in containers(m)):
        return
    pod_sc, pod_path = found
    if pod_sc.get("runAsNonRoot") is False:
        yield Problem(f"{m.kind} {m.name} sets runAsNonRoot: false in the pod securityContext; set it "
                      "to true", pod_path + ("runAsNonRoot",))
    if pod_sc.get("runAsUser") == 0:
        yield Problem(f"{m.kind} {m.name} runs its pod as uid 0 (pod securityContext runAsUser: 0); use "
                      "a non-zero uid such as 1001", pod_path + ("runAsUser",))
    for c, sc, path, _ in _with_pod(m):
        if sc.get("runAsNonRoot") is False:
            yield Problem(f"{c.label} sets runAsNonRoot: false; set it to true", path + ("runAsNonRoot",))
        elif sc.get("runAsNonRoot") is None and pod_sc.get("runAsNonRoot") is None:
            yield Problem(f"{c.label} may run as root: set runAsNonRoot: true in the pod (or the "
                          "container) securityContext", path)
        if sc.get("runAsUser") == 0:
            yield Problem(f"{c.label} runs as uid 0 (runAsUser: 0); use a non-zero uid such as 1001",
                          path + ("runAsUser",))


def check_privilege_escalation(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for c, sc, path, _ in _with_pod(m):
        if sc.get("allowPrivilegeEscalation") is not False:
            yield Problem(f"{c.label} does not set allowPrivilegeEscalation: false; set it in the "
                          "container securityContext (it defaults to true)", path + ("allowPrivilegeEscalation",))


def check_capabilities(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for c, sc, path, _ in _with_pod(m):
        caps = sc.get("capabilities") if isinstance(sc.get("capabilities"), dict) else {}
        drop = caps.get("drop") if isinstance(caps.get("drop"), list) else []
        add = caps.get("add") if isinstance(caps.get("add"), list) else []
        if "ALL" not in drop:
            yield Problem(f"{c.label} does not drop all capabilities; set securityContext.capabilities."
                          "drop: [ALL]", path + ("capabilities", "drop"))
        extra = [str(a) for a in add if a not in ALLOWED_ADD_CAPABILITIES]
        if extra:
            yield Problem(f"{c.label} adds the capabilities {', '.join(extra)}; only NET_BIND_SERVICE "
                          "may be added", path + ("capabilities", "add"))


def _seccomp_type(sc: dict):
    profile = sc.get("seccompProfile")
    return profile.get("type") if isinstance(profile, dict) else None


def check_seccomp(m: Manifest, ctx: Context) -> Iterable[Problem]:
    found = _pod(m)
    if not found:
        return
    pod_sc, pod_path = found
    pod_type = _seccomp_type(pod_sc)
    if pod_type is not None and pod_type not in ALLOWED_SECCOMP:
        yield Problem(f"{m.kind} {m.name} sets the pod seccompProfile to {pod_type}; use RuntimeDefault",
                      pod_path + ("seccompProfile", "type"))
    for c, sc, path, _ in _with_pod(m):
        own = _seccomp_type(sc)
        if own is not None and own not in ALLOWED_SECCOMP:
            yield Problem(f"{c.label} sets seccompProfile {own}; use RuntimeDefault",
                          path + ("seccompProfile", "type"))
        elif own is None and pod_type is None:
            yield Problem(f"{c.label} runs without a seccomp profile; set seccompProfile: "
                          "{type: RuntimeDefault} in the pod securityContext", path)


def check_privileged(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for c, sc, path, _ in _with_pod(m):
        if sc.get("privileged") is True:
            yield Problem(f"{c.label} is privileged (full access to the node); remove privileged: true",
                          path + ("privileged",))


def check_host_namespaces(m: Manifest, ctx: Context) -> Iterable[Problem]:
    found = pod_template(m)
    if not found:
        return
    pod, base = found
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field) is True:
            yield Problem(f"{m.kind} {m.name} shares the node's namespace ({field}: true); remove it",
                          base + (field,))
    for c in containers(m):
        for i, p in enumerate(sequence(c.spec.get("ports"))):
            if isinstance(p, dict) and p.get("hostPort") not in (None, 0):
                yield Problem(f"{c.label} binds hostPort {p['hostPort']} on the node; remove hostPort "
                              "and expose the port through a Service", c.path + ("ports", i, "hostPort"))


def check_read_only_root(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for c, sc, path, _ in _with_pod(m):
        if sc.get("readOnlyRootFilesystem") is not True:
            yield Problem(f"{c.label} has a writable root filesystem; set readOnlyRootFilesystem: true "
                          "and mount an emptyDir where the app writes (e.g. /tmp)",
                          path + ("readOnlyRootFilesystem",))


_CSC = "allowPrivilegeEscalation: false\nreadOnlyRootFilesystem: true\ncapabilities: {drop: [ALL]}"


PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
PSA_LEVELS = ("baseline", "restricted")


def _application_namespace(m: Manifest) -> str | None:
    if m.kind != "Application" or not m.api_version.startswith("argoproj.io/"):
        return None
    dest = (m.doc.get("spec") or {}).get("destination")
    ns = dest.get("namespace") if isinstance(dest, dict) else None
    return ns if isinstance(ns, str) and ns else None


def _managed_labels(m: Manifest) -> dict | None:
    """The labels Argo CD puts on the destination namespace, or None when it puts none
    (managedNamespaceMetadata is applied only together with the CreateNamespace=true sync option)."""
    policy = (m.doc.get("spec") or {}).get("syncPolicy")
    if not isinstance(policy, dict) or "CreateNamespace=true" not in (policy.get("syncOptions") or []):
        return None
    labels = (policy.get("managedNamespaceMetadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else None


def check_namespace_pod_security(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if m.kind == "Namespace":
        labels = m.metadata.get("labels") or {}
        level = labels.get(PSA_ENFORCE) if isinstance(labels, dict) else None
        if level not in PSA_LEVELS:
            yield Problem(f"Namespace {m.name} has {PSA_ENFORCE}={level or '(unset)'}: Pod Security "
                          f"Admission admits any pod there (privileged ones too); label it "
                          f"{PSA_ENFORCE}: restricted (or baseline)", ("metadata", "labels"))
        return
    ns = _application_namespace(m)
    if ns is None or ctx.find("Namespace", None, ns) is not None:
        return  # a rendered Namespace carries its own labels (checked above)
    labels = _managed_labels(m)
    level = (labels or {}).get(PSA_ENFORCE)
    if level in PSA_LEVELS:
        return
    where = ("spec", "syncPolicy", "managedNamespaceMetadata", "labels") if labels is not None \
        else ("spec", "syncPolicy")
    found = f"{PSA_ENFORCE}={level}" if level else f"no {PSA_ENFORCE} label"
    yield Problem(f"Application {m.name} deploys to namespace {ns}, which gets {found} from it "
                  "(and no Namespace object with one is rendered): Pod Security Admission would admit "
                  "privileged pods there. Add syncOptions CreateNamespace=true and "
                  f"managedNamespaceMetadata.labels {PSA_ENFORCE}: restricted (pin "
                  f"{PSA_ENFORCE}-version to the cluster's minor)", where)


_NS_APP = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web, namespace: argocd}
spec:
  project: default
  source: {repoURL: "https://git.example/repo.git", path: apps/web, targetRevision: main}
  destination: {server: "https://kubernetes.default.svc", namespace: web}
  syncPolicy:
    syncOptions: [CreateNamespace=true]
"""


def _container_sc(**changes: str | None) -> dict:
    lines = dict(line.split(": ", 1) for line in _CSC.splitlines())
    for k, v in changes.items():
        if v is None:
            lines.pop(k, None)
        else:
            lines[k] = v
    return {"securityContext": "\n".join(f"{k}: {v}" for k, v in lines.items())}


_POD_SC = "{runAsNonRoot: true, runAsUser: 1001, seccompProfile: {type: RuntimeDefault}}"

RULES = [
    Rule("security/run-as-non-root", Severity.ERROR,
         "a container that may run as root: runAsNonRoot not true (pod or container), or runAsUser 0",
         "A process running as root inside the container is root on the node once it escapes the "
         "container (a kernel or runtime bug, a mounted host path). `runAsNonRoot: true` makes the "
         "kubelet refuse to start an image whose user is root.",
         example_deployment(pod={"securityContext": "{runAsUser: 0, seccompProfile: {type: RuntimeDefault}}"}),
         example_deployment(),
         check_run_as_non_root, kinds=WORKLOAD_KINDS),
    Rule("security/privilege-escalation", Severity.ERROR,
         "a container that does not set allowPrivilegeEscalation: false",
         "Without it a setuid binary in the image (sudo, su, ping on some bases) can give the process "
         "more privileges than it started with. It defaults to true, so it must be set explicitly.",
         example_deployment(container=_container_sc(allowPrivilegeEscalation=None)),
         example_deployment(),
         check_privilege_escalation, kinds=WORKLOAD_KINDS),
    Rule("security/capabilities", Severity.ERROR,
         "a container that does not drop ALL capabilities, or adds one other than NET_BIND_SERVICE",
         "The runtime's default capability set (CHOWN, SETUID, NET_RAW, ...) is far more than a web "
         "app needs and widens what an attacker can do after a compromise. Drop them all; a server "
         "that binds a port below 1024 may add back NET_BIND_SERVICE only.",
         example_deployment(container=_container_sc(capabilities="{add: [NET_ADMIN]}")),
         example_deployment(container=_container_sc(capabilities="{drop: [ALL], add: [NET_BIND_SERVICE]}")),
         check_capabilities, kinds=WORKLOAD_KINDS),
    Rule("security/seccomp", Severity.ERROR,
         "a container without a RuntimeDefault or Localhost seccomp profile (pod or container level)",
         "Seccomp filters the system calls a container may make; without a profile (Unconfined) the "
         "whole kernel surface is open to a compromised process. RuntimeDefault costs nothing for "
         "ordinary apps.",
         example_deployment(pod={"securityContext": "{runAsNonRoot: true, runAsUser: 1001}"}),
         example_deployment(),
         check_seccomp, kinds=WORKLOAD_KINDS),
    Rule("security/privileged", Severity.ERROR,
         "a privileged container",
         "A privileged container has every capability and all host devices: it is root on the node. "
         "No application workload needs it.",
         example_deployment(container=_container_sc(privileged="true")),
         example_deployment(container=_container_sc(privileged="false")),
         check_privileged, kinds=WORKLOAD_KINDS),
    Rule("security/host-namespaces", Severity.ERROR,
         "a pod with hostNetwork, hostPID or hostIPC, or a container port with a hostPort",
         "Sharing the node's network, process or IPC namespace lets the pod see and talk to "
         "everything on the node, and a hostPort pins the pod to nodes where the port is free. "
         "Expose ports through a Service instead.",
         example_deployment(pod={"hostNetwork": "true"},
                            container={"ports": "[{name: http, containerPort: 8080, hostPort: 8080}]"}),
         example_deployment(),
         check_host_namespaces, kinds=WORKLOAD_KINDS),
    Rule("security/read-only-root-filesystem", Severity.WARNING,
         "a container whose root filesystem is writable (readOnlyRootFilesystem not true)",
         "A read-only root filesystem stops an attacker (or a bug) from changing the app's files or "
         "dropping tools into the container; the app writes only to volumes you mount on purpose "
         "(an emptyDir for /tmp). Not part of the restricted standard, hence a warning.",
         example_deployment(container=_container_sc(readOnlyRootFilesystem=None)),
         example_deployment(),
         check_read_only_root, kinds=WORKLOAD_KINDS),
    Rule("security/namespace-pod-security", Severity.WARNING,
         "a namespace an Application deploys to (or a rendered Namespace) without a "
         "pod-security.kubernetes.io/enforce label of baseline or restricted",
         "The security/ rules check the pods this repository renders; Pod Security Admission is what "
         "refuses every other pod in the namespace (a `kubectl run`, a pod from a compromised "
         "controller, a chart edited around the gate). Without an enforce label it admits privileged "
         "pods. The label comes from a rendered Namespace or from the Application's "
         "managedNamespaceMetadata (applied by Argo CD with CreateNamespace=true).",
         _NS_APP,
         _NS_APP + "    managedNamespaceMetadata:\n      labels:\n"
         "        pod-security.kubernetes.io/enforce: restricted\n"
         "        pod-security.kubernetes.io/enforce-version: v1.35\n",
         check_namespace_pod_security),
]
