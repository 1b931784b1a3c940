"""Hostile repositories (issue 9, items 3, 4 and 7): nothing outside the repo is read or printed,
no input ends in a traceback, and a path-scoped run sees a change from both sides.

Every test runs the real CLI with the real helm and kubeconform."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import CLI, ROOT, run_cli, tool_env
from hostile import application, canary, chart, git_init, link, net_guard, run_offline, write
from gitops_validate.cli import INTERNAL_ERROR


def validate(repo: Path, *args: str, env: dict | None = None):
    return run_cli("--repo", str(repo), "--no-cache", "--format", "json", *args, env=env or tool_env())


def clean(r, ok: bool = False) -> None:
    """Exit 1 or 2 (or 0 when ``ok``) with no traceback and no internal error."""
    assert r.code in ((0, 1, 2) if ok else (1, 2)), (r.code, r.out[-3000:], r.err[-3000:])
    assert "Traceback" not in r.err and INTERNAL_ERROR not in r.err, r.err[-3000:]


def rules_of(r) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in r.json["findings"]:
        out.setdefault(f["rule"], []).append(f)
    return out


# --- 3. inside the repo only ----------------------------------------------------------------

def _one_app_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    chart(repo, "apps/web")
    write(repo, "apps.yaml", application("web", "apps/web"))
    return repo


def _plant(repo: Path, where: str, target: Path) -> str:
    """Put a symlink to ``target`` at ``where`` and return the file it is reported under."""
    if where == "template":
        link(repo, "apps/web/templates/leak.yaml", target)
        return "apps/web/templates/leak.yaml"
    if where == "files-get":  # helm's .Files.Get reads any chart file; `fail` prints it
        link(repo, "apps/web/leak.txt", target)
        write(repo, "apps/web/templates/print.yaml", '{{ fail (.Files.Get "leak.txt") }}\n')
        return "apps/web/leak.txt"
    if where == "chart-dir":
        outside = target.parent / "chart"
        chart(outside.parent, "chart", templates={"x.yaml": '{{ fail (.Files.Get "id_ed25519") }}\n'})
        link(outside, "id_ed25519", target)
        link(repo, "apps/linked", outside)
        write(repo, "apps.yaml", application("web", "apps/linked"))
        return "apps.yaml"
    if where == "templates-dir":
        (repo / "apps/web/templates/cm.yaml").rename(repo / "apps/web/cm.yaml")
        (repo / "apps/web/templates").rmdir()
        link(repo, "apps/web/templates", target.parent)
        return "apps/web/templates"
    if where == "value-file":
        link(repo, "values/web.yaml", target)
        write(repo, "apps.yaml", application("web", "apps/web", ["../../values/web.yaml"]))
        return "apps.yaml"
    if where == "directory-source":
        write(repo, "plain/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n")
        link(repo, "plain/leak.yaml", target)
        write(repo, "apps.yaml", application("web", "plain"))
        return "plain/leak.yaml"
    if where == "application-file":
        link(repo, "more-apps.yaml", target)
        return "more-apps.yaml"
    if where == "cluster-yaml":
        write(repo, "clusters/dev/values.yaml", "{}\n")
        link(repo, "clusters/dev/cluster.yaml", target)
        return "clusters/dev/cluster.yaml"
    raise AssertionError(where)


@pytest.mark.parametrize("where", ["template", "files-get", "chart-dir", "templates-dir", "value-file",
                                   "directory-source", "application-file", "cluster-yaml"])
def test_symlink_out_of_the_repo_is_a_finding_and_never_read(tmp_path, where):
    secret, token = canary(tmp_path)
    repo = _one_app_repo(tmp_path)
    file = _plant(repo, where, secret)
    git_init(repo)
    r = validate(repo)
    assert token not in r.out + r.err and token.lower() not in r.out + r.err
    clean(r)
    hits = [f for f in r.json["findings"] if f["rule"] in ("argocd/out-of-bounds-symlink", "argocd/outside-repo")]
    assert any(f["file"] == file for f in hits), r.json["findings"]


def test_symlinks_inside_the_repo_are_fine(tmp_path):
    repo = _one_app_repo(tmp_path)
    write(repo, "shared/extra.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n")
    link(repo, "apps/web/templates/extra.yaml", "../../../shared/extra.yaml")
    write(repo, "values/web.yaml", "replicas: 2\n")
    link(repo, "apps/web/values-web.yaml", "../../values/web.yaml")
    write(repo, "apps.yaml", application("web", "apps/web", ["values-web.yaml"]))
    git_init(repo)
    r = validate(repo)
    assert r.code == 0, r.out + r.err
    assert r.json["summary"]["objects"] >= 3  # the Application, its ConfigMap and the linked one


def test_config_symlink_out_of_the_repo_is_exit_2_and_not_read(tmp_path):
    secret, token = canary(tmp_path)
    repo = _one_app_repo(tmp_path)
    link(repo, ".gitops-validator.yaml", secret)
    git_init(repo)
    r = validate(repo)
    assert r.code == 2 and "symlink that leaves the repository" in r.err, r.err
    assert token not in r.out + r.err


@pytest.mark.parametrize("ref, says", [
    ("http://127.0.0.1:9/schema.json", "no network"),
    ("https://schemas.example/values.json", "no network"),
    ("file:///etc/passwd", "no network, no file://"),
    ("../../outside.json", "leaves the chart"),
    ("missing.json", "cannot be read"),
    ("#/definitions/nowhere", "points at nothing"),
])
def test_schema_ref_resolves_only_inside_the_chart(tmp_path, ref, says):
    repo = _one_app_repo(tmp_path)
    write(repo, "outside.json", '{"type": "object"}\n')
    chart(repo, "apps/web", schema={"type": "object", "definitions": {},
                                    "properties": {"unused": {"$ref": ref}, "replicas": {"type": "integer"}}})
    git_init(repo)
    env, attempts = net_guard(tmp_path)
    r = validate(repo, env=env)
    clean(r)
    assert not attempts.exists(), attempts.read_text()
    f = rules_of(r)["values/schema"][0]
    assert f["file"] == "apps/web/values.schema.json" and f["line"], f
    text = (repo / f["file"]).read_text().splitlines()[f["line"] - 1]
    assert ref in text and says in f["message"], (text, f)
    assert "values/render-failed" not in rules_of(r)  # not rendered: helm would chase the $ref itself


def test_schema_ref_to_a_file_in_the_chart_works(tmp_path):
    repo = _one_app_repo(tmp_path)
    chart(repo, "apps/web", schema={"type": "object", "properties": {"replicas": {"$ref": "defs/count.json"}}})
    write(repo, "apps/web/defs/count.json", '{"type": "integer", "minimum": 1}\n')
    write(repo, "values/web.yaml", "replicas: 0\n")
    write(repo, "apps.yaml", application("web", "apps/web", ["../../values/web.yaml"]))
    git_init(repo)
    r = validate(repo)
    assert r.code == 1, r.out + r.err
    f = rules_of(r)["values/schema"][0]
    assert f["file"] == "values/web.yaml" and "minimum of 1" in f["message"], f


# --- 4. no tracebacks ---------------------------------------------------------------------------

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "web:1.0"}]
"""

