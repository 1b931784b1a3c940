"""The GitOps loop, for real: Argo CD syncs this repo, deploys a merge, rolls back, and a bad change breaks it.

The tests run in file order against one cluster (the `loop` fixture); each step starts from the
state the previous one left: 1.0.0 synced -> 1.0.1 merged -> rolled back to 1.0.0 -> reverted in
git -> a refused change pushed and reverted.
"""

from __future__ import annotations

import os
import re

import pytest
from e2e.loop import APP_NAMESPACE, CLUSTER, Loop

pytestmark = pytest.mark.e2e

ROOT_APP, BACKEND, FRONTEND = "todo-root", "todo-backend", "todo-frontend"
BACKEND_VALUES = "clusters/minikube/values/todo-backend.yaml"
OLD_TAG = "1.0.0"
NEW_TAG = os.environ.get("E2E_NEW_TAG", "1.0.1")


def set_backend_tag(tag: str):
    return lambda text: re.sub(r'(?m)^(  tag: )"[^"]*"$', rf'\1"{tag}"', text)


def auto_sync(loop: Loop, app: str) -> dict | None:
    automated = loop.app(app)["spec"].get("syncPolicy", {}).get("automated")
    return automated if automated and automated.get("enabled", True) else None


def test_bootstrap_syncs_every_app(loop: Loop) -> None:
    head = loop.repo.git("rev-parse", "HEAD")
    for app in (ROOT_APP, BACKEND, FRONTEND):
        loop.wait_app(app, revision=head)

    for name in (BACKEND, FRONTEND):
        d = loop.wait_rolled_out(name, OLD_TAG)
        assert d["spec"]["replicas"] == 2 and d["status"]["availableReplicas"] == 2, name
        pods = loop.kubectl.get("pods", namespace=APP_NAMESPACE)["items"]
        ready = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/name") == name
                 and "deletionTimestamp" not in p["metadata"] and p["status"].get("phase") == "Running"
                 and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])]
        assert len(ready) == 2, f"{name}: {len(ready)} pods Running and Ready"

    service = loop.kubectl.get("service", FRONTEND, APP_NAMESPACE)
    assert service["spec"]["type"] == "NodePort"
    assert [p["nodePort"] for p in service["spec"]["ports"]] == [30000]

    # The backend reads every key of its Secret (made by the bootstrap, never in git) by reference.
    (secret_fact,) = [s for s in CLUSTER["externalSecrets"] if s["namespace"] == APP_NAMESPACE]
    secret = loop.kubectl.get("secret", secret_fact["name"], APP_NAMESPACE)
    assert sorted(secret["data"]) == sorted(secret_fact["keys"])
    env = loop.deployment(BACKEND)["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {k: {"name": secret_fact["name"], "key": k} for k in secret_fact["keys"]}


def test_merge_deploys_without_a_manual_step(loop: Loop) -> None:
    sha = loop.repo.merge(f"backend {NEW_TAG}", BACKEND_VALUES, set_backend_tag(NEW_TAG))
    assert loop.validate().code == 0, "the merged change is valid"
    # No sync, no refresh: Argo CD notices the new commit by itself and rolls the Deployment.
    loop.wait_app(BACKEND, revision=sha)
    loop.wait_rolled_out(BACKEND, NEW_TAG)
    loop.wait_app(ROOT_APP, revision=sha)


def test_rollback_from_argocd_holds_while_the_root_reconciles(loop: Loop) -> None:
    """docs/runbooks/rollback-ui.md, steps 1 and 2, with the CLI (the UI calls the same API)."""
    # 1. Pause auto-sync on the child.
    loop.argocd.cli("app", "set", BACKEND, "--sync-policy", "none")
    assert auto_sync(loop, BACKEND) is None
    # Argo CD refuses a rollback while a sync is still running ("another operation is already in
    # progress"): the runbook waits for it first
    loop.argocd.cli("app", "wait", BACKEND, "--operation", "--timeout", "300")
    # 2. Roll back to the deployment before the current one.
    history = loop.app(BACKEND)["status"]["history"]
    good = [h for h in history if h["revision"] != loop.repo.git("rev-parse", "HEAD")][-1]
    loop.argocd.cli("app", "rollback", BACKEND, str(good["id"]), "--timeout", "300")
    loop.wait_rolled_out(BACKEND, OLD_TAG)
    loop.wait_app(BACKEND, sync="OutOfSync", health="Healthy")

    # The root keeps reconciling and must neither re-enable the child's auto-sync nor undo the rollback.
    def root_reconciled() -> str:
        return loop.app(ROOT_APP)["status"].get("reconciledAt", "")
    seen = root_reconciled()
    for _ in range(2):
        seen = loop.procs.wait_until("todo-root to reconcile again", lambda s=seen: (r := root_reconciled()) != s and r,
                                     timeout=loop.poll * 6 + 60)
    loop.wait_app(ROOT_APP)
    assert auto_sync(loop, BACKEND) is None, "the root switched the child's auto-sync back on"
    image = loop.deployment(BACKEND)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(f":{OLD_TAG}"), image


def test_git_revert_then_auto_sync_leaves_it_synced(loop: Loop) -> None:
    """docs/runbooks/rollback-ui.md, steps 3 and 4."""
    loop.repo.git("revert", "--no-edit", "HEAD")
    sha = loop.repo.push()
    loop.argocd.cli("app", "set", BACKEND, "--sync-policy", "automated", "--auto-prune", "--self-heal")
    automated = auto_sync(loop, BACKEND)
    assert automated and automated.get("prune") and automated.get("selfHeal"), automated
    loop.wait_app(BACKEND, revision=sha)
    loop.wait_app(ROOT_APP, revision=sha)
    loop.wait_rolled_out(BACKEND, OLD_TAG)


def test_a_change_the_validator_refuses_is_one_that_breaks_the_sync(loop: Loop) -> None:
    def bad_replicas(text: str) -> str:
        return text.replace("replicaCount: 2\n", 'replicaCount: "two"\n')
    sha = loop.repo.merge("backend: replicaCount two (what the gate is for)", BACKEND_VALUES, bad_replicas)
    verdict = loop.validate()
    assert verdict.code == 1, verdict.out + verdict.err
    assert "values/schema" in verdict.rules()

    # Pushed anyway (a merge that skipped the gate): Argo CD cannot render it either. For its
    # repo error grace period the app still shows the last good state; then the error surfaces.
    def comparison_error() -> str | None:
        conditions = loop.app(BACKEND).get("status", {}).get("conditions", [])
        return next((c["message"] for c in conditions if c["type"] == "ComparisonError"), None)
    message = loop.procs.wait_until(f"{BACKEND} to report a ComparisonError for {sha[:8]}", comparison_error,
                                    timeout=loop.repo_error_grace + loop.poll * 6 + 60)
    assert "replicaCount" in message, message
    loop.wait_rolled_out(BACKEND, OLD_TAG)  # the running release is untouched

    loop.repo.git("revert", "--no-edit", "HEAD")
    fixed = loop.repo.push()
    loop.wait_app(BACKEND, revision=fixed)
    assert not comparison_error()
