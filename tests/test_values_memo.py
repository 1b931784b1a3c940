"""This repository's pre-commit path (issue 13, change 18) changes no finding, and is never stale.

- ``schema.check_values`` remembers jsonschema's verdicts in the result cache (``_ValuesMemo``):
  that a chart's values.schema.json passed the metaschema and ``$ref`` checks, by the chart's files,
  and the errors of merged values against it, by those and the values' JSON. A changed schema, a
  changed file a ``$ref`` reaches, or a damaged entry gives what a run without cache gives.
- The Argo CD install's kustomize build is keyed before anything is copied: an edit in its tree
  still rebuilds it.
- an app in scope renders while its values are checked (the render is submitted before the check).

The JSON findings are compared with the code before these changes (BEFORE, from `git archive`) on
this repository and on a generated repo with planted defects, whole-repo and path-scoped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import synth
from conftest import run_cli, tool_env
from test_incremental import code_at, old
from test_resultcache import edit, plant

#: The last commit before change 18.
BEFORE = "8e98044"
VALUES = "clusters/minikube/values/todo-backend.yaml"
SCHEMA = "apps/todo-backend/values.schema.json"


@pytest.fixture(scope="module")
def before_code(tmp_path_factory) -> Path:
    return code_at(BEFORE, tmp_path_factory.mktemp("before"))


def new(repo: Path, *args: str, cache: Path | None = None) -> tuple[int, list]:
    env = tool_env() | ({"GITOPS_VALIDATE_CACHE": str(cache)} if cache else {})
    r = run_cli("--repo", str(repo), "--format", "json", *args, *([] if cache else ["--no-cache"]), env=env)
    assert r.code in (0, 1), r.out + r.err
    assert "Traceback" not in r.err, r.err
    return r.code, r.json["findings"]


def append(repo: Path, rel: str, text: str) -> None:
    p = repo / rel
    p.write_text(p.read_text() + text)


def memo_entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.values.json"))


def imports_jsonschema(repo: Path, cache: Path, *args: str, env: dict | None = None) -> bool:
    p = subprocess.run([sys.executable, "-X", "importtime", str(Path(sys.executable).parent / "gitops-validate"),
                        "--repo", str(repo), *args], env=tool_env() | {"GITOPS_VALIDATE_CACHE": str(cache)} | (env or {}),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1), p.stderr
    return any(line.rstrip().endswith("| jsonschema") for line in p.stderr.splitlines())


def test_this_repo_findings_identical_to_before(repo_copy, before_code, tmp_path):
    cache = tmp_path / "cache"
    assert new(repo_copy, cache=cache) == old(before_code, repo_copy)
    # the pre-commit path: a comment appended, then a real values error, then a key the chart does not know
    rules = set()
    for a, b in (("\n", "\n# a comment\n"), ("replicaCount: 2\n", "replicaCount: two\n"),
                 ("replicaCount: two\n", "replicaCont: 2\n")):
        edit(repo_copy, VALUES, a, b)
        want = old(before_code, repo_copy, VALUES)
        assert new(repo_copy, VALUES, cache=cache) == want, b
        assert new(repo_copy, VALUES, cache=cache) == want, b   # the second run from the memo
        assert new(repo_copy, cache=cache) == old(before_code, repo_copy), b
        rules |= {f["rule"] for f in want[1]}
    assert {"values/schema", "values/unknown-key"} <= rules, rules


def test_a_planted_repo_findings_identical_to_before(tmp_path, before_code):
    repo = plant(synth.make_repo(tmp_path / "repo", 6, defects=True))
    edit(repo, "clusters/minikube/values/backend0.yaml", "replicaCount:", "replicaCount: -1\nx:")   # schema + unknown key
    cache = tmp_path / "cache"
    for _ in range(2):
        assert new(repo, cache=cache) == old(before_code, repo)
    changed = "clusters/minikube/values/backend0.yaml"
    append(repo, changed, "# edited\n")
    for _ in range(2):
        assert new(repo, changed, cache=cache) == old(before_code, repo, changed)
    rules = {f["rule"] for f in new(repo, cache=cache)[1]}
    assert {"values/schema", "values/unknown-key", "refs/nodeport"} <= rules, rules


def test_a_comment_needs_no_jsonschema_and_the_memo_follows_the_schema(repo_copy, tmp_path):
    cache = tmp_path / "cache"
    assert new(repo_copy, cache=cache)[0] == 0
    assert memo_entries(cache) and list(cache.glob("*.values-schema.ok"))
    append(repo_copy, VALUES, "# a comment\n")
    assert not imports_jsonschema(repo_copy, cache, VALUES)   # the values' data did not change
    # a stricter schema: the remembered "no errors" must not be served
    edit(repo_copy, SCHEMA, '"replicaCount": {\n      "type": "integer",\n      "minimum": 0',
         '"replicaCount": {\n      "type": "integer",\n      "minimum": 0,\n      "maximum": 1')
    got = new(repo_copy, VALUES, cache=cache)
    assert got == new(repo_copy, VALUES) and got[0] == 1
    assert [f["message"] for f in got[1] if f["rule"] == "values/schema"] == ["replicaCount: 2 is greater than the maximum of 1"]
    # a schema the metaschema refuses, after the chart's schema was remembered as checked
    edit(repo_copy, SCHEMA, '"maximum": 1', '"maximum": "one"')
    got = new(repo_copy, VALUES, cache=cache)
    assert got == new(repo_copy, VALUES) and any("not a valid JSON schema" in f["message"] for f in got[1])


@pytest.mark.parametrize("package", ["referencing", "jsonschema_specifications"])
def test_another_install_of_a_package_jsonschema_decides_with_misses_the_memo(repo_copy, tmp_path, package):
    """referencing resolves $ref and jsonschema_specifications holds the metaschemas: both decide the
    verdicts, so the memo's stamp covers their installed files. Another copy of one, first on the
    path (as an upgrade or another venv would be), must not be served the first one's verdicts."""
    import importlib.util
    cache = tmp_path / "cache"
    assert new(repo_copy, cache=cache)[0] == 0
    append(repo_copy, VALUES, "# a comment\n")
    assert not imports_jsonschema(repo_copy, cache, VALUES)   # served from the memo
    other = tmp_path / "site"
    shutil.copytree(Path(importlib.util.find_spec(package).origin).parent, other / package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(other)}
    assert imports_jsonschema(repo_copy, cache, VALUES, env=env), f"another {package} was served the memo"
    # each run below after another comment, so the app's result entry misses and the memo answers
    append(repo_copy, VALUES, "# another\n")
    assert not imports_jsonschema(repo_copy, cache, VALUES, env=env)   # remembered under its own stamp
    append(repo_copy, VALUES, "# and another\n")
    assert not imports_jsonschema(repo_copy, cache, VALUES)            # the first install's entry is intact


