"""The hardening, proven on the real API server and Argo CD (runs after the GitOps loop, on its state):
Pod Security refuses a pod that is not `restricted` in `todo`; Argo CD refuses an Application of this
repo that targets another namespace or lives in the locked `default` project; the NetworkPolicies are
applied and select the apps' pods. (kwok runs no network: traffic is the validator's refs/traffic-blocked.)
"""

from __future__ import annotations

import json

import pytest
import yaml
from e2e.harness import ARGOCD, ROOT
from e2e.loop import APP_NAMESPACE, Loop

pytestmark = pytest.mark.e2e

PSA = "pod-security.kubernetes.io/"


def test_namespaces_are_labelled_by_argocd(loop: Loop) -> None:
    minor = "v" + ".".join(str(yaml.safe_load((ROOT / "clusters/minikube/cluster.yaml").read_text())
                               ["kubernetesVersion"]).lstrip("v").split(".")[:2])
    for namespace in (APP_NAMESPACE, ARGOCD):
        def labelled(ns: str = namespace) -> dict | None:
            labels = loop.kubectl.get("namespace", ns)["metadata"].get("labels", {})
            return labels if labels.get(PSA + "enforce") == "restricted" else None
        labels = loop.procs.wait_until(f"namespace {namespace} labelled {PSA}enforce=restricted", labelled, 120,
                                       logs=("argocd-application-controller",))
        assert labels[PSA + "enforce-version"] == minor, labels


def test_a_pod_that_is_not_restricted_is_refused(loop: Loop) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "e2e-privileged", "namespace": APP_NAMESPACE},
           # valid, and `baseline` (the API server here refuses privileged pods outright), but not
           # `restricted`: no runAsNonRoot, no seccomp profile, privilege escalation and capabilities left on
           "spec": {"containers": [{"name": "c", "image": "busybox:1.37.0"}]}}
    p = loop.kubectl("apply", "-f", "-", stdin=json.dumps(pod), check=False)
    assert p.returncode != 0, "the API server admitted a privileged pod into todo"
    assert "violates PodSecurity" in p.stderr and '"restricted:' in p.stderr, p.stderr


def _refused(loop: Loop, name: str, project: str, namespace: str) -> str:
    """Create an Application of this repo; return the message of the InvalidSpecError Argo CD sets."""
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
           "metadata": {"name": name, "namespace": ARGOCD},
           "spec": {"project": project,
                    "source": {"repoURL": loop.repo.url, "targetRevision": "main", "path": "apps/todo-backend"},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
                    "syncPolicy": {"automated": {"prune": True}}}}
    loop.kubectl.apply([app])
    try:
        def invalid() -> str | None:
            conditions = loop.app(name).get("status", {}).get("conditions", [])
            return next((c["message"] for c in conditions if c["type"] == "InvalidSpecError"), None)
        message = loop.procs.wait_until(f"Argo CD to refuse {name}", invalid, loop.poll * 6 + 60,
                                        logs=("argocd-application-controller",))
        assert not loop.app(name).get("status", {}).get("resources"), "it deployed something"
        return message
    finally:
        loop.kubectl("delete", "application", name, "-n", ARGOCD, "--ignore-not-found", "--wait=false")


def test_an_app_targeting_another_namespace_is_refused(loop: Loop) -> None:
    message = _refused(loop, "e2e-elsewhere", "todo", "kube-system")
    assert "namespace 'kube-system' do not match any of the allowed destinations in project 'todo'" in message, message


def test_an_app_in_the_default_project_is_refused(loop: Loop) -> None:
    message = _refused(loop, "e2e-default", "default", APP_NAMESPACE)
    # the repo is checked first ("application repo ... is not permitted"), the destination next
    assert ("is not permitted in project 'default'" in message
            or "do not match any of the allowed destinations in project 'default'" in message), message


def test_network_policies_are_applied_and_select_the_pods(loop: Loop) -> None:
    for app in ("todo-backend", "todo-frontend"):  # synced (when this file runs on its own, too)
        loop.wait_app(app)
    policies = {p["metadata"]["name"]: p for p in loop.kubectl.get("networkpolicy", namespace=APP_NAMESPACE)["items"]}
    assert {"todo-backend", "todo-frontend", "todo-backend-default-deny", "todo-frontend-default-deny"} <= set(policies)
    for name in ("todo-backend", "todo-frontend"):
        spec = policies[name]["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"], name
        selector = ",".join(f"{k}={v}" for k, v in spec["podSelector"]["matchLabels"].items())
        pods = json.loads(loop.kubectl("get", "pods", "-n", APP_NAMESPACE, "-l", selector, "-o", "json").stdout)
        running = [p for p in pods["items"] if "deletionTimestamp" not in p["metadata"]]
        assert len(running) == 2, f"NetworkPolicy {name} selects {len(running)} pods"
        assert all(p["metadata"]["labels"]["app.kubernetes.io/name"] == name for p in running)
    assert policies["todo-backend-default-deny"]["spec"]["podSelector"] == {}
