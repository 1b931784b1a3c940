"""The per-app result cache (resultcache.py) changes no finding, and is never trusted when stale.

On a generated repo with planted defects (cross-app ones from tests/synth.py, plus single-object
ones planted here), the JSON findings are the same for the code before the cache (commit BEFORE,
from `git archive`), --no-cache, a cold and a warm run, and a path-scoped run of one changed
values file matches the same apps' findings of a full run. A change to a chart file, a value
file, the config or the validator's source gives the findings a run without cache gives; a
corrupt entry is recomputed, not trusted, with no traceback.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

import synth
from conftest import ROOT, run_cli, tool_env
from gitops_validate import rendercache, resultcache

#: The last commit before the result cache, the lazy value indexes and the static determinism test
#: (the merge of the accuracy and --manifests branches, which the result cache was merged onto).
BEFORE = "b31a244"
CHANGED = "clusters/minikube/values/frontend3.yaml"   # a frontend with a planted wrong backend port


def plant(repo: Path) -> Path:
    """Single-object defects on top of synth's cross-app ones (each rule reads only its object)."""
    edit(repo, "clusters/minikube/values/backend2.yaml", "pullPolicy: IfNotPresent", "pullPolicy: Always")
    edit(repo, "clusters/minikube/values/backend4.yaml", "image:\n", "image:\n  repository: quay.io/todo/todo-backend\n")
    subprocess.run(["git", "-C", str(repo), "commit", "-qam", "plant", "--no-verify"], check=True,
                   env=tool_env() | {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                                     "GIT_COMMITTER_EMAIL": "t@t"})
    return repo


def edit(repo: Path, rel: str, old: str, new: str) -> None:
    p = repo / rel
    text = p.read_text()
    assert old in text, f"{old!r} not in {rel}"
    p.write_text(text.replace(old, new, 1))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return plant(synth.make_repo(tmp_path / "repo", 6, defects=True))


def cache_env(tmp_path: Path, name: str = "cache") -> dict:
    return tool_env() | {"GITOPS_VALIDATE_CACHE": str(tmp_path / name)}


def validate(repo: Path, *args: str, env: dict | None = None) -> tuple[int, list]:
    r = run_cli("--repo", str(repo), "--format", "json", *args, env=env or tool_env())
    assert r.code in (0, 1), r.out + r.err
    assert "Traceback" not in r.err, r.err
    return r.code, r.json["findings"]


def before(repo: Path, tmp_path: Path) -> tuple[int, list]:
    """The CLI of commit BEFORE on ``repo``, without cache."""
    out = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", BEFORE, "validator"],
                         capture_output=True, timeout=60)
    if out.returncode != 0:
        pytest.fail(f"cannot read commit {BEFORE} (a shallow clone?): {out.stderr.decode()[-300:]}")
    code = tmp_path / "before"
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        tar.extractall(code, filter="data")
    (code / "validator").rename(code / "gitops_validate")
    p = subprocess.run([sys.executable, "-c", "import sys; from gitops_validate.cli import main; sys.exit(main(sys.argv[1:]))",
                        "--repo", str(repo), "--format", "json", "--no-cache"],
                       env=tool_env() | {"PYTHONPATH": str(code)}, capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout)["findings"]


def entries(tmp_path: Path, name: str = "cache") -> list[Path]:
    return sorted((tmp_path / name).glob(f"*{resultcache.SUFFIX}"))


def test_findings_identical_before_no_cache_cold_warm(repo, tmp_path):
    env = cache_env(tmp_path)
    old = before(repo, tmp_path)
    rules = {f["rule"] for f in old[1]}
    assert old[0] == 1 and "refs/nodeport" in rules, old   # cross-app
    assert len(rules) >= 4, rules                           # the planted single-object defects too
    assert validate(repo, "--no-cache") == old
    assert validate(repo, env=env) == old        # cold: renders, checks, stores
    assert len(entries(tmp_path)) == 7           # the root app-of-apps and its 6 apps
    assert validate(repo, env=env) == old        # warm: from the result cache
    assert validate(repo, env=env) == old


def test_a_path_scoped_run_matches_the_full_run(repo, tmp_path):
    env = cache_env(tmp_path)
    validate(repo, env=env)
    (repo / CHANGED).write_text((repo / CHANGED).read_text() + "# edited\n")
    code, scoped = validate(repo, CHANGED, env=env)
    assert (code, scoped) == validate(repo, CHANGED, "--no-cache")
    _, full = validate(repo, "--no-cache")
    apps = {f["app"] for f in scoped}
    assert "frontend3" in apps and len(apps) < 7, scoped
    assert scoped == [f for f in full if f["app"] in apps or f["file"] == CHANGED]


