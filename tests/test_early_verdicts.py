"""A path-scoped run checks the changed app's render with kubeconform in its render job, while the
app loop still loads the other apps (issue 13, docs/performance.md change 23).

The job stores kubeconform's verdicts in the result cache (``schema.remember_verdicts``) and
``_check_objects`` finds them there: one kubeconform run, not one after the loop. The findings are
those of the code before (BEFORE, from `git archive`), on a generated repo with planted defects,
for a change that adds a kubeconform error to the changed app and one that takes it away. A
kubeconform that fails in the early check leaves the check to ``_check_objects`` as before: a
fault there once gives the same findings, a fault every time is exit 2 naming kubeconform.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import synth
from gitops_validate import pipeline
from conftest import TOOLS, run_cli, tool_env
from test_incremental import code_at, old
from test_resultcache import CHANGED, plant, validate

#: the last commit before the early check
BEFORE = "2a5afac"


@pytest.fixture(scope="module")
def before_code(tmp_path_factory) -> Path:
    return code_at(BEFORE, tmp_path_factory.mktemp("before-early"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return plant(synth.make_repo(tmp_path / "repo", 6, defects=True))


def logging_kubeconform(tmp_path: Path) -> tuple[dict, Path]:
    """An environment whose kubeconform is the pinned one behind a script that logs each start
    ("fail" and exit 3 while the file ``fail-once`` exists, removing it, or while ``fail-always``
    exists), and the log."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("helm", "kustomize"):
        (bindir / tool).symlink_to(TOOLS / tool)
    log = tmp_path / "kubeconform.log"
    (bindir / "kubeconform").write_text(
        "#!/bin/sh\n"
        f'if [ -e "{tmp_path}/fail-always" ]; then echo fail >> "{log}"; exit 3; fi\n'
        f'if rm "{tmp_path}/fail-once" 2>/dev/null; then echo fail >> "{log}"; exit 3; fi\n'
        f'echo ok >> "{log}"\n'
        f'exec "{TOOLS / "kubeconform"}" "$@"\n')
    (bindir / "kubeconform").chmod(0o755)
    return tool_env(str(bindir)) | {"GITOPS_VALIDATE_CACHE": str(tmp_path / "cache")}, log


def starts(log: Path) -> list[str]:
    """The kubeconform starts logged since the last call (the log is emptied)."""
    lines = log.read_text().split() if log.exists() else []
    log.write_text("")
    return lines


#: values appended to the changed app's (a new render of that app alone): one kubeconform passes,
#: one it refuses (the values schema lets any nodeAffinity through; Kubernetes' has no such field)
VALID = 'podAnnotations:\n  test/early: "a text"\n'
INVALID = "affinity:\n  nodeAffinity:\n    bogusField: 1\n"


def append(repo: Path, values: str) -> None:
    with open(repo / CHANGED, "a") as fh:
        fh.write(values)


@pytest.mark.parametrize("value", [VALID, INVALID])
def test_the_changed_apps_render_is_checked_in_its_job_with_the_findings_of_before(repo, tmp_path, before_code, value):
    env, log = logging_kubeconform(tmp_path)
    whole = old(before_code, repo)
    assert validate(repo, env=env) == whole
    assert validate(repo, env=env) == whole   # warm: every app from the result cache
    starts(log)
    append(repo, value)
    expected = old(before_code, repo, CHANGED)
    assert validate(repo, CHANGED, env=env) == expected
    assert starts(log) == ["ok"]              # one kubeconform: the early check's, none after the loop
    if value == INVALID:   # kubeconform's finding, from the early verdicts
        assert any(f["rule"] == "schema/invalid" and "bogusField" in f["message"] for f in expected[1])
    # and the same findings again, the verdicts now cached: no kubeconform at all
    assert validate(repo, CHANGED, env=env) == expected
    assert starts(log) == []


def test_a_kubeconform_fault_in_the_early_check_leaves_the_check_to_after_the_loop(repo, tmp_path, before_code):
    env, log = logging_kubeconform(tmp_path)
    validate(repo, env=env)
    starts(log)
    append(repo, INVALID)
    (tmp_path / "fail-once").write_text("")
    assert validate(repo, CHANGED, env=env) == old(before_code, repo, CHANGED)
    assert starts(log) == ["fail", "ok"]   # the early check failed; _check_objects ran it again