WRONGLY_TYPED = {
    "spec-string": DEPLOY.replace("spec:\n  replicas", "spec: oops\nx:\n  replicas"),
    "containers-int": DEPLOY.replace('containers: [{name: web, image: "web:1.0"}]', "containers: 5"),
    "date-key": DEPLOY.replace("{app: web}}\n    spec", "{app: web, 2024-01-01: x}}\n    spec"),
    "binary-key": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  ? !!binary aGVsbG8=\n  : x\n",
    "int-and-null-keys": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {1: a, ~: b, true: c}\n",
    "list-for-map": DEPLOY.replace("metadata: {labels: {app: web}}", "metadata: {labels: [app, web]}"),
    "metadata-string": "apiVersion: v1\nkind: Service\nmetadata: oops\nspec: {ports: 5, selector: [1]}\n",
    "env-mapping": DEPLOY.replace('image: "web:1.0"}', 'image: "web:1.0", env: {a: b}, envFrom: 3, ports: x}'),
    "volumes-wrong": DEPLOY.replace("containers:", "volumes: [{name: v, projected: {sources: 7}}, 5, {secret: []}]\n      containers:"),
    "namespace-int": DEPLOY.replace("namespace: web", "namespace: 12"),
    "annotations-list": DEPLOY.replace("namespace: web}", "namespace: web, annotations: [gitops-validate/skip]}"),
    "service-ports": "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: {app: web}, ports: [{port: {a: 1}, targetPort: [1], nodePort: x}]}\n",
    "cronjob": "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: j}\nspec: {schedule: x, jobTemplate: {spec: 5}}\n",
    "configmap-url": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {URL: 'http://[::1:80', U2: 'http://a.b.c.d.e:99999'}\n",
}
#: Valid objects: keys that YAML-to-JSON (kubectl, helm, Argo CD) turns into strings, and URLs that
#: name no in-cluster Service. Exit 0 is right for them (when nothing else is wrong).
VALID = {"binary-key", "int-and-null-keys", "configmap-url"}