@pytest.mark.parametrize("change", ["chart", "values", "config", "values, same size and mtime",
                                    "values, replaced by rename", "values, a touch"])
def test_a_changed_input_is_never_served_stale(repo, tmp_path, change):
    env = cache_env(tmp_path)
    if "," in change:   # the file digests the render keys use come from the memo (rendercache.digest)
        time.sleep(rendercache.RACY_NS / 1e9 + 0.2)
    first = validate(repo, env=env)
    if "," in change:
        assert validate(repo, env=env) == first   # the memo written, and trusted from here on
    values = repo / "clusters/minikube/values/backend2.yaml"
    st = values.stat()
    if change == "values, same size and mtime":   # pullPolicy: Never, as long as Always
        edit(repo, "clusters/minikube/values/backend2.yaml", "pullPolicy: Always", "pullPolicy: Never ")
        os.utime(values, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert values.stat().st_size == st.st_size and values.stat().st_mtime_ns == st.st_mtime_ns
    elif change == "values, replaced by rename":
        new = values.with_suffix(".new")
        new.write_text(values.read_text().replace("pullPolicy: Always", "pullPolicy: Never "))
        os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(new, values)
    elif change == "values, a touch":   # nothing changes: the same findings, from the memo or not
        os.utime(values)
        assert validate(repo, env=env) == first == validate(repo, "--no-cache")
        return
    elif change == "chart":   # a new schema finding on every backend
        edit(repo, "apps/todo-backend/templates/deployment.yaml", "automountServiceAccountToken: false\n",
             "automountServiceAccountToken: false\n      bogusField: 1\n")
    elif change == "values":   # a single-object finding the cache held for this app goes away
        edit(repo, "clusters/minikube/values/backend2.yaml", "pullPolicy: Always", "pullPolicy: IfNotPresent")
    else:   # the registry rule reads only the object and the config
        edit(repo, ".gitops-validator.yaml", "  - docker.io/library/\n", "  - docker.io/library/\n  - quay.io/todo/\n")
    after = validate(repo, env=env)
    assert after != first
    assert after == validate(repo, "--no-cache")
    assert after == validate(repo, env=env)


def test_a_changed_validator_source_invalidates_every_entry(repo, tmp_path, monkeypatch):
    """The key holds a digest of the package's files: any edit changes it, without a version bump."""
    pkg = tmp_path / "pkg"
    shutil.copytree(Path(resultcache.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    digest = resultcache.source_digest(pkg)
    assert resultcache.source_digest(pkg) == digest
    rule = pkg / "rules" / "images.py"
    rule.write_text(rule.read_text() + "\n# a comment is a change too\n")
    assert resultcache.source_digest(pkg) != digest
    assert resultcache.code_digest() == resultcache.source_digest(Path(resultcache.__file__).parent)

    from gitops_validate import config as config_mod, pipeline, schema
    from gitops_validate.rules import REGISTRY
    for k, v in tool_env().items():
        monkeypatch.setenv(k, v)
    cfg = config_mod.load(repo / ".gitops-validator.yaml", set(REGISTRY))
    sent: list[int] = []
    real = schema.check_objects
    monkeypatch.setattr(schema, "check_objects", lambda batch, *a: sent.append(len(batch)) or real(batch, *a))

    def run() -> list:
        sent.clear()
        return pipeline.run(pipeline.Options(repo=repo, config=cfg, cache_dir=tmp_path / "cache")).findings

    cold = run()
    cold_sent = sum(sent)
    assert run() == cold and sum(sent) < cold_sent / 4   # warm: kubeconform sees only what no entry holds
    monkeypatch.setattr(resultcache, "code_digest", lambda *memo: "another validator")
    assert run() == cold and sum(sent) == cold_sent      # every entry missed


def test_the_remembered_source_digest_follows_edits_and_waits_out_the_racy_window(tmp_path, monkeypatch):
    """``code_digest``'s memo (by the files' stamps) is written only once every file is 2 s old,
    and any edit afterwards (same size, mtime put back) is hashed again."""
    from gitops_validate.rendercache import RACY_NS, RenderCache
    pkg = tmp_path / "pkg"
    shutil.copytree(Path(resultcache.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    memo = RenderCache(tmp_path / "cache")
    remembered = lambda: sorted(p.name for p in (tmp_path / "cache").glob("*" + resultcache.CODE_SUFFIX))
    assert resultcache.stamped_digest(pkg, memo) == resultcache.source_digest(pkg)
    assert remembered() == []                                 # files just written: racy, not kept
    real_now = resultcache.time.time_ns
    monkeypatch.setattr(resultcache.time, "time_ns", lambda: real_now() + 2 * RACY_NS)
    digest = resultcache.stamped_digest(pkg, memo)
    assert digest == resultcache.source_digest(pkg) and len(remembered()) == 1
    rule = pkg / "rules" / "images.py"
    st = rule.stat()
    text = rule.read_text()
    rule.write_text(text.replace("image", "imagE", 1))        # same size
    os.utime(rule, ns=(st.st_atime_ns, st.st_mtime_ns))       # mtime put back; ctime moves
    assert resultcache.stamped_digest(pkg, memo) == resultcache.source_digest(pkg) != digest


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong shape", "foreign class"])
def test_a_damaged_entry_is_recomputed_not_trusted(repo, tmp_path, damage):
    env = cache_env(tmp_path)
    good = validate(repo, env=env)
    for p in entries(tmp_path):
        text = p.read_text()
        p.write_text({"garbage": "\x00not json",
                      "truncated": text[: len(text) // 2],
                      # findings emptied: trusting this would drop every cached finding
                      "wrong shape": json.dumps({**json.loads(text), "objects": [{"doc": 1}]}),
                      "foreign class": text.replace('"@": "Finding"', '"@": "Path"').replace('"@": "ObjectRef"', '"@": "Path"'),
                      }[damage])
    assert validate(repo, env=env) == good
    for p in entries(tmp_path):   # rewritten with what was recomputed
        assert resultcache.Entry.load(p.read_text()) is not None
    assert validate(repo, env=env) == good


# --- kubeconform's verdicts, per object (schema.check_objects with the result cache) -----------

WIDGET_CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: %s}
"""
WIDGET = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: default}\nspec: {size: 3}\n"
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: default}
spec:
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec: {containers: [{name: c, image: "nginx:1.27", bogus: 1}]}
"""


def test_kubeconform_verdicts_are_reused_and_follow_the_crds(tmp_path):
    """A verdict is kubeconform's own, stored by the object's text, the Kubernetes version and the
    CRDs of the run that define its kind: a second check of the same objects runs no kubeconform and
    finds the same; a changed CRD re-checks its kinds (and only those); a changed object is checked again."""
    from gitops_validate import schema
    from gitops_validate.model import Manifest
    from gitops_validate.rendercache import RenderCache
    from gitops_validate.yamlio import load_all

    log = tmp_path / "kubeconform.log"
    wrapper = tmp_path / "kubeconform"   # the real kubeconform, each run's files logged
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {ROOT / ".tools/bin/kubeconform"} "$@"\n')
    wrapper.chmod(0o755)
    known = resultcache.ResultCache(RenderCache(tmp_path / "cache"), {"kubeconform": resultcache.file_stamp(wrapper)})

    def check(*texts: str) -> list:
        ms = [Manifest(d.data, f"f{i}.yaml", d.line, yaml=d) for i, t in enumerate(texts) for d in load_all(t)]
        return sorted((f.rule, f.file, f.message) for f in
                      schema.check_objects(ms, str(wrapper), ROOT / ".tools/schemas", "1.35.1", known))

    def runs() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    first = check(WIDGET_CRD % "integer", WIDGET, DEPLOYMENT)
    assert [r for r, _, _ in first] == ["schema/invalid"] and "bogus" in first[0][2], first
    assert runs() == 1
    assert check(WIDGET_CRD % "integer", WIDGET, DEPLOYMENT) == first and runs() == 1   # all from the cache
    # the CRD now says size is a string: the Widget is re-checked (with the run's CRD schemas), the Deployment not
    second = check(WIDGET_CRD % "string", WIDGET, DEPLOYMENT)
    assert runs() == 2
    assert sorted(r for r, _, _ in second) == ["schema/invalid", "schema/invalid"], second
    assert any(f == "f1.yaml" and "size" in msg for _, f, msg in second), second
    assert second == sorted((f.rule, f.file, f.message) for f in schema.check_objects(
        [Manifest(d.data, f"f{i}.yaml", d.line, yaml=d) for i, t in enumerate((WIDGET_CRD % "string", WIDGET, DEPLOYMENT))
         for d in load_all(t)], str(wrapper), ROOT / ".tools/schemas", "1.35.1"))   # the same as without a cache
    # the Deployment fixed: checked again, valid
    assert check(WIDGET_CRD % "string", WIDGET, DEPLOYMENT.replace(", bogus: 1", ""))[0][1] == "f1.yaml"
    assert runs() == 4   # the no-cache check above, and this one
