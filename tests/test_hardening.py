"""The hardening (issue 11) holds: each one-line edit that would re-open it is refused, with a reason.

Projects, Pod Security, NetworkPolicies, Argo CD over TLS and the supply chain (CI actions, base
images, CODEOWNERS). The e2e suite shows the real Argo CD and API server refusing the same things.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from conftest import ROOT, run_cli

PSA = "pod-security.kubernetes.io/"


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def projects() -> dict[str, dict]:
    return {p["metadata"]["name"]: p["spec"] for p in load_all(ROOT / "argocd" / "projects.yaml")}


def validate(repo: Path):
    return run_cli("--repo", str(repo), "--format", "json", "--no-cache")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def cluster_minor() -> str:
    version = yaml.safe_load((ROOT / "clusters/minikube/cluster.yaml").read_text())["kubernetesVersion"]
    return "v" + ".".join(str(version).lstrip("v").split(".")[:2])


# --- 1. projects ----------------------------------------------------------------------------

def test_default_project_is_locked_by_the_install() -> None:
    kustomization = yaml.safe_load((ROOT / "argocd/kustomization.yaml").read_text())
    assert "projects.yaml" in kustomization["resources"]
    default = projects()["default"]
    assert default["sourceRepos"] == [] and default["destinations"] == [], default
    assert default["clusterResourceWhitelist"] == []
    assert default["namespaceResourceBlacklist"] == [{"group": "*", "kind": "*"}]


def test_no_project_allows_a_wildcard_or_an_unnamed_namespace() -> None:
    for name, spec in projects().items():
        assert "*" not in spec.get("sourceRepos", []), name
        for d in spec.get("destinations", []):
            assert "*" not in (d.get("namespace", ""), d.get("server", "")), name
        for item in spec.get("clusterResourceWhitelist", []):
            assert item["kind"] == "Namespace" and item.get("name"), f"{name}: {item}"
            # its own destination namespace, nothing else
            assert item["name"] in {d["namespace"] for d in spec["destinations"]}, name
        for item in spec.get("namespaceResourceWhitelist", []):
            assert "*" not in (item["group"], item["kind"]), f"{name}: {item}"


def test_todo_project_whitelists_exactly_the_kinds_the_charts_render() -> None:
    rendered = set()
    for template in (ROOT / "apps").glob("*/templates/**/*.yaml"):
        text = template.read_text()
        for api, kind in re.findall(r"(?m)^apiVersion: (\S+)\nkind: (\S+)", text):
            rendered.add((api.rpartition("/")[0], kind))
    allowed = {(i["group"], i["kind"]) for i in projects()["todo"]["namespaceResourceWhitelist"]}
    assert allowed == rendered


def test_children_project_is_not_a_cluster_value(repo_copy: Path) -> None:
    template = (ROOT / "argocd/apps/templates/applications.yaml").read_text()
    assert re.search(r"(?m)^  project: todo$", template), "the children's project is written in the chart"
    assert "project" not in yaml.safe_load((ROOT / "argocd/apps/values.schema.json").read_text())["properties"]
    # A cluster's apps.yaml that tries to move the apps into `default` is refused.
    edit(repo_copy / "clusters/minikube/apps.yaml", "apps:\n", "project: default\napps:\n")
    r = validate(repo_copy)
    assert r.code == 1 and r.rules() & {"values/schema", "values/unknown-key"}, r.out + r.err
    assert any("project" in f["message"] for f in r.json["findings"]), r.json["findings"]


# --- 2. Pod Security ------------------------------------------------------------------------

def _managed_labels(app: dict) -> dict:
    policy = app["spec"]["syncPolicy"]
    assert "CreateNamespace=true" in policy["syncOptions"]
    return policy["managedNamespaceMetadata"]["labels"]


def test_namespaces_enforce_restricted_at_the_cluster_minor() -> None:
    root = yaml.safe_load((ROOT / "argocd/root-app.yaml").read_text())
    labels = _managed_labels(root)
    assert labels[PSA + "enforce"] == "restricted"
    assert labels[PSA + "enforce-version"] == cluster_minor()
    apps_values = yaml.safe_load((ROOT / "clusters/minikube/apps.yaml").read_text())
    assert apps_values["podSecurityVersion"] == cluster_minor()
    template = (ROOT / "argocd/apps/templates/applications.yaml").read_text()
    assert f"{PSA}enforce: restricted" in template


def test_a_removed_enforce_label_is_refused(repo_copy: Path) -> None:
    edit(repo_copy / "argocd/apps/templates/applications.yaml", f"        {PSA}enforce: restricted\n", "")
    edit(repo_copy / "argocd/root-app.yaml", f"{PSA}enforce: restricted", f"{PSA}enforce: privileged")
    r = validate(repo_copy)
    assert r.code == 1, r.out + r.err
    found = [f for f in r.json["findings"] if f["rule"] == "security/namespace-pod-security"]
    assert {f["object"]["name"] for f in found} == {"todo-root", "todo-backend", "todo-frontend"}, found
    assert all("would admit privileged pods" in f["message"] for f in found)
