"""gitops-validate on this repository and on copies of it with defects planted: discovery,
rendering exactly as Argo CD does, value files, the cache, and the pre-commit gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from conftest import ROOT, helm_logged, run_cli, tool_env


def validate(repo: Path, *args: str, cache: Path | None = None):
    env = tool_env()
    if cache:
        env["GITOPS_VALIDATE_CACHE"] = str(cache)
    return run_cli("--repo", str(repo), "--format", "json", *args, env=env)


def test_this_repo_validates_with_zero_errors(tmp_path):
    r = validate(ROOT, "--no-cache")
    assert r.code == 0, r.out + r.err
    assert r.json["summary"]["errors"] == 0 and r.json["summary"]["warnings"] == 0, r.json["findings"]
    # the root app-of-apps, the two children it renders, and the cluster's Argo CD install (kustomize)
    assert r.json["summary"]["apps"] == 4 and r.json["summary"]["objects"] >= 15


def test_renders_with_argo_cd_flags(tmp_path):
    """A helm wrapper records the arguments; they must be the ones Argo CD's repo server uses."""
    env, log = helm_logged(tmp_path)
    r = run_cli("--repo", str(ROOT), "--no-cache", env=env)
    assert r.code == 0, r.out + r.err
    calls = log.read_text().splitlines()
    backend = next(c for c in calls if "apps/todo-backend " in c + " ")
    assert f"template {ROOT}/apps/todo-backend --name-template todo-backend --namespace todo --kube-version v1.35.1" in backend
    assert f"--values {ROOT}/clusters/minikube/values/todo-backend.yaml" in backend
    assert "--api-versions apps/v1 " in backend and "--api-versions argoproj.io/v1alpha1/Application" in backend
    assert backend.endswith("--include-crds")
    root = next(c for c in calls if "argocd/apps" in c)
    # build environment substituted into the parameters, as Argo CD does
    assert "--set repoURL=https://github.com/todo-chatbot/todo-gitops.git" in root
    assert "--set targetRevision=main" in root
    # each app once: no chart of this repo calls a function that can vary (determinism.may_vary),
    # so the determinism check (argocd/non-deterministic-render) needs no second run
    assert len(calls) == 3 and len(set(calls)) == 3


def test_precommit_run_on_one_values_file_renders_one_app(tmp_path):
    cache = tmp_path / "cache"
    assert validate(ROOT, cache=cache).code == 0  # warm the cache, as `make validate` does
    values = ROOT / "clusters/minikube/values/todo-backend.yaml"
    original = values.read_text()
    try:
        values.write_text(original + "\n# touched\n")
        r = validate(ROOT, "-v", str(values), cache=cache)
    finally:
        values.write_text(original)
    assert r.code == 0, r.out + r.err
    assert "1 helm render(s), 2 from cache" in r.err
    # the backend, and the frontend whose BACKEND_URL points into it (a scope that sees both directions)
    assert r.json["summary"]["apps"] == 2


def test_unchanged_repo_is_served_from_cache(tmp_path):
    cache = tmp_path / "cache"
    validate(ROOT, cache=cache)
    r = validate(ROOT, "-v", cache=cache)
    assert "0 helm render(s), 3 from cache" in r.err


def edit(repo: Path, rel: str, old: str, new: str) -> None:
    p = repo / rel
    text = p.read_text()
    assert old in text, f"{old!r} not in {rel}"
    p.write_text(text.replace(old, new, 1))


def finding(r, rule: str) -> dict:
    hits = [f for f in r.json["findings"] if f["rule"] == rule]
    assert hits, f"no {rule} in {r.json['findings']}"
    return hits[0]


def test_unknown_values_key_says_did_you_mean(repo_copy):
    edit(repo_copy, "clusters/minikube/values/todo-backend.yaml", "replicaCount:", "replicaCont:")
    r = validate(repo_copy)
    assert r.code == 1
    f = finding(r, "values/unknown-key")
    assert f["file"] == "clusters/minikube/values/todo-backend.yaml" and f["line"]
    assert "did you mean 'replicaCount'" in f["message"] and f["app"] == "todo-backend"


