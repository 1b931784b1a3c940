"""Property-based: wrongly typed fields in REAL objects never crash the validator (issue 9, item 4).

This repository's charts are rendered once per session with the real helm; Hypothesis changes the
type of one to three fields (or keys) of those objects and of the Argo CD objects (the root
app-of-apps, the AppProjects, the child Applications it renders), and the real CLI runs on them.
Whatever the mutation, no exception escapes, stdout is valid JSON, and the exit code is 1 or 2, or
0 only when the mutated objects are still valid: an independent oracle (python-jsonschema against
the same offline strict schemas kubeconform uses) says an object is invalid -> exit 1 is required.

Examples are bounded and derandomized so `make test` stays fast and repeatable;
`HYPOTHESIS_PROFILE=deep` explores more (and randomly).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import ROOT, TOOLS, Run, run_cli, tool_env
from e2e.harness import copy_repo
from gitops_validate import cli
from gitops_validate.cli import INTERNAL_ERROR
from gitops_validate.yamlio import load_all

settings.register_profile("make-test", max_examples=12, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("deep", max_examples=300, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "make-test"))

SCHEMAS = ROOT / ".tools" / "schemas"
VALUES = ROOT / "clusters" / "minikube" / "values"


def _helm(*args: str) -> list[dict]:
    if not (TOOLS / "helm").is_file():
        pytest.fail(f"{TOOLS / 'helm'} is missing: run `make setup`")
    out = subprocess.run([str(TOOLS / "helm"), "template", *args, "--kube-version", "v1.35.1"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    """This repo's charts, rendered by the real helm with the minikube values (namespaced as Argo CD would)."""
    docs = []
    for app in ("todo-backend", "todo-frontend"):
        for d in _helm(f"apps/{app}", "--name-template", app, "--namespace", "todo", "--values", str(VALUES / f"{app}.yaml")):
            d.setdefault("metadata", {}).setdefault("namespace", "todo")
            docs.append(d)
    return docs


@pytest.fixture(scope="module")
def argo_objects() -> dict[str, list[dict]]:
    root = list(yaml.safe_load_all((ROOT / "argocd/root-app.yaml").read_text()))
    projects = [d for d in yaml.safe_load_all((ROOT / "argocd/projects.yaml").read_text()) if d]
    children = _helm("argocd/apps", "--name-template", "todo-root", "--namespace", "argocd",
                     "--values", str(ROOT / "clusters/minikube/apps.yaml"),
                     "--set", "repoURL=https://github.com/todo-chatbot/todo-gitops.git", "--set", "targetRevision=main")
    assert root and projects and len(children) == 2
    return {"root": root, "projects": projects, "children": children}


# --- mutations --------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Zs", "L"]), max_size=8),  # control chars
    st.integers(-2**40, 2**40), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(),
    st.dates(), st.binary(max_size=6),
)
VALUES_OF_ANY_TYPE = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                               st.dictionaries(st.text(max_size=6), SCALARS, max_size=3))
KEYS = st.one_of(st.integers(0, 99), st.booleans(), st.dates(), st.binary(min_size=1, max_size=4))


def _kind(v: Any) -> str:
    """A value's JSON type, as the validator sees it once YAML is read (dates and bytes are text)."""
    if isinstance(v, (str, datetime.date, bytes)):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutate(draw, docs: list[dict], max_changes: int = 3) -> tuple[list[dict], set[int]]:
    """``docs`` with 1..max_changes fields given another type (or a key made a non-string); the
    indexes of the documents changed."""
    docs = copy.deepcopy(docs)
    changed = set()
    for _ in range(draw(st.integers(1, max_changes))):
        i = draw(st.integers(0, len(docs) - 1))
        path = draw(st.sampled_from(_paths(docs[i])))
        parent = docs[i]
        for p in path[:-1]:
            parent = parent[p]
        old = parent[path[-1]]
        if isinstance(parent, dict) and draw(st.booleans()) and draw(st.booleans()):
            parent[draw(KEYS)] = parent.pop(path[-1])  # a key of another type
        else:
            parent[path[-1]] = draw(VALUES_OF_ANY_TYPE.filter(lambda v: _kind(v) != _kind(old)))
        changed.add(i)
    return docs, changed


