"""Kustomize rendered as Argo CD v3.5.1 does (the real kustomize v5.8.1 from `make setup`): objects
checked like Helm ones with locations in the kustomization tree, the Application's kustomize
options applied, user errors as findings, nothing fetched, and a misbehaving kustomize is exit 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from argo_fixture import make_repo, plant
from conftest import TOOLS, VERSIONS, run_cli, tool_env
from gitops_validate import kustomize, tools


def validate(repo: Path, *args: str, env: dict | None = None):
    return run_cli("--repo", str(repo), "--format", "json", *args, env=env or tool_env())


@pytest.fixture
def fx(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "fx")


def errors(r, rule: str) -> list[dict]:
    return [f for f in r.json["findings"] if f["rule"] == rule]


def test_kustomize_is_the_version_argo_cd_ships():
    out = subprocess.run([str(TOOLS / "kustomize"), "version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == VERSIONS["KUSTOMIZE_VERSION"] == "v5.8.1"


def test_objects_are_checked_at_their_line_in_the_base(fx):
    line = plant(fx, "kust/base/deployment.yaml", "ghcr.io/acme/web:1.4.2", "ghcr.io/acme/web:latest")
    r = validate(fx)
    assert r.code == 1
    hits = errors(r, "images/latest-tag")
    # both the app-of-apps' Kustomize child and the ApplicationSet's app build this base; namePrefix applied
    assert {(f["app"], f["file"], f["line"], f["object"]["name"]) for f in hits} == {
        ("kapp", "kust/base/deployment.yaml", line, "a-web"), ("set-c", "kust/base/deployment.yaml", line, "web")}
    # pre-commit given only the base file: both apps that read it
    r = validate(fx, "kust/base/deployment.yaml")
    assert {f["app"] for f in errors(r, "images/latest-tag")} == {"kapp", "set-c"}


def test_application_kustomize_options_are_applied(tmp_path, fx):
    """What Argo CD's `kustomize edit` calls do, on the real kustomize, without touching the repo."""
    opts = {"namePrefix": "p-", "nameSuffix": "-s", "namespace": "web-x", "images": ["ghcr.io/acme/web:2.0.0"],
            "commonLabels": {"team": "$ARGOCD_APP_NAME"}, "replicas": [{"name": "web", "count": 3}]}
    req = kustomize.KustomizeRequest(app="kapp", path="kust/overlay", namespace="web-a", options=opts,
                                     env={"ARGOCD_APP_NAME": "kapp"})
    before = (fx / "kust/overlay/kustomization.yaml").read_text()
    r = kustomize.render(fx, req, str(TOOLS / "kustomize"), None)
    assert r.findings == []
    [m] = r.manifests
    assert (m.name, m.namespace, m.doc["spec"]["replicas"]) == ("p-web-s", "web-x", 3)
    assert m.doc["metadata"]["labels"]["team"] == "kapp"
    assert m.doc["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/acme/web:2.0.0"
    assert "annotations" not in m.doc["metadata"]  # the origin annotation used for locations is gone
    assert (m.file, m.line) == ("kust/base/deployment.yaml", 1)
    assert (fx / "kust/overlay/kustomization.yaml").read_text() == before


def test_a_kustomize_error_is_a_finding_on_the_kustomization(fx):
    plant(fx, "kust/overlay/kustomization.yaml", "../base", "../bsae")
    r = validate(fx)
    assert r.code == 1
    hits = errors(r, "argocd/kustomize-failed")
    assert {f["app"] for f in hits} == {"kapp", "set-c"}
    assert all(f["file"] == "kust/overlay/kustomization.yaml" and "bsae" in f["message"] for f in hits)
    assert str(fx) not in r.out  # no temporary or absolute paths leak


def test_a_remote_base_is_a_warning_and_never_fetched(fx):
    line = plant(fx, "kust/overlay/kustomization.yaml", "  - ../base\n",
                 "  - ../base\n  - https://github.com/acme/base//deploy?ref=v1.2.0\n") + 1
    r = validate(fx)
    assert r.code == 0, r.out + r.err
    hits = errors(r, "argocd/kustomize-remote")
    assert hits and all(f["severity"] == "warning" and f["file"] == "kust/overlay/kustomization.yaml"
                        and f["line"] == line for f in hits)


def test_a_resource_outside_the_repo_is_refused(fx):
    plant(fx, "kust/overlay/kustomization.yaml", "../base", "../../../etc")
    r = validate(fx)
    assert r.code == 1
    assert {f["file"] for f in errors(r, "argocd/outside-repo")} == {"kust/overlay/kustomization.yaml"}


def test_a_symlink_leaving_the_repo_is_not_followed(fx, tmp_path):
    secret = tmp_path / "outside.yaml"
    secret.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leaked}\n")
    (fx / "kust/base/leak.yaml").symlink_to(secret)
    line = plant(fx, "kust/base/kustomization.yaml", "  - deployment.yaml\n", "  - deployment.yaml\n  - leak.yaml\n") + 1
    r = validate(fx)
    assert r.code == 1
    hits = errors(r, "argocd/outside-repo")
    assert {(f["file"], f["line"]) for f in hits} == {("kust/base/kustomization.yaml", line)}
    assert "leaked" not in r.out