def test_new_key_in_a_map_the_schema_opens_is_not_unknown(repo_copy):
    """The frontend's `config:` is open in values.schema.json (additionalProperties: string): a new
    variable there is allowed, with no "did you mean" pointing at a sibling."""
    rel = "clusters/minikube/values/todo-frontend.yaml"
    edit(repo_copy, rel, '  NEXT_PUBLIC_FEATURE_CHAT: "true"\n',
         '  NEXT_PUBLIC_FEATURE_CHAT: "true"\n  NEXT_PUBLIC_FEATURE_TODO: "true"\n')
    r = validate(repo_copy)
    assert r.code == 0, r.json["findings"]
    assert not [f for f in r.json["findings"] if f["rule"] == "values/unknown-key"]


def test_unknown_key_in_a_closed_map_hints_only_at_a_typo(repo_copy):
    rel = "clusters/minikube/values/todo-frontend.yaml"
    edit(repo_copy, rel, "  limits:\n", "  limit:\n")          # a typo: one edit from 'limits'
    edit(repo_copy, rel, "replicaCount: 2\n", "replicaCount: 2\nmaxSurge: 1\n")  # new, like nothing
    r = validate(repo_copy)
    assert r.code == 1
    unknown = {f["message"]: f for f in r.json["findings"] if f["rule"] == "values/unknown-key"}
    assert "'resources.limit' is not a value of the chart (did you mean 'limits'?)" in unknown
    assert "'maxSurge' is not a value of the chart" in unknown  # no hint: closer to nothing
    assert unknown["'maxSurge' is not a value of the chart"]["line"] == 5


def test_values_schema_error_points_at_the_value_file_line(repo_copy):
    rel = "clusters/minikube/values/todo-frontend.yaml"
    edit(repo_copy, rel, "replicaCount: 2", "replicaCount: two")
    r = validate(repo_copy)
    f = finding(r, "values/schema")
    lines = (repo_copy / rel).read_text().splitlines()
    assert f["file"] == rel and "replicaCount: two" in lines[f["line"] - 1]


def test_literal_secret_in_values_is_refused(repo_copy):
    rel = "clusters/minikube/values/todo-backend.yaml"
    edit(repo_copy, rel, "  LOG_LEVEL: info\n", "  LOG_LEVEL: info\n  GROQ_API_KEY: gsk-not-a-real-key\n")
    r = validate(repo_copy)
    assert r.code == 1
    f = finding(r, "secrets/literal-value")
    assert f["file"] == rel and f["line"] == 21 and "config.GROQ_API_KEY" in f["message"]


def test_missing_value_file_is_a_finding(repo_copy):
    edit(repo_copy, "clusters/minikube/apps.yaml", "values/todo-backend.yaml", "values/todo-backnd.yaml")
    r = validate(repo_copy)
    assert r.code == 1 and "Traceback" not in r.err
    f = finding(r, "argocd/missing-value-file")
    assert "todo-backnd.yaml" in f["message"] and f["app"] == "todo-backend"
    # the child Application was rendered from apps.yaml: the finding points at the line there
    assert f["file"] == "clusters/minikube/apps.yaml" and f["line"] == 8


def test_value_file_outside_the_repo_is_refused(repo_copy):
    edit(repo_copy, "argocd/root-app.yaml", "- ../../clusters/minikube/apps.yaml", "- ../../../../etc/passwd")
    r = validate(repo_copy)
    f = finding(r, "argocd/outside-repo")
    assert f["file"] == "argocd/root-app.yaml" and f["line"] == 21


def test_missing_source_path_is_a_finding_at_its_line(repo_copy):
    edit(repo_copy, "argocd/root-app.yaml", "path: argocd/apps", "path: argocd/appz")
    r = validate(repo_copy)
    f = finding(r, "argocd/missing-path")
    assert f["file"] == "argocd/root-app.yaml" and f["line"] == 17


def test_an_application_defined_twice_is_a_finding(repo_copy):
    text = (repo_copy / "argocd/root-app.yaml").read_text()
    (repo_copy / "clusters/minikube/root-again.yaml").write_text(text)
    r = validate(repo_copy)
    f = finding(r, "argocd/duplicate-application")
    assert f["file"] == "clusters/minikube/root-again.yaml" and f["line"] == 7  # metadata.name
    assert "first in argocd/root-app.yaml" in f["message"]


def test_broken_template_is_a_render_finding(repo_copy):
    p = repo_copy / "apps/todo-backend/templates/configmap.yaml"
    p.write_text(p.read_text() + "\n{{ .Values.nope.deeper }}\n")
    r = validate(repo_copy)
    f = finding(r, "values/render-failed")
    assert f["app"] == "todo-backend" and "nil pointer" in f["message"]


