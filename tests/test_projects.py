"""argocd/ project rules: Argo CD's matching semantics, and one planted defect per rule in a fixture
repo (app-of-apps, Kustomize, multi-source, ApplicationSet) through the real CLI, full and
path-scoped (as pre-commit runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from argo_fixture import make_repo, plant
from conftest import run_cli, tool_env
from gitops_validate.rules.projects import (destination_permitted, glob_match, kind_permitted, normalize_git_url,
                                      source_permitted)


# --- Argo CD's semantics (cases from app_project_types.go and its tests) ------------------------

@pytest.mark.parametrize("pattern, value, sep, want", [
    ("https://github.com/*", "https://github.com/org", "/", True),
    ("https://github.com/*", "https://github.com/org/repo", "/", False),   # * stops at the separator
    ("https://github.com/**", "https://github.com/org/repo", "/", True),
    ("https://github.com/org/{a,b}", "https://github.com/org/b", "/", True),
    ("https://github.com/org/repo?", "https://github.com/org/repo1", "/", True),
    ("!https://github.com/org/secret", "https://github.com/org/repo", "/", True),
    ("!https://github.com/org/secret", "https://github.com/org/secret", "/", False),
    ("team-*", "team-a", "", True),
    ("team-*", "other", "", False),
    ("*", "anything/at/all", "/", True),
])
def test_glob_is_argo_cds(pattern, value, sep, want):
    assert glob_match(pattern, value, sep) is want


def test_git_urls_are_normalized_like_argo_cd():
    assert normalize_git_url("https://GitHub.com/Org/Repo.git") == "https://github.com/org/repo"
    assert normalize_git_url("git@github.com:org/repo.git") == "git@github.com/org/repo"
    assert source_permitted({"sourceRepos": ["git@github.com:org/*"]}, "git@github.com:org/repo.git")


def test_source_negation_refuses_whatever_else_matches():
    project = {"sourceRepos": ["https://git.example/*", "!https://git.example/forbidden"]}
    assert source_permitted(project, "https://git.example/fx.git")
    assert not source_permitted(project, "https://git.example/forbidden.git")
    assert not source_permitted({"sourceRepos": []}, "https://git.example/fx.git")
    # as in Argo CD, a deny pattern that does not match counts as a match: it alone permits the rest
    assert source_permitted({"sourceRepos": ["!https://git.example/forbidden"]}, "https://elsewhere/x.git")


def test_destination_semantics():
    project = {"destinations": [{"server": "https://kubernetes.default.svc", "namespace": "web-*"},
                                {"server": "*", "namespace": "!kube-system"}]}
    assert destination_permitted(project, "https://kubernetes.default.svc", "in-cluster", "web-a")
    assert destination_permitted(project, "https://other", "", "apps")
    assert not destination_permitted(project, "https://other", "", "kube-system")
    by_name = {"destinations": [{"name": "in-cluster", "namespace": "todo"}]}
    assert destination_permitted(by_name, "https://kubernetes.default.svc", "in-cluster", "todo")
    assert not destination_permitted(by_name, "https://kubernetes.default.svc", "in-cluster", "other")


def test_kind_semantics():
    # no namespaced allow list: everything; an empty one: nothing; the deny list wins
    assert kind_permitted({}, "apps", "Deployment", "x", namespaced=True)
    assert not kind_permitted({"namespaceResourceWhitelist": []}, "apps", "Deployment", "x", namespaced=True)
    assert not kind_permitted({"namespaceResourceBlacklist": [{"group": "*", "kind": "Secret"}]}, "", "Secret", "x", True)
    # cluster-scoped: only what the allow list names (group/kind globs, optional name)
    assert not kind_permitted({}, "rbac.authorization.k8s.io", "ClusterRole", "x", namespaced=False)
    allow = {"clusterResourceWhitelist": [{"group": "rbac.authorization.k8s.io", "kind": "Cluster*", "name": "web-*"}]}
    assert kind_permitted(allow, "rbac.authorization.k8s.io", "ClusterRole", "web-read", namespaced=False)
    assert not kind_permitted(allow, "rbac.authorization.k8s.io", "ClusterRole", "admin", namespaced=False)


# --- the fixture repo, one defect at a time -----------------------------------------------------

def validate(repo: Path, *paths: str):
    return run_cli("--repo", str(repo), "--format", "json", *paths, env=tool_env())


@pytest.fixture
def fx(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "fx")


def test_fixture_repo_passes(fx):
    r = validate(fx)
    assert r.code == 0, r.out + r.err
    assert r.json["summary"]["errors"] == 0 and r.json["summary"]["warnings"] == 0, r.json["findings"]
    assert r.json["summary"]["apps"] == 4  # root, its Kustomize child, the multi-source app, the generated one


_CLUSTER_ROLE = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: web-read}
rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]
"""

