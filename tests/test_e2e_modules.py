"""The e2e harness's Go wrapper modules (tests/e2e/modules) build exactly what `versions` pins.

Read with `go mod edit -json`, no build: a bumped pin that is not carried into a go.mod, or the
reverse, fails here in `make test` rather than in a half-hour e2e build.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import ROOT, VERSIONS

MODULES = ROOT / "tests" / "e2e" / "modules"


def go_mod(name: str) -> dict:
    p = subprocess.run(["go", "mod", "edit", "-json"], cwd=MODULES / name, capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def requires(mod: dict) -> dict[str, str]:
    return {r["Path"]: r["Version"] for r in mod.get("Require") or []}


def replaces(mod: dict) -> dict[str, str]:
    return {r["Old"]["Path"]: r["New"].get("Version", r["New"]["Path"]) for r in mod.get("Replace") or []}


@pytest.mark.parametrize("name", ["etcd", "kubernetes", "kwok", "argocd"])
def test_module_is_complete(name: str) -> None:
    mod = go_mod(name)
    assert mod["Tool"], f"{name}: the go.mod names the programs it builds (tool lines)"
    assert (MODULES / name / "go.sum").stat().st_size > 0, f"{name}: go.sum is committed"


def test_kubernetes_is_the_cluster_version() -> None:
    mod = go_mod("kubernetes")
    version = VERSIONS["KUBERNETES_VERSION"]
    assert requires(mod)["k8s.io/kubernetes"] == version
    staging = "v0." + version.split(".", 1)[1]  # v1.35.1 -> its staging modules' v0.35.1
    assert replaces(mod) and set(replaces(mod).values()) == {staging}
    assert {t["Path"].rsplit("/", 1)[1] for t in mod["Tool"]} == {
        "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"}


def test_argocd_is_the_installed_version() -> None:
    mod = go_mod("argocd")
    assert requires(mod)["github.com/argoproj/argo-cd/v3"] == VERSIONS["ARGOCD_VERSION"]
    assert replaces(mod)["github.com/argoproj/argo-cd/gitops-engine"] == VERSIONS["ARGOCD_GITOPS_ENGINE_VERSION"]


@pytest.mark.parametrize(("name", "path", "key"), [
    ("etcd", "go.etcd.io/etcd/server/v3", "ETCD_VERSION"),
    ("kwok", "sigs.k8s.io/kwok", "KWOK_VERSION"),
])
def test_pinned(name: str, path: str, key: str) -> None:
    assert requires(go_mod(name))[path] == VERSIONS[key]