# --- the oracle: python-jsonschema on the strict offline schemas --------------------------------

def _schema_file(doc: dict) -> Path | None:
    api, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", "")).lower()
    group, _, version = api.rpartition("/")
    if group.endswith("argoproj.io"):
        return SCHEMAS / "crds" / group / f"{kind}_{version}.json"
    suffix = f"-{group.split('.')[0]}" if group else ""
    return SCHEMAS / "kubernetes" / "v1.35" / f"{kind}{suffix}-{version}.json"


def invalid(original: dict, as_read: Any) -> bool:
    """Whether the object, as the validator reads it, fails the schema of the kind it was."""
    if not isinstance(as_read, dict):
        return True
    f = _schema_file(original)
    if f is None or not f.is_file():
        return False
    schema = json.loads(f.read_text())
    return next(jsonschema.validators.validator_for(schema)(schema).iter_errors(as_read), None) is not None


def check(r, originals: list[dict], stream: str, changed: set[int]) -> None:
    assert "Traceback" not in r.err and INTERNAL_ERROR not in r.err, r.err[-3000:]
    assert r.code in (0, 1, 2), r.code
    if r.code != 2:
        json.loads(r.out)  # valid JSON whatever the input
    as_read = [d.data for d in load_all(stream)]
    if r.code == 0:
        bad = [i for i in changed if invalid(originals[i], as_read[i])]
        assert not bad, f"exit 0 although the schema refuses {[originals[i].get('kind') for i in bad]}:\n{stream}"


def run_main(*args: str, stdin: str = "") -> Run:
    """The CLI's main() in this process (no interpreter start per example; helm and kubeconform
    still run for real), with the pinned tools first on PATH."""
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_stdin, env = dict(os.environ), sys.stdin, tool_env()
    os.environ.clear()
    os.environ.update(env)
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.stdin = saved_stdin
    return Run(code, out.getvalue(), err.getvalue())


def dump(docs: list[dict]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=False)


# --- the properties ---------------------------------------------------------------------------

def test_the_unmutated_objects_pass(rendered):
    r = run_cli("--manifests", "-", "--format", "json", stdin=dump(rendered))  # the installed command, once
    assert r.code == 0, r.out + r.err


@given(data=st.data())
def test_rendered_objects_with_wrongly_typed_fields(rendered, data):
    docs, changed = data.draw(mutate(rendered))
    stream = dump(docs)
    r = run_main("--manifests", "-", "--format", "json", stdin=stream)
    check(r, rendered, stream, changed)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("props") / "repo"
    copy_repo(dest)
    return dest


def _repo_run(repo: Path, cache: Path):
    os.environ["GITOPS_VALIDATE_CACHE"] = str(cache)
    try:
        return run_main("--repo", str(repo), "--format", "json")
    finally:
        del os.environ["GITOPS_VALIDATE_CACHE"]


@settings(max_examples=max(4, settings().max_examples // 3))
@given(data=st.data())
def test_argo_cd_objects_with_wrongly_typed_fields(repo, argo_objects, tmp_path_factory, data):
    which = data.draw(st.sampled_from(["root", "projects", "children"]))
    originals = argo_objects[which]
    docs, changed = data.draw(mutate(originals, max_changes=2))
    stream = dump(docs)
    root_file, projects_file = repo / "argocd/root-app.yaml", repo / "argocd/projects.yaml"
    saved = root_file.read_text(), projects_file.read_text()
    try:
        if which == "projects":
            projects_file.write_text(stream)
        else:  # the children stand in for the root app that would render them
            root_file.write_text(stream)
        r = _repo_run(repo, tmp_path_factory.getbasetemp() / "props-cache")
    finally:
        root_file.write_text(saved[0])
        projects_file.write_text(saved[1])
    check(r, originals, stream, changed)