def test_an_option_not_applied_is_a_warning(fx):
    plant(fx, "apps-chart/templates/apps.yaml", "namePrefix: a-", "namePrefix: a-\n      kubeVersion: '1.35'")
    r = validate(fx)
    assert r.code == 0
    [f] = errors(r, "argocd/kustomize-option-ignored")
    assert f["app"] == "kapp" and "kubeVersion" in f["message"]


@pytest.mark.parametrize("script, says", [
    ("kill -SEGV $$", "killed by SIGSEGV"),
    ("echo 'panic: runtime error' >&2; exit 2", "panic"),
    ("printf '{[ not: yaml'", "not YAML"),
    ("printf -- '- a list\\n'", "not a mapping"),
])
def test_a_misbehaving_kustomize_is_exit_2(fx, tmp_path, script, says):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("helm", "kubeconform"):
        (bindir / tool).symlink_to(TOOLS / tool)
    fake = bindir / "kustomize"
    fake.write_text(f"#!/bin/sh\ncase \"$1\" in build) {script} ;; *) exit 0 ;; esac\n")
    fake.chmod(0o755)
    env = tool_env(str(bindir))
    r = validate(fx, "--no-cache", env=env)
    assert r.code == 2 and "kustomize" in r.err and says in r.err, (r.code, r.err, r.out)


# --- this repository's Argo CD install (clusters/minikube/cluster.yaml argocdInstall) -------------

def test_the_argocd_install_is_rendered_from_the_pinned_release(repo_copy):
    r = validate(repo_copy, "--no-cache")
    assert r.code == 0, r.out + r.err
    plant(repo_copy, "argocd/kustomization.yaml", "argo-cd/v3.5.1/", "argo-cd/v3.4.0/")
    r = validate(repo_copy)
    [f] = errors(r, "argocd/kustomize-remote")
    assert f["severity"] == "error" and f["file"] == "argocd/kustomization.yaml" and "make setup" in f["message"]
    assert f["line"] == 10


def test_a_bogus_field_in_an_install_patch_points_at_its_line(repo_copy):
    line = plant(repo_copy, "argocd/patches/argocd-server-nodeport.yaml", "      nodePort: 30443\n",
                 "      nodePort: 30443\n      bogus: 1\n") + 1
    for paths in ((), ("argocd/patches/argocd-server-nodeport.yaml",)):
        r = validate(repo_copy, *paths)
        assert r.code == 1
        [f] = errors(r, "schema/invalid")
        assert (f["file"], f["line"], f["app"]) == ("argocd/patches/argocd-server-nodeport.yaml", line, "argocd-install")
        assert "bogus" in f["message"]


