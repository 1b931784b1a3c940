"""The incremental pre-commit path changes no finding (issue 13).

A path-scoped run parses only the files that may hold an Argo CD object (plus the changed ones),
computes its scope once, and resolves each repo path once. On a generated repo with planted
cross-app and single-object defects (test_resultcache.plant), the JSON findings are those of the
code before these changes (commit BEFORE, from `git archive`), whole-repo and path-scoped, with
and without the cache, including a change that breaks a cross-app reference from an app outside
the scope and one that fixes one.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import synth
from conftest import ROOT, tool_env
from gitops_validate import config as config_mod, discover
from gitops_validate.rules import REGISTRY
from test_resultcache import CHANGED, cache_env, edit, plant, validate

#: The last commit before the incremental discovery and scope (issue 13, deliverable 2).
BEFORE = "54c0c41"


def code_at(commit: str, code: Path) -> Path:
    """The validator of ``commit`` (``git archive``) under ``code``, importable as gitops_validate."""
    out = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit, "validator", "versions"],
                         capture_output=True, timeout=60)
    if out.returncode != 0:
        pytest.fail(f"cannot read commit {commit} (a shallow clone?): {out.stderr.decode()[-300:]}")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        tar.extractall(code, filter="data")
    (code / "validator").rename(code / "gitops_validate")   # data/versions links to ../../versions
    return code


@pytest.fixture(scope="module")
def before_code(tmp_path_factory) -> Path:
    return code_at(BEFORE, tmp_path_factory.mktemp("before"))


def old(code: Path, repo: Path, *args: str) -> tuple[int, list]:
    """The exit code and JSON findings of the validator in ``code`` (``code_at``) on ``repo``.

    These comparisons are of findings, not of the old code's cold path (the new code's cold runs
    are compared with them where a test is about that), so the old code runs with its own render
    cache, one per extracted commit: helm and the Argo CD install's kustomize build run once per
    input, not once per comparison. And a run on the same inputs (what git lists, every file's
    path, mode and content, the link targets; an argument naming a file by its content) is run
    once per worker: the same generated repo is compared in many tests. A result that names the
    repo's or an argument's path is not shared (another test's would name its own)."""
    key = _inputs_key(code, repo, args)
    if key in _OLD:
        return copy.deepcopy(_OLD[key])
    env = tool_env() | {"PYTHONPATH": str(code), "GITOPS_VALIDATE_CACHE": str(code.parent / f"{code.name}-cache")}
    p = subprocess.run([sys.executable, "-c", "import sys; from gitops_validate.cli import main; sys.exit(main(sys.argv[1:]))",
                        "--repo", str(repo), "--format", "json", *args],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 1), p.stderr
    result = p.returncode, json.loads(p.stdout)["findings"]
    paths = [str(repo), os.path.realpath(repo), *(a for a in args if os.path.isabs(a))]
    if not any(x in p.stdout for x in paths):
        _OLD[key] = result
    return copy.deepcopy(result)


#: old()'s results by code and inputs (_inputs_key), in this worker
_OLD: dict[str, tuple[int, list]] = {}


def _inputs_key(code: Path, repo: Path, args: tuple[str, ...]) -> str:
    """A digest of everything ``old`` reads: the code's commit (its folder), git's file list, and
    every path under ``repo`` (``.git`` aside) with its mode and content or link target."""
    h = hashlib.sha256(json.dumps([str(code), [f"file:{_file_sha(a)}" if os.path.isabs(a) and os.path.isfile(a) else a
                                                for a in args]]).encode())
    ls = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "-co", "--exclude-standard"],
                        capture_output=True, timeout=60)
    h.update(ls.stdout + b"\0\0")
    stack = [repo]
    while stack:
        d = stack.pop()
        for e in sorted(os.scandir(d), key=lambda e: e.name):
            rel = os.path.relpath(e.path, repo).encode()
            if e.is_symlink():
                h.update(b"L" + rel + b"\0" + os.readlink(e.path).encode() + b"\0")
            elif e.is_dir():
                if rel != b".git":
                    h.update(b"D" + rel + b"\0")
                    stack.append(Path(e.path))
            else:
                h.update(b"F" + rel + b"\0" + oct(e.stat().st_mode).encode() + _file_sha(e.path).encode() + b"\0")
    return h.hexdigest()