@pytest.mark.parametrize("name", sorted(WRONGLY_TYPED))
def test_wrongly_typed_manifest_is_a_finding_not_a_traceback(name):
    r = run_cli("--manifests", "-", "--format", "json", stdin=WRONGLY_TYPED[name])
    clean(r, ok=name in VALID)
    assert (r.json["summary"]["errors"] >= 1) is (name not in VALID), r.json


@pytest.mark.parametrize("name", sorted(WRONGLY_TYPED))
def test_wrongly_typed_manifest_text_report(name):
    r = run_cli("--manifests", "-", stdin=WRONGLY_TYPED[name])
    clean(r, ok=name in VALID)
    assert ("✗" in r.out) is (name not in VALID), r.out


def test_non_utf8_on_stdin_is_a_finding():
    p = subprocess.run([str(CLI), "--manifests", "-", "--format", "json"], input=b"kind: \xff\xfe\n",
                       capture_output=True, env=tool_env(), timeout=60)
    assert p.returncode == 1 and b"Traceback" not in p.stderr, p.stderr
    assert json.loads(p.stdout)["findings"][0]["rule"] == "yaml/encoding"


@pytest.mark.parametrize("how", ["closed", "devnull"])
def test_closed_or_empty_stdin_is_exit_2(how):
    cmd = f"exec {CLI} --manifests - <&-" if how == "closed" else f"exec {CLI} --manifests - </dev/null"
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=tool_env(), timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "standard input is" in p.stderr


ESCAPES = '{{ fail "\\x1b[2J\\x1b]0;pwned\\x07cleared the screen" }}\n'


@pytest.mark.parametrize("fmt", ["text", "github"])
def test_output_escapes_terminal_codes(tmp_path, fmt):
    repo = _one_app_repo(tmp_path)
    write(repo, "apps/web/templates/esc.yaml", ESCAPES)  # helm prints it raw in its error
    git_init(repo)
    r = run_cli("--repo", str(repo), "--no-cache", "--format", fmt, env=tool_env())
    assert r.code == 1, r.out + r.err
    assert "\x1b" not in r.out and "\x07" not in r.out, r.out
    assert "\\x1b[2J" in r.out and "cleared the screen" in r.out


def test_a_long_helm_error_is_a_bounded_message(tmp_path):
    repo = _one_app_repo(tmp_path)
    lines = "\\n".join(f"frame {i}: runtime.goexit()" for i in range(190))
    write(repo, "apps/web/templates/boom.yaml", f'{{{{ fail "{lines}" }}}}\n')
    git_init(repo)
    r = validate(repo)
    assert r.code == 1, r.out + r.err
    msg = rules_of(r)["values/render-failed"][0]["message"]
    assert "frame 3:" in msg and "frame 150:" not in msg and "more lines" in msg, msg
    assert len(msg.splitlines()) <= 13


WRONG_ARGO = {
    "spec-string": "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a, namespace: argocd}\nspec: oops\n",
    "sources-int": "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a, namespace: argocd}\nspec: {sources: 5, source: [], destination: x}\n",
    "helm-wrong": application("a", "apps/web").replace("path: apps/web", "path: apps/web\n    helm: {valueFiles: 5, parameters: {a: b}, valuesObject: [], apiVersions: 3}"),
    "destination-list": application("a", "apps/web").replace("destination: {", "destination: [{").replace("namespace: a}", "namespace: a}]"),
    "appset-wrong": "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {name: s, namespace: argocd}\nspec: {generators: [{list: 5}, {git: {repoURL: x, directories: 3}}, 7], template: []}\n",
    "appset-elements": "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {name: s, namespace: argocd}\nspec: {generators: [{list: {elements: [{name: [1]}]}}], template: {metadata: 5, spec: {source: 3}}}\n",
    "project-wrong": "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: p, namespace: argocd}\nspec: {destinations: 5, sourceRepos: {a: 1}}\n",
}


@pytest.mark.parametrize("name", sorted(WRONG_ARGO))
def test_wrongly_typed_argo_cd_objects_are_findings(tmp_path, name):
    repo = _one_app_repo(tmp_path)
    write(repo, "more.yaml", WRONG_ARGO[name])
    write(repo, "clusters/dev/cluster.yaml", "kubernetesVersion: v1.35.1\ncapacity: [1]\nexternalSecrets: oops\n")
    git_init(repo)
    r = validate(repo)
    clean(r)
    assert any(f["file"] == "more.yaml" for f in r.json["findings"]), r.json["findings"]