def test_a_kubeconform_that_always_fails_is_still_exit_2(repo, tmp_path):
    env, log = logging_kubeconform(tmp_path)
    validate(repo, env=env)
    starts(log)
    append(repo, INVALID)
    (tmp_path / "fail-always").write_text("")
    r = run_cli("--repo", str(repo), "--format", "json", CHANGED, env=env)
    assert r.code == 2, r.out + r.err
    assert "Traceback" not in r.err and r.err.startswith("gitops-validate: kubeconform "), r.err
    assert "exited with status 3" in r.err, r.err
    assert starts(log) == ["fail", "fail"]


def test_a_run_of_many_renders_keeps_one_kubeconform_after_the_loop(tmp_path):
    """Only a path-scoped run checks in the render job, and only its first few renders: a cold
    whole-repo run is one kubeconform after the loop, and a change to a chart that six apps render
    checks `jobs` of them in their jobs and the rest in one kubeconform after the loop (one per app
    would start hundreds at 500 apps)."""
    repo = plant(synth.make_repo(tmp_path / "repo", 12, defects=True))
    env, log = logging_kubeconform(tmp_path)
    validate(repo, env=env)
    assert starts(log) == ["ok"]             # cold, whole repository: every render, one kubeconform
    chart = next(repo.glob("apps/*/templates/deployment.yaml"))
    renders = len(list(repo.glob(f"clusters/*/values/{chart.parts[-3].removeprefix('todo-')}*.yaml")))
    jobs = inspect.signature(pipeline.Options).parameters["jobs"].default
    assert renders == 6 and 1 <= jobs <= renders - 2   # so that one per render would show
    # a path-scoped run of a chart every app of it renders, with no verdict known (a new cache):
    # the first `jobs` renders checked in their jobs, the rest (if any) in one kubeconform after the loop
    validate(repo, str(chart.relative_to(repo)), env=env | {"GITOPS_VALIDATE_CACHE": str(tmp_path / "cache2")})
    assert starts(log) == ["ok"] * (min(jobs, renders) + (renders > jobs))


def test_the_changed_apps_render_starts_before_its_values_are_checked(repo, monkeypatch):
    """The render of an app in scope is submitted before ``schema.check_values`` (which imports
    jsonschema and checks the values: helm and kubeconform run meanwhile). In this process:
    ``check_values`` waits until the app's render has begun, which it could not if the render
    were submitted only after it; a values error then drops that render for the partial one."""
    import threading
    from gitops_validate import determinism, schema
    from test_properties import run_main
    begun, checked = threading.Event(), []
    render_checked, check_values = determinism.render_checked, schema.check_values

    def rendering(repo_, req, **kw):
        if CHANGED in req.value_files:   # the changed app's (a warm cache renders no other)
            begun.set()
        return render_checked(repo_, req, **kw)

    def checking(repo_, req, *args):
        if CHANGED in req.value_files:
            checked.append(begun.wait(20))
        return check_values(repo_, req, *args)

    monkeypatch.setattr(determinism, "render_checked", rendering)
    monkeypatch.setattr(schema, "check_values", checking)
    monkeypatch.setenv("GITOPS_VALIDATE_CACHE", str(repo.parent / "cache"))
    assert run_main("--repo", str(repo), "--format", "json").code == 1   # warm: only the changed app renders next
    checked.clear()
    begun.clear()
    append(repo, VALID)
    r = run_main("--repo", str(repo), "--format", "json", CHANGED)
    assert r.code == 1 and checked == [True], (checked, r.err)


def test_a_values_error_drops_the_render_started_ahead_with_the_findings_of_before(repo, tmp_path, before_code):
    """Values that fail the chart's values.schema.json: the full render submitted ahead of the check
    is dropped (helm refuses those values) and the valid part renders, as before (partialrender.py):
    the JSON findings equal the old code's, with the values error among them."""
    env, _ = logging_kubeconform(tmp_path)
    validate(repo, env=env)
    append(repo, "revisionHistoryLimit: many\n")
    expected = old(before_code, repo, CHANGED)
    assert any(f["rule"].startswith("values/") for f in expected[1]), expected
    assert validate(repo, CHANGED, env=env) == expected