def _file_sha(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return plant(synth.make_repo(tmp_path / "repo", 6, defects=True))


def apps_of(findings: list) -> set:
    return {f["app"] for f in findings}


def test_whole_repo_and_path_scoped_findings_are_those_of_before(repo, tmp_path, before_code):
    env = cache_env(tmp_path)
    whole = old(before_code, repo)
    assert validate(repo, env=env) == whole          # cold
    assert validate(repo, env=env) == whole          # warm
    edit(repo, CHANGED, "replicaCount: 2", "replicaCount: 3")   # new content: one render
    expected = old(before_code, repo, CHANGED)
    assert "frontend3" in apps_of(expected[1]) and "refs/in-cluster-url" in {f["rule"] for f in expected[1]}
    assert validate(repo, CHANGED, env=env) == expected
    assert validate(repo, CHANGED, "--no-cache") == expected


@pytest.mark.parametrize("change", ["breaks", "fixes"])
def test_a_change_to_a_reference_target_is_seen_from_the_unchanged_app(repo, tmp_path, before_code, change):
    """backend0's Service port moves away from what frontend1 calls (outside the scope: a new
    finding on frontend1); backend2's moves to the wrong port frontend3 calls (its finding goes)."""
    env = cache_env(tmp_path)
    validate(repo, env=env)
    backend, frontend = ("backend0", "frontend1") if change == "breaks" else ("backend2", "frontend3")
    rel = f"clusters/minikube/values/{backend}.yaml"
    edit(repo, rel, "port: 8001", "port: 8005" if change == "breaks" else "port: 8002")
    expected = old(before_code, repo, rel)
    url_apps = {f["app"] for f in expected[1] if f["rule"] == "refs/in-cluster-url"}
    assert (frontend in url_apps) == (change == "breaks"), expected
    assert frontend in apps_of(expected[1]) or change == "fixes"
    assert validate(repo, rel, env=env) == expected
    assert validate(repo, rel, "--no-cache") == expected
    # and the whole repo agrees with it on those apps
    _, full = old(before_code, repo)
    assert expected[1] == [f for f in full if f["app"] in apps_of(expected[1]) or f["file"] == rel]


# --- discovery: which files a path-scoped run may leave unparsed ---------------------------------

APP = """apiVersion: {api}
kind: Application
metadata: {{name: {name}, namespace: argocd}}
spec:
  project: default
  source: {{repoURL: https://github.com/todo-chatbot/todo-gitops.git, path: apps/todo-backend}}
  destination: {{server: https://kubernetes.default.svc, namespace: todo}}
"""

#: Every way to write an Application's apiVersion that YAML reads as ``argoproj.io/v1alpha1``.
SPELLINGS = {
    "plain": "argoproj.io/v1alpha1",
    "hex escape": '"\\x61rgoproj.io/v1alpha1"',
    "unicode escape": '"\\u0061rgoproj.io/v1alpha1"',
    "escaped line break": '"argo\\\n  proj.io/v1alpha1"',
    "tagged": "!!str argoproj.io/v1alpha1",
}


def test_every_spelling_of_an_argo_cd_object_is_parsed_in_a_path_scoped_run(repo):
    for i, (what, api) in enumerate(SPELLINGS.items()):
        (repo / f"argocd/extra{i}.yaml").write_text(APP.format(api=api, name=f"extra{i}"))
    (repo / "argocd/bom.yaml").write_bytes(b"\xef\xbb\xbf" + APP.format(api="argoproj.io/v1alpha1", name="bom").encode())
    (repo / "argocd/flow.yaml").write_text('{"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", '
                                           '"metadata": {"name": "flow", "namespace": "argocd"}}\n')
    cfg = config_mod.load(repo / ".gitops-validator.yaml", set(REGISTRY))
    full = discover.discover(repo, cfg)
    scoped = discover.discover(repo, cfg, changed={"clusters/minikube/values/backend0.yaml"})
    names = [(m.kind, m.name, m.file) for m in full.argo]
    assert {f"extra{i}" for i in range(len(SPELLINGS))} | {"bom", "flow"} <= {n for _, n, _ in names}
    assert [(m.kind, m.name, m.file) for m in scoped.argo] == names
    assert not full.findings


def test_the_byte_test_keeps_what_yaml_could_read_as_argoproj():
    assert not discover.may_hold_argo(b"replicaCount: 2\nimage: {tag: '1.0'}\n")
    for raw in [b"apiVersion: argoproj.io/v1alpha1", b'apiVersion: "\\x61rgoproj.io/v1"',
                "apiVersion: argoproj.io/v1alpha1".encode("utf-16"), b"\xef\xbb\xbfapiVersion: argoproj.io/v1"]:
        assert discover.may_hold_argo(raw), raw


def test_a_skipped_file_with_a_syntax_error_is_reported_when_it_is_the_changed_one(repo, tmp_path, before_code):
    """The skip never hides a finding of a changed file; nor, when the scope becomes the whole
    repository (a deleted path, cluster.yaml), one of any other file."""
    broken = "clusters/minikube/values/notes.yaml"
    (repo / broken).write_text("a: [1, 2\n")
    for args in ([broken], ["clusters/minikube/values/backend0.yaml"], ["clusters/minikube/gone.yaml"],
                 ["clusters/minikube/cluster.yaml"]):
        expected = old(before_code, repo, *args)
        assert validate(repo, *args, env=cache_env(tmp_path)) == expected, args
        assert (broken in {f["file"] for f in expected[1]}) == (args[0] != "clusters/minikube/values/backend0.yaml"), args


def test_within_agrees_with_inside_on_every_kind_of_link(tmp_path):
    """confine.Within (folders resolved once) says what render.inside says, path by path."""
    from gitops_validate import confine
    from gitops_validate.render import inside
    outside = tmp_path / "outside"
    (outside / "d").mkdir(parents=True)
    (outside / "secret.yaml").write_text("a: 1\n")
    repo = tmp_path / "repo"
    (repo / "values" / "deep").mkdir(parents=True)
    (repo / "values" / "ok.yaml").write_text("a: 1\n")
    (repo / "values" / "out.yaml").symlink_to(outside / "secret.yaml")
    (repo / "values" / "in.yaml").symlink_to(repo / "values" / "ok.yaml")
    (repo / "linkdir").symlink_to(outside / "d")
    (repo / "indir").symlink_to(repo / "values")
    via_link = tmp_path / "via"
    via_link.symlink_to(repo)
    rels = ["values/ok.yaml", "values/out.yaml", "values/in.yaml", "values/missing.yaml", "linkdir/x.yaml",
            "linkdir", "indir/ok.yaml", "indir/out.yaml", "values/../values/ok.yaml", "values/..", "..", "../outside",
            ".", "values/deep/../../../outside/secret.yaml", str(outside / "secret.yaml")]
    for root in (repo, via_link):
        within = confine.Within(root)
        for rel in rels:
            assert within(rel) == inside(root, root / rel), (root, rel)
            assert within(rel) == inside(root, root / rel), (root, rel)   # the remembered answer too
    assert not confine.Within(repo)("values/out.yaml") and confine.Within(repo)("values/in.yaml")