def test_the_frontend_on_argo_cds_nodeport_is_refused(repo_copy):
    line = plant(repo_copy, "clusters/minikube/values/todo-frontend.yaml", "nodePort: 30000", "nodePort: 30080")
    for paths in ((), ("clusters/minikube/values/todo-frontend.yaml",)):
        r = validate(repo_copy, *paths)
        assert r.code == 1
        [f] = errors(r, "refs/nodeport")
        assert (f["file"], f["line"]) == ("clusters/minikube/values/todo-frontend.yaml", line)
        assert "argocd/argocd-server" in f["message"]


def test_a_kustomize_that_hangs_is_stopped(fx, tmp_path, monkeypatch):
    fake = tmp_path / "kustomize"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(kustomize, "KUSTOMIZE_TIMEOUT", 1)
    req = kustomize.KustomizeRequest(app="kapp", path="kust/overlay", namespace="web-a")
    with pytest.raises(tools.ToolFailed, match="did not finish within 1s"):
        kustomize.render(fx, req, str(fake), None)


@pytest.mark.parametrize("damage", [None, "garbage", "truncated", "not an object"])
def test_the_installs_kept_build_gives_the_same_objects_and_findings(repo_copy, tmp_path, damage):
    """A warm run reads the install's objects kept as built, each with its JSON (no second
    json.dumps for kubeconform's verdict key): the same objects, files, lines and JSON as a fresh
    build, and the same findings (a bogus field in a patch: its line; a NodePort clash); a damaged
    copy is built again, never trusted."""
    from gitops_validate import pipeline, schema
    bogus = plant(repo_copy, "argocd/patches/argocd-server-nodeport.yaml", "      nodePort: 30443\n",
                  "      nodePort: 30443\n      bogus: 1\n") + 1
    plant(repo_copy, "clusters/minikube/values/todo-frontend.yaml", "nodePort: 30000", "nodePort: 30080")
    req = kustomize.KustomizeRequest(app=pipeline.INSTALL_APP, path="argocd", namespace="", cluster="minikube",
                                     argocd_dir=TOOLS.parent / "argocd")
    cache = tmp_path / "cache"
    fresh = kustomize.render(repo_copy, req, str(TOOLS / "kustomize"), None)
    first = kustomize.render(repo_copy, req, str(TOOLS / "kustomize"), cache)
    [kept] = list(cache.glob("*.kustomize-built"))
    if damage == "garbage":
        kept.write_text("{not json")
    elif damage == "truncated":
        kept.write_text(kept.read_text()[: kept.stat().st_size // 2])
    elif damage == "not an object":
        lines = kept.read_text().split("\n")
        kept.write_text("\n".join(lines[:2] + ["[1, 2]"] + lines[3:]))
    again = kustomize.render(repo_copy, req, str(TOOLS / "kustomize"), cache)
    assert first.cached is False and again.cached is True
    for r in (first, again):
        assert [(m.doc, m.file, m.line, m.app, m.cluster) for m in r.manifests] == \
            [(m.doc, m.file, m.line, m.app, m.cluster) for m in fresh.manifests]
        assert [m.yaml.line_of(("spec",)) if m.yaml else None for m in r.manifests] == \
            [m.yaml.line_of(("spec",)) if m.yaml else None for m in fresh.manifests]
    if damage:  # built again from the build's output, and kept anew
        assert all(m.json_text is None for m in again.manifests)
        again = kustomize.render(repo_copy, req, str(TOOLS / "kustomize"), cache)
    assert all(m.json_text == schema.as_json(m.doc) for m in again.manifests)
    # and through the CLI: cold, warm (the kept build), --no-cache: the same findings
    env = tool_env() | {"GITOPS_VALIDATE_CACHE": str(tmp_path / "cli-cache")}
    runs = [validate(repo_copy, env=env) for _ in range(2)] + [validate(repo_copy, "--no-cache", env=env)]
    assert {r.code for r in runs} == {1}
    assert runs[0].json["findings"] == runs[1].json["findings"] == runs[2].json["findings"]
    [f] = errors(runs[1], "schema/invalid")
    assert (f["file"], f["line"], f["app"]) == ("argocd/patches/argocd-server-nodeport.yaml", bogus, "argocd-install")
    assert errors(runs[1], "refs/nodeport")
    assert list((tmp_path / "cli-cache").glob("*.kustomize-built"))