def test_a_changed_file_a_ref_reaches_is_noticed(tmp_path):
    """In process (helm itself resolves a relative $ref from the filesystem root, so no render):
    the memo is keyed by every chart file, the ones a $ref reaches included."""
    from gitops_validate import rendercache, resultcache, schema
    from gitops_validate.render import RenderRequest
    repo = tmp_path / "repo"
    chart = repo / "chart"
    chart.mkdir(parents=True)
    (chart / "values.yaml").write_text("replicaCount: 2\n")
    (chart / "values.schema.json").write_text('{"type": "object", "properties": {"replicaCount": {"$ref": "defs.json#/definitions/count"}}}')
    (chart / "defs.json").write_text('{"definitions": {"count": {"type": "integer", "minimum": 0}}}')
    req = RenderRequest("app", "chart", "app", "ns", "v1.35.1", (), [], None)

    def check() -> tuple[list, bool]:
        schema._values_validator.cache_clear()   # each call as a new process would make it
        rendercache_ = rendercache.RenderCache(tmp_path / "cache")
        memo = resultcache.ResultCache(rendercache_, {"test": 1})
        got = schema.check_values(repo, req, memo)
        schema._values_validator.cache_clear()
        assert got == schema.check_values(repo, req)   # the same as without the memo
        return got

    assert check() == ([], True)
    assert check() == ([], True)   # from the memo
    assert len(list((tmp_path / "cache").glob("*.values.json"))) == 1
    (chart / "defs.json").write_text('{"definitions": {"count": {"type": "integer", "maximum": 1}}}')
    findings, ok = check()
    assert not ok and [f.message for f in findings] == ["replicaCount: 2 is greater than the maximum of 1"]
    (chart / "defs.json").write_text('{"definitions": {}}')   # the $ref no longer resolves
    findings, ok = check()
    assert not ok and [f.rule for f in findings] == ["values/schema"] and "$ref" in findings[0].message, findings


@pytest.mark.parametrize("damage", ["garbage", "wrong shape"])
def test_a_damaged_memo_is_recomputed_not_trusted(repo_copy, tmp_path, damage):
    cache = tmp_path / "cache"
    edit(repo_copy, VALUES, "replicaCount: 2\n", "replicaCount: -3\n")
    want = new(repo_copy, VALUES)
    assert want[0] == 1
    assert new(repo_copy, VALUES, cache=cache) == want
    for p in memo_entries(cache):
        p.write_text({"garbage": "{not json", "wrong shape": '[["replicaCount"], 3]'}[damage])
    append(repo_copy, VALUES, "# again\n")
    assert new(repo_copy, VALUES, cache=cache) == want


def test_the_install_is_rebuilt_when_its_tree_changes(repo_copy, tmp_path):
    cache = tmp_path / "cache"
    assert new(repo_copy, cache=cache)[0] == 0
    assert new(repo_copy, cache=cache)[0] == 0    # from the kustomize cache: nothing copied
    patch = "argocd/patches/argocd-cm.yaml"
    edit(repo_copy, patch, "data:\n", "data:\n  bogus: [1\n")
    got = new(repo_copy, cache=cache)
    assert got == new(repo_copy) and got[0] == 1, got