#: (id, file, old, new, rule, file the finding points at (None: the edited file), at the edited line)
DEFECTS = [
    ("missing-project", "root.yaml", "project: boot", "project: bot", "argocd/project-missing", None, True),
    ("existing-project-misspelt", "multi.yaml", "project: web", "project: platfrom", "argocd/project-missing", None, True),
    ("source-not-permitted", "projects.yaml", "sourceRepos: ['https://git.example/fx.git']",
     "sourceRepos: ['https://git.example/other.git']", "argocd/project-source", None, True),
    ("source-denied", "projects.yaml", "'!https://git.example/forbidden'", "'!https://git.example/fx'",
     "argocd/project-source", None, True),
    ("destination-project-side", "projects.yaml", "namespace: 'web-*'", "namespace: 'app-*'",
     "argocd/project-destination", None, True),
    ("destination-app-of-apps-values", "apps-chart/values.yaml", "namespace: web-a", "namespace: prod-a",
     "argocd/project-destination", "projects.yaml", False),
    ("destination-applicationset", "appset.yaml", "namespace: web-c", "namespace: prod-c",
     "argocd/project-destination", "projects.yaml", False),
    ("cluster-kind", "kust/base/kustomization.yaml", "  - deployment.yaml\n", "  - deployment.yaml\n  - role.yaml\n",
     "argocd/project-cluster-resource", "kust/base/role.yaml", False),
    ("namespaced-kind", "charts/web/templates/configmap.yaml", "", "---\napiVersion: v1\nkind: ResourceQuota\n"
     "metadata: {name: web}\nspec: {hard: {pods: '10'}}\n", "argocd/project-namespaced-resource",
     "charts/web/templates/configmap.yaml", False),
    ("create-namespace", "projects.yaml", "kind: Namespace", "kind: PersistentVolume",
     "argocd/project-create-namespace", None, True),
    ("app-of-apps-default", "apps-chart/values.yaml", "project: web", "project: default",
     "argocd/app-of-apps-project", None, True),
    ("app-of-apps-not-listed", "apps-chart/values.yaml", "project: web", "project: boot",
     "argocd/app-of-apps-project", None, True),
]


@pytest.mark.parametrize("case", DEFECTS, ids=[d[0] for d in DEFECTS])
def test_each_project_rule_refuses_its_defect(fx, case):
    _, rel, old, new, rule, where, at_line = case
    if rule == "argocd/project-cluster-resource":
        (fx / "kust/base/role.yaml").write_text(_CLUSTER_ROLE)
    line = plant(fx, rel, old, new)
    for paths in ((), (rel,)):  # the whole repo, and a pre-commit run given only the edited file
        r = validate(fx, *paths)
        assert r.code == 1, (paths, r.out + r.err)
        hits = [f for f in r.json["findings"] if f["rule"] == rule and f["severity"] == "error"]
        assert hits, (paths, r.json["findings"])
        assert any(f["file"] == (where or rel) and (not at_line or f["line"] == line) for f in hits), (paths, hits)


def test_default_project_allowed_for_children_when_the_cluster_says_so(fx):
    plant(fx, "apps-chart/values.yaml", "project: web", "project: default")
    plant(fx, "clusters/dev/cluster.yaml", "appOfAppsProjects: [web]", "appOfAppsProjects: [web, default]")
    r = validate(fx)
    assert r.code == 0, r.json["findings"]


def test_project_only_declared_to_exist_is_accepted(fx):
    plant(fx, "multi.yaml", "project: web", "project: platform")
    r = validate(fx)
    assert r.code == 0, r.json["findings"]


# --- one-line edits to this repository (the acceptance list) ----------------------------

#: (id, file, old, new, rule); the finding must name the edited file and line
REPO_EDITS = [
    ("sourceRepos", "argocd/projects.yaml", "  sourceRepos:\n    - https://github.com/todo-chatbot/todo-gitops.git\n"
     "  destinations:\n    - server: https://kubernetes.default.svc\n      namespace: todo\n",
     "  sourceRepos:\n    - https://github.com/todo-chatbot/other.git\n"
     "  destinations:\n    - server: https://kubernetes.default.svc\n      namespace: todo\n", "argocd/project-source"),
    ("destinations", "argocd/projects.yaml", "      namespace: todo\n", "      namespace: todo-prod\n",
     "argocd/project-destination"),
    ("no-namespace-kind", "argocd/projects.yaml", "      kind: Namespace\n      name: todo", "      kind: PersistentVolume\n      name: todo",
     "argocd/project-create-namespace"),
    ("nonexistent-project", "argocd/root-app.yaml", "project: todo-bootstrap", "project: todo-bootstap",
     "argocd/project-missing"),
    # the children's project is fixed by the app-of-apps chart: a cluster file cannot even name one
    ("default-project", "clusters/minikube/apps.yaml", "apps:\n", "project: default\napps:\n",
     "values/unknown-key"),
]


@pytest.mark.parametrize("case", REPO_EDITS, ids=[c[0] for c in REPO_EDITS])
def test_one_line_edits_to_this_repo_are_refused(repo_copy, case):
    _, rel, old, new, rule = case
    text = (repo_copy / rel).read_text()
    line = plant(repo_copy, rel, old, new)
    changed = next(i for i, (a, b) in enumerate(zip(text.splitlines(), (repo_copy / rel).read_text().splitlines()), 1)
                   if a != b)
    assert changed >= line
    for paths in ((), (rel,)):
        r = validate(repo_copy, *paths)
        assert r.code == 1, (paths, r.out + r.err)
        hits = [f for f in r.json["findings"] if f["rule"] == rule]
        assert hits and all((f["file"], f["line"]) == (rel, changed) for f in hits), (paths, r.json["findings"])
