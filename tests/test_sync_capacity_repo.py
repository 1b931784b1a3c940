"""Issue 10's one-line edits to this repo's argocd/, clusters/ and apps/ files: each is refused by
the CLI with its rule id and the file and line of the edit, by a full run and by a path-scoped run
given only the edited file (what the pre-commit hook does), and the determinism check's cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, helm_logged, run_cli, tool_env

ROOT_APP = "argocd/root-app.yaml"
APPS_TEMPLATE = "argocd/apps/templates/applications.yaml"
BACKEND_VALUES = "clusters/minikube/values/todo-backend.yaml"

# (id, file, old text, new text, rule, text on the line the finding must point at)
EDITS = [
    ("randAlphaNum", "apps/todo-backend/templates/deployment.yaml",
     "        {{- with .Values.podAnnotations }}",
     "        rollme: {{ randAlphaNum 5 | quote }}\n        {{- with .Values.podAnnotations }}",
     "argocd/non-deterministic-render", "rollme:"),
    ("now", "apps/todo-frontend/templates/configmap.yaml",
     "data:\n", "data:\n  RENDERED_AT: {{ now | quote }}\n",
     "argocd/non-deterministic-render", "RENDERED_AT:"),
    ("no-ignoreDifferences", ROOT_APP,
     "  ignoreDifferences:\n    - group: argoproj.io\n      kind: Application\n      jsonPointers:\n"
     "        - /spec/syncPolicy/automated\n", "",
     "argocd/rollback-undone", "spec:"),
    ("no-RespectIgnoreDifferences", ROOT_APP,
     "      - RespectIgnoreDifferences=true", "      - PruneLast=true",
     "argocd/rollback-undone", "syncOptions:"),
    ("sync-wave-first", APPS_TEMPLATE,
     "{{ $app.syncWave | default 0 | quote }}", '"first"',
     "argocd/sync-wave", "argocd.argoproj.io/sync-wave"),
    ("CreateNamespace=True", APPS_TEMPLATE,
     "CreateNamespace=true", "CreateNamespace=True",
     "argocd/sync-option", "CreateNamespace=True"),
    ("unknown-hook", "apps/todo-backend/templates/tests/test-connection.yaml",
     '"helm.sh/hook": test', '"argocd.argoproj.io/hook": PreSynk',
     "argocd/hook", "argocd.argoproj.io/hook"),
    ("20-replicas", BACKEND_VALUES,
     "replicaCount: 2", "replicaCount: 20",
     "capacity/exceeded", "replicaCount: 20"),
    ("4Gi-request", BACKEND_VALUES,
     "    memory: 256Mi", "    memory: 4Gi",
     "capacity/exceeded", "memory: 4Gi"),
    ("repoURL-misspelt", ROOT_APP,
     "repoURL: https://github.com/todo-chatbot/todo-gitops.git", "repoURL: https://github.com/todo-chatbot/todo-gitps.git",
     "argocd/misspelt-repo-url", "todo-gitps.git"),
]


def validate(repo: Path, *args: str, env: dict | None = None):
    return run_cli("--repo", str(repo), "--format", "json", *args, env=env or tool_env())


def apply_edit(repo: Path, rel: str, old: str, new: str) -> None:
    p = repo / rel
    text = p.read_text()
    assert old in text, f"{old!r} not in {rel}"
    p.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """Per edit: a copy of this repo with that one edit, and the full and path-scoped results."""
    from e2e.harness import copy_repo
    env = tool_env()
    env["GITOPS_VALIDATE_CACHE"] = str(tmp_path_factory.mktemp("cache"))  # unchanged apps render once for all
    out = {}
    for case_id, rel, old, new, *_ in EDITS:
        repo = tmp_path_factory.mktemp(case_id.replace("=", "-")) / "repo"
        copy_repo(repo)
        apply_edit(repo, rel, old, new)
        out[case_id] = (repo, validate(repo, env=env), validate(repo, str(repo / rel), env=env))
    return out


@pytest.mark.parametrize("case_id, rel, old, new, rule, marker", EDITS, ids=[e[0] for e in EDITS])
def test_one_line_edit_is_refused_at_its_line(edited, case_id, rel, old, new, rule, marker):
    repo, full, scoped = edited[case_id]
    lines = (repo / rel).read_text().splitlines()
    for r in (full, scoped):
        assert r.code == 1, r.out + r.err
        hits = [f for f in r.json["findings"] if f["rule"] == rule]
        assert hits, f"no {rule} in {r.json['findings']}"
        f = hits[0]
        assert f["severity"] == "error" and f["file"] == rel and f["line"], f
        assert marker in lines[f["line"] - 1], (f, lines[f["line"] - 1])


def test_this_repo_passes_every_new_rule():
    """The baseline of the edits: the root app holds rollbacks, waves and options are spelt right,
    the budget fits, and every chart renders the same twice."""
    r = validate(ROOT, "--no-cache")
    assert r.code == 0 and r.json["findings"] == [], r.out + r.err


def test_determinism_runs_helm_twice_only_on_a_cache_miss(tmp_path, repo_copy):
    """The determinism check's cost in helm runs: cold, every app once (no chart calls a function
    that can vary: determinism.may_vary), except one that does, twice (concurrently); warm, none;
    one changed app, that app once."""
    env, log = helm_logged(tmp_path)
    env["GITOPS_VALIDATE_CACHE"] = str(tmp_path / "cache")

    def runs(*args: str, repo: Path = ROOT, code: int = 0) -> int:
        log.write_text("")
        r = validate(repo, *args, env=env)
        assert r.code == code, r.out + r.err
        return [c.split(" ", 1)[0] for c in log.read_text().splitlines()].count("template")  # not `helm version`

    assert runs() == 3          # 3 apps, each rendered once: nothing in them can vary
    assert runs() == 0          # served from the cache
    values = ROOT / BACKEND_VALUES
    original = values.read_text()
    try:
        values.write_text(original + "\n# touched\n")
        assert runs(str(values)) == 1
    finally:
        values.write_text(original)
    apply_edit(repo_copy, *EDITS[0][1:4])   # randAlphaNum in the backend chart: that app twice
    env["GITOPS_VALIDATE_CACHE"] = str(tmp_path / "cache2")
    assert runs(repo=repo_copy, code=1) == 4


def test_a_non_deterministic_chart_stays_refused_when_served_from_the_cache(tmp_path, repo_copy):
    """The cache stores a render; only a render shown equal to a second run is trusted unchecked."""
    apply_edit(repo_copy, *EDITS[0][1:4])
    env = tool_env()
    env["GITOPS_VALIDATE_CACHE"] = str(tmp_path / "cache")
    for _ in range(2):
        r = validate(repo_copy, env=env)
        assert r.code == 1 and "argocd/non-deterministic-render" in r.rules(), r.out


def test_precommit_hook_refuses_a_staged_sync_option_typo(repo_copy):
    """The real pre-commit with only the edited template staged."""
    for d in (".venv", ".tools"):
        (repo_copy / d).symlink_to(ROOT / d)
    env = tool_env()
    env["PRE_COMMIT_HOME"] = str(Path.home() / ".cache" / "pre-commit")
    pc = Path(sys.executable).parent / "pre-commit"
    subprocess.run([str(pc), "install"], cwd=repo_copy, env=env, check=True, capture_output=True)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    apply_edit(repo_copy, APPS_TEMPLATE, "CreateNamespace=true", "CreateNamespace=True")
    subprocess.run(["git", "add", APPS_TEMPLATE], cwd=repo_copy, check=True)
    p = subprocess.run([*git, "commit", "-m", "typo"], cwd=repo_copy, env=env, capture_output=True, text=True,
                       timeout=900)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "argocd/sync-option" in out and "did you mean 'CreateNamespace=true'" in out, out


def test_applications_an_applicationset_generates_are_checked(repo_copy):
    (repo_copy / "clusters/minikube/extra.yaml").write_text("""\
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: extra, namespace: argocd}
spec:
  generators:
    - list:
        elements:
          - {name: extra-backend}
  template:
    metadata: {name: '{{name}}'}
    spec:
      project: todo
      source:
        repoURL: https://github.com/todo-chatbot/todo-gitops.git
        targetRevision: main
        path: apps/todo-backend
        helm: {valueFiles: [../../clusters/minikube/values/todo-backend.yaml]}
      destination: {server: https://kubernetes.default.svc, namespace: extra}
      syncPolicy:
        syncOptions: [CreateNamespace=True]
""")
    r = validate(repo_copy)
    assert r.code == 1
    hits = [f for f in r.json["findings"] if f["rule"] == "argocd/sync-option"]
    assert hits and hits[0]["file"] == "clusters/minikube/extra.yaml" and hits[0]["object"]["name"] == "extra-backend"
    assert "did you mean 'CreateNamespace=true'" in hits[0]["message"]