def test_values_json_cannot_tell_apart_are_not_remembered(tmp_path):
    """NaN (JSON text has no exact spelling for it): no memo entry, the same findings."""
    from gitops_validate import rendercache, resultcache, schema
    from gitops_validate.render import RenderRequest
    repo = tmp_path / "repo"
    (repo / "chart").mkdir(parents=True)
    (repo / "chart/values.schema.json").write_text('{"type": "object", "properties": {"when": {"type": "string"}}}')
    req = RenderRequest("app", "chart", "app", "ns", "v1.35.1", (), ["v.yaml"], None)
    memo = resultcache.ResultCache(rendercache.RenderCache(tmp_path / "cache"), {"test": 1})
    for text, entries in (("when: x\nn: .nan\n", 0), ("when: 3\nn: .nan\n", 0), ("when: x\n", 1), ("when: 3\n", 2)):
        (repo / "v.yaml").write_text(text)
        got = schema.check_values(repo, req, memo)
        assert got == schema.check_values(repo, req), text
        assert got[1] == ("3" not in text), (text, got)
        assert len(list((tmp_path / "cache").glob("*.values.json"))) == entries, text


def logged_renderer(bindir: Path, log: Path) -> None:
    """The pinned tools in ``bindir``, helm-renderer behind a script that appends its pid to ``log``."""
    from conftest import TOOLS
    bindir.mkdir()
    for tool in ("helm", "kubeconform", "kustomize"):
        (bindir / tool).symlink_to(TOOLS / tool)
    (bindir / "helm-renderer").write_text(f'#!/bin/sh\necho $$ >> {log}\nexec {TOOLS / "helm-renderer"} "$@"\n')
    (bindir / "helm-renderer").chmod(0o755)


def test_the_renderer_starts_once_for_a_render_and_not_for_a_cache_hit(tmp_path, repo_copy):
    """``helmrenderer.start_early``: a render the cache lacks starts one helm-renderer (a
    path-scoped run starts it ahead and then renders with it: not a second one), a
    whole-repository run served by the render cache starts none; the findings are the CLI's."""
    log = tmp_path / "starts"
    logged_renderer(tmp_path / "bin", log)
    env = tool_env(str(tmp_path / "bin")) | {"GITOPS_VALIDATE_CACHE": str(tmp_path / "cache")}

    def starts(*args: str) -> int:
        before = len(log.read_text().splitlines()) if log.exists() else 0
        r = run_cli("-v", "--format", "json", *args, cwd=repo_copy, env=env)
        assert r.code == 0 and "Traceback" not in r.err, (r.out, r.err)
        assert "0 helm render(s)" in r.err or "rendered by helm-renderer" in r.err, r.err
        assert r.json["findings"] == new(repo_copy, *args)[1]
        return len(log.read_text().splitlines()) - before

    assert starts() >= 1                 # cold: every app renders
    append(repo_copy, VALUES, "# a comment\n")
    assert starts(VALUES) == 1          # one render: one renderer, started ahead and used
    assert starts(VALUES) == 1          # the render cache has it: the one started ahead, unused
    assert starts() == 0                # a whole-repository run starts one only for a render


def test_a_renderer_started_ahead_ends_with_the_run_on_every_path(tmp_path, repo_copy, monkeypatch):
    """The CLI in this process (so a renderer left running would still be alive when it returns):
    the one started ahead of a path-scoped run is adopted by the render that follows, closed unused
    when the render cache serves the app, and closed when the run stops early (a bad config)."""
    from gitops_validate import cli, helmrenderer
    from test_properties import run_main
    monkeypatch.setenv("GITOPS_VALIDATE_CACHE", str(tmp_path / "cache"))
    started: list[int] = []
    init = helmrenderer.Renderer.__init__

    def logged(self, *args):
        init(self, *args)
        started.append(self.proc.pid)

    monkeypatch.setattr(helmrenderer.Renderer, "__init__", logged)

    def pids(*args: str, code: int) -> list[int]:
        started.clear()
        r = run_main("--repo", str(repo_copy), "--format", "json", *args)
        assert r.code == code and cli.INTERNAL_ERROR not in r.err, r.err
        assert not helmrenderer._early and not helmrenderer._pools
        for pid in started:   # closed and reaped by the run: no such process any more
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        return list(started)

    assert pids(code=0)                                   # cold: renders
    append(repo_copy, VALUES, "# a comment\n")
    assert len(pids(VALUES, code=0)) == 1                 # started ahead, rendered with
    assert len(pids(VALUES, code=0)) == 1                 # started ahead, unused (render cache)
    assert len(pids("--config", str(tmp_path / "none.yaml"), VALUES, code=2)) == 1   # stopped early