def test_applicationset_list_and_multi_source_ref(repo_copy):
    (repo_copy / "clusters/minikube/extra.yaml").write_text("""\
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: extra, namespace: argocd}
spec:
  goTemplate: true
  generators:
    - list:
        elements:
          - {name: extra-backend, chart: todo-backend}
  template:
    metadata: {name: '{{.name}}'}
    spec:
      project: todo
      sources:
        - repoURL: https://github.com/todo-chatbot/todo-gitops.git
          targetRevision: main
          path: 'apps/{{.chart}}'
          helm:
            valueFiles: [$values/clusters/minikube/values/todo-backend.yaml]
            valuesObject: {image: {tag: latest}}
        - repoURL: https://github.com/todo-chatbot/todo-gitops.git
          targetRevision: main
          ref: values
      destination: {server: https://kubernetes.default.svc, namespace: todo}
""")
    r = validate(repo_copy)
    assert r.code == 1
    f = finding(r, "values/schema")  # valuesObject is layered over the $ref value file
    assert f["app"] == "extra-backend" and "image.tag" in f["message"]


def test_removed_api_in_a_chart_template(repo_copy):
    edit(repo_copy, "apps/todo-frontend/templates/pdb.yaml", "policy/v1", "policy/v1beta1")
    r = validate(repo_copy)
    f = finding(r, "schema/removed-api")
    assert f["file"] == "apps/todo-frontend/templates/pdb.yaml" and f["app"] == "todo-frontend"