# --- 7. a path-scoped run sees both directions ------------------------------------------------

def test_scoped_run_reports_unchanged_apps_pointing_into_the_change(repo_copy):
    values = repo_copy / "clusters/minikube/values/todo-backend.yaml"
    values.write_text(values.read_text().replace("  port: 8001", "  port: 8002"))
    r = validate(repo_copy, str(values))
    assert r.code == 1, r.out + r.err
    f = rules_of(r)["refs/in-cluster-url"][0]
    assert f["app"] == "todo-frontend" and "todo-backend:8001" in f["message"] and "8002" in f["message"], f


def test_scoped_run_on_an_unrelated_file_stays_small(repo_copy):
    r = validate(repo_copy, str(repo_copy / "README.md"))
    assert r.code == 0 and r.json["summary"]["apps"] == 0, r.out + r.err


def test_scoped_run_on_a_deleted_value_file_checks_the_app_reading_it(repo_copy):
    values = repo_copy / "clusters/minikube/values/todo-frontend.yaml"
    values.unlink()
    r = validate(repo_copy, str(values))
    assert r.code == 1, r.out + r.err
    f = rules_of(r)["argocd/missing-value-file"][0]
    assert f["app"] == "todo-frontend", f


def _two_sided_repo(tmp_path: Path) -> Path:
    """Plain-directory apps sharing a namespace: ``front`` has a Service selecting ``back``'s pods
    and a pod reading ``back``'s ConfigMap and Secret."""
    repo = tmp_path / "repo"
    pod = ("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, labels: {app: %s}}\nspec:\n  containers:\n"
           "    - name: c\n      image: c:1.0\n      envFrom: [%s]\n")
    write(repo, "back/pod.yaml", pod % ("back", "back", ""))
    write(repo, "back/config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: back-config}\n---\n"
                                    "apiVersion: v1\nkind: Secret\nmetadata: {name: back-token}\n")
    write(repo, "front/svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: back}\n"
                                  "spec: {selector: {app: back}, ports: [{port: 80}]}\n")
    write(repo, "front/pod.yaml", pod % ("front", "front", "{configMapRef: {name: back-config}}, {secretRef: {name: back-token}}"))
    write(repo, "apps.yaml", application("back", "back").replace("namespace: back}", "namespace: shared}") + "---\n" +
          application("front", "front").replace("namespace: front}", "namespace: shared}"))
    git_init(repo)
    return repo


@pytest.mark.parametrize("change, rule", [
    (lambda repo: write(repo, "back/pod.yaml", (repo / "back/pod.yaml").read_text().replace("app: back", "app: bak")),
     "refs/service-selector"),
    (lambda repo: write(repo, "back/config.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: back-token}\n"),
     "refs/missing-configmap"),
    (lambda repo: write(repo, "back/config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: back-config}\n"),
     "secrets/missing-secret"),
    (lambda repo: (repo / "back/config.yaml").unlink(), "refs/missing-configmap"),
], ids=["selector", "configmap", "secret", "deleted-file"])
def test_scoped_run_reports_selectors_configmaps_and_secrets_pointing_into_the_change(tmp_path, change, rule):
    repo = _two_sided_repo(tmp_path)
    before = {f["rule"] for f in validate(repo).json["findings"] if f["app"] == "front"}
    assert rule not in before
    change(repo)
    r = validate(repo, "back/pod.yaml" if rule == "refs/service-selector" else "back/config.yaml")
    assert any(f["rule"] == rule and f["app"] == "front" for f in r.json["findings"]), r.json["findings"]


@pytest.mark.parametrize("path", ["argocd/deleted-app.yaml", "no/such/file.yaml"])
def test_scoped_run_on_a_path_nothing_reads_checks_everything(repo_copy, path):
    r = validate(repo_copy, path)
    assert r.code == 0, r.out + r.err
    everything = validate(repo_copy).json["summary"]["apps"]
    assert r.json["summary"]["apps"] == everything >= 3, r.json["summary"]  # never "✓ 0 apps"


# --- the acceptance test: one hostile repository, offline, nothing outside read --------------