def test_git_commit_is_refused_by_the_pre_commit_hook(repo_copy):
    """The real pre-commit, the real hook config, the real git: a bad values change cannot be committed."""
    for d in (".venv", ".tools"):
        (repo_copy / d).symlink_to(ROOT / d)
    env = tool_env()
    env["PRE_COMMIT_HOME"] = str(Path.home() / ".cache" / "pre-commit")  # hook envs are reused across tests
    pc = Path(sys.executable).parent / "pre-commit"
    subprocess.run([str(pc), "install"], cwd=repo_copy, env=env, check=True, capture_output=True)
    edit(repo_copy, "clusters/minikube/values/todo-backend.yaml", "replicaCount:", "replicaCont:")
    subprocess.run(["git", "add", "-A"], cwd=repo_copy, check=True)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    p = subprocess.run([*git, "commit", "-m", "typo"], cwd=repo_copy, env=env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode != 0, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert "values/unknown-key" in out and "did you mean 'replicaCount'" in out, out
    # and the fix goes through
    edit(repo_copy, "clusters/minikube/values/todo-backend.yaml", "replicaCont:", "replicaCount:")
    subprocess.run(["git", "add", "-A"], cwd=repo_copy, check=True)
    p = subprocess.run([*git, "commit", "-m", "fine"], cwd=repo_copy, env=env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr


def test_rules_doc_is_current():
    p = subprocess.run([sys.executable, "-m", "gitops_validate.docs", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr


# --- issue 12: findings on rendered objects point at the value that set the field --------------

def test_rendered_finding_points_at_the_value_file_line(repo_copy):
    rel = "clusters/minikube/values/todo-backend.yaml"
    edit(repo_copy, rel, "    memory: 1Gi\n", "    memory: 128Mi\n")   # the limit, below the request
    r = validate(repo_copy)
    f = finding(r, "resources/request-exceeds-limit")
    lines = (repo_copy / rel).read_text().splitlines()
    # the limit the override changed, not the request it left at the chart's default
    assert f["file"] == rel and lines[f["line"] - 1] == "    memory: 128Mi", f
    # the second location: the template line that renders the value (SARIF relatedLocations, text "set at")
    template = "apps/todo-backend/templates/deployment.yaml"
    assert f["related"] == [{"file": template, "line": 77, "label": "rendered by"}], f
    assert (repo_copy / template).read_text().splitlines()[76].strip() == "{{- with .Values.resources }}"
    sarif = json.loads(validate(repo_copy, "--format", "sarif").out)
    result = next(x for x in sarif["runs"][0]["results"] if x["ruleId"] == "resources/request-exceeds-limit")
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": f["line"]}
    assert result["relatedLocations"] == [{"id": 0, "message": {"text": "rendered by"}, "physicalLocation": {
        "artifactLocation": {"uri": template, "uriBaseId": "%SRCROOT%"}, "region": {"startLine": 77}}}]
    text = run_cli("--repo", str(repo_copy), env=tool_env()).out
    assert f"(set at {rel}:{f['line']}, rendered by {template}:77)" in text, text
    github = run_cli("--repo", str(repo_copy), "--format", "github", env=tool_env()).out
    assert f"file={rel},line={f['line']}" in github and f"rendered by {template}:77)" in github, github


def test_missing_probe_points_at_the_null_that_removed_it(repo_copy):
    rel = "clusters/minikube/values/todo-backend.yaml"
    edit(repo_copy, rel, "replicaCount: 2\n", "replicaCount: 2\nreadinessProbe: null\n")
    f = finding(validate(repo_copy), "probes/missing-readiness")
    assert (f["file"], f["line"]) == (rel, 5), f


def test_a_values_error_in_one_app_causes_no_finding_in_another(repo_copy):
    """The backend's values have an unknown key: it renders with the valid part of its values, so
    the frontend's URL into it is checked (and fine): no cascade of refs/in-cluster-url findings."""
    edit(repo_copy, "clusters/minikube/values/todo-backend.yaml", "replicaCount:", "replicaCont:")
    r = validate(repo_copy)
    assert r.code == 1
    assert [f["rule"] for f in r.json["findings"]] == ["values/unknown-key"], r.json["findings"]


def test_a_values_typo_still_reports_the_apps_other_findings(repo_copy):
    """Partial render (partialrender.py): the unknown key stays an error, and the memory limit
    lowered below the request in the same file is reported too, at its line."""
    rel = "clusters/minikube/values/todo-backend.yaml"
    edit(repo_copy, rel, "replicaCount: 2\n", "replicaCont: 2\n")
    edit(repo_copy, rel, "    memory: 1Gi\n", "    memory: 128Mi\n")
    r = validate(repo_copy)
    assert r.code == 1, r.err
    got = sorted((f["rule"], f["file"], f["line"]) for f in r.json["findings"])
    assert got == [("resources/request-exceeds-limit", rel, 17), ("values/unknown-key", rel, 4)], got


def test_a_schema_type_error_falls_back_to_the_chart_default_for_that_value_only(repo_copy):
    """replicaCount: two is refused by the values schema; the render uses the chart's default for it
    and keeps the rest of the overrides: the pull policy Always set next to it is still reported."""
    rel = "clusters/minikube/values/todo-frontend.yaml"
    edit(repo_copy, rel, "replicaCount: 2\n", "replicaCount: two\n")
    edit(repo_copy, rel, "  pullPolicy: IfNotPresent\n", "  pullPolicy: Always\n")
    r = validate(repo_copy)
    assert r.code == 1
    got = sorted((f["rule"], f["severity"], f["line"]) for f in r.json["findings"])
    assert got == [("images/pull-always", "warning", 7), ("values/schema", "error", 4)], got
    assert r.json["summary"]["objects"] == validate(ROOT).json["summary"]["objects"]  # every object checked


def test_an_app_that_does_not_render_is_not_checked_into(repo_copy):
    """The backend's values do not parse: nothing of it renders, so the frontend's URL into it is
    not checked and says so, once, as a warning (refs/not-checked), not as a refs/in-cluster-url error."""
    edit(repo_copy, "clusters/minikube/values/todo-backend.yaml", "replicaCount: 2\n", "replicaCount: [2\n")
    r = validate(repo_copy)
    assert r.code == 1
    rules = sorted(f["rule"] for f in r.json["findings"])
    assert rules == ["refs/not-checked", "yaml/syntax"], r.json["findings"]
    f = finding(r, "refs/not-checked")
    assert f["severity"] == "warning" and f["app"] == "todo-frontend"
    assert "not checked, todo-backend did not render" in f["message"], f
    assert f["file"] == "clusters/minikube/values/todo-frontend.yaml" and f["line"] == 20, f


def test_one_line_edits_point_at_the_edited_line():
    """scripts/pointing.py: every edit is caught, and at least 90 % of the findings point at the
    edited file and line (the figure in docs/rules.md, section Accuracy)."""
    p = subprocess.run([sys.executable, str(ROOT / "scripts/pointing.py"), "--json"], capture_output=True,
                       text=True, env=tool_env(), timeout=1800)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert len(data["edits"]) >= 16
    assert all(e["findings"] for e in data["edits"]), [e["edit"] for e in data["edits"] if not e["findings"]]
    assert data["at_edited_line"] / data["findings"] >= 0.9, data