def hostile_repo(tmp_path: Path, secret: Path) -> Path:
    repo = tmp_path / "hostile"
    chart(repo, "apps/good")
    apps = [application("good", "apps/good")]
    # out-of-bounds symlinks where helm or the validator would read
    chart(repo, "apps/tpl-link", templates={"print.yaml": '{{ fail (.Files.Get "leak.txt") }}\n'})
    link(repo, "apps/tpl-link/templates/leak.yaml", secret)
    link(repo, "apps/tpl-link/leak.txt", secret)
    apps.append(application("tpl-link", "apps/tpl-link"))
    chart(repo, "apps/vf-link")
    link(repo, "values/leak.yaml", secret)
    apps.append(application("vf-link", "apps/vf-link", ["../../values/leak.yaml"]))
    write(repo, "plain/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n")
    link(repo, "plain/leak.yaml", secret)
    apps.append(application("dir-link", "plain"))
    outside_chart = secret.parent / "chart"
    chart(secret.parent, "chart", templates={"x.yaml": '{{ fail (.Files.Get "key") }}\n'})
    link(outside_chart, "key", secret)
    link(repo, "apps/chart-link", outside_chart)
    apps.append(application("chart-link", "apps/chart-link"))
    link(repo, "argocd/leak-app.yaml", secret)
    link(repo, "clusters/evil/cluster.yaml", secret)
    # $refs that would leave the chart: network, file://, a path outside, a dangling pointer
    for name, ref in (("ref-http", "http://127.0.0.1:9/x.json"), ("ref-file", secret.as_uri()),
                      ("ref-up", "../../../outside/id_ed25519"), ("ref-pointer", "#/nowhere")):
        chart(repo, f"apps/{name}", schema={"type": "object", "properties": {"replicas": {"$ref": ref}}})
        apps.append(application(name, f"apps/{name}"))
    # wrongly typed input everywhere
    write(repo, "plain-typed/objects.yaml", "---\n".join(WRONGLY_TYPED.values()))
    apps.append(application("typed", "plain-typed"))
    for i, doc in enumerate(WRONG_ARGO.values()):
        write(repo, f"argocd/wrong-{i}.yaml", doc.replace("name: a,", f"name: wrong-{i},"))
    write(repo, "clusters/dev/cluster.yaml", "kubernetesVersion: v1.35.1\ncapacity: [1]\nexternalSecrets: oops\n")
    # terminal escape codes and a 190-line helm error
    chart(repo, "apps/escape", templates={"esc.yaml": ESCAPES})
    apps.append(application("escape", "apps/escape"))
    lines = "\\n".join(f"frame {i}" for i in range(190))
    chart(repo, "apps/long-error", templates={"boom.yaml": f'{{{{ fail "{lines}" }}}}\n'})
    apps.append(application("long-error", "apps/long-error"))
    write(repo, "argocd/apps.yaml", "---\n".join(apps))
    git_init(repo)
    return repo


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github"])
def test_hostile_repository(tmp_path, fmt):
    secret, token = canary(tmp_path)
    repo = hostile_repo(tmp_path, secret)
    env, attempts = net_guard(tmp_path)
    r = run_offline("--repo", str(repo), "--no-cache", "--format", fmt, env=env)
    clean(r)
    assert r.code == 1
    out = r.out + r.err
    assert token not in out and token.lower() not in out, "read outside the repository"
    assert not attempts.exists(), f"network connections attempted: {attempts.read_text()}"
    assert "\x1b" not in r.out
    if fmt == "text":
        assert "frame 5" in r.out and "frame 150" not in r.out
        return
    if fmt == "github":
        return
    doc = json.loads(r.out)
    if fmt == "json":
        rules = rules_of(r)
        assert {"argocd/out-of-bounds-symlink", "values/schema", "schema/invalid", "values/render-failed"} <= set(rules)
        linked = {f["file"] for f in rules["argocd/out-of-bounds-symlink"]}
        assert {"apps/tpl-link/templates/leak.yaml", "apps/tpl-link/leak.txt", "plain/leak.yaml",
                "argocd/leak-app.yaml", "clusters/evil/cluster.yaml"} <= linked, linked
        assert any(f["app"] == "vf-link" for f in rules["argocd/out-of-bounds-symlink"])
        assert len([f for f in rules["values/schema"] if "$ref" in f["message"]]) == 4
        assert doc["summary"]["errors"] >= 10


def test_hostile_repository_with_the_config_linked_out(tmp_path):
    secret, token = canary(tmp_path)
    repo = hostile_repo(tmp_path, secret)
    link(repo, ".gitops-validator.yaml", secret)
    env, attempts = net_guard(tmp_path)
    r = run_offline("--repo", str(repo), "--no-cache", env=env)
    assert r.code == 2 and token not in r.out + r.err and "Traceback" not in r.err, r.err
    assert not attempts.exists()


def test_this_repository_is_unchanged_by_the_guards():
    r = validate(ROOT)
    assert r.code == 0 and r.json["summary"]["apps"] == 4, r.out + r.err  # 3 apps and the Argo CD install
