"""The gate fails closed (issue 9): fake helm, kubeconform and git first on PATH crash, hang, die by a
signal, exit non-zero with and without output, print garbage or leave objects without a result, and
every one of them is exit 2 with a message naming the tool; the real tools still pass the real repo
(test_repo.py). Also: Kubernetes version spellings, bounded app-of-apps, the deadline, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CLI, ROOT, TOOLS, run_cli, tool_env

GOOD = ROOT / "tests" / "manifests" / "good.yaml"


def fake_bin(tmp_path: Path, **scripts: str) -> Path:
    """A bin folder with the pinned tools, where each named tool is replaced by a shell script."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for tool in ("helm", "kubeconform"):
        if tool not in scripts:
            (bindir / tool).symlink_to(TOOLS / tool)
    for tool, body in scripts.items():
        (bindir / tool).write_text("#!/bin/sh\n" + body + "\n")
        (bindir / tool).chmod(0o755)
    return bindir


def validate(tmp_path: Path, *args: str, repo: Path = ROOT, **scripts: str):
    env = tool_env(str(fake_bin(tmp_path, **scripts)))
    return run_cli("--repo", str(repo), "--no-cache", "--format", "json", *args, env=env)


def assert_cannot_run(r, tool: str, *words: str) -> None:
    assert r.code == 2, f"exit {r.code}\n{r.out}\n{r.err}"
    assert "Traceback" not in r.err, r.err
    assert r.err.startswith(f"gitops-validate: {tool} "), r.err
    for w in words:
        assert w in r.err, r.err


# --- kubeconform -----------------------------------------------------------------------------

REAL_KUBECONFORM = f'"{TOOLS / "kubeconform"}" "$@"'
KUBECONFORM_FAULTS = {
    "crash": ('echo "panic: simulated crash" >&2\necho "goroutine 1 [running]:" >&2\nexit 2',
              ["exited with status 2", "panic: simulated crash"]),
    "exit non-zero, no output": ("exit 3", ["exited with status 3", "(no stderr)"]),
    "exit 1 with a message, no report": ('echo "open /nowhere: no such file" >&2\nexit 1',
                                         ["not its JSON report", "open /nowhere"]),
    "killed by a signal": ("kill -9 $$", ["was killed by SIGKILL"]),
    "garbage output": ('echo "this is not JSON"\nexit 0', ["not its JSON report"]),
    "results missing for some objects": (
        f'{REAL_KUBECONFORM} | "{sys.executable}" -c "import json,sys; d=json.load(sys.stdin); '
        f'd[\'resources\']=d[\'resources\'][1:]; json.dump(d, sys.stdout)"\nexit 0',
        ["without a result for 1 of the"]),
    "no results at all (ignores its arguments)": ('echo \'{"resources": []}\'\nexit 0', ["without a result for"]),
    "a result twice": (
        f'{REAL_KUBECONFORM} | "{sys.executable}" -c "import json,sys; d=json.load(sys.stdin); '
        f'd[\'resources\'].append(d[\'resources\'][0]); json.dump(d, sys.stdout)"\nexit 0',
        ["unexpected result"]),
    "exit 0 while reporting invalid objects": (
        f'{REAL_KUBECONFORM} | sed "s/statusValid/statusInvalid/"\nexit 0', ["contradicts its results"]),
}


@pytest.mark.parametrize("fault", KUBECONFORM_FAULTS)
def test_failing_kubeconform_is_exit_2(tmp_path, fault):
    script, words = KUBECONFORM_FAULTS[fault]
    assert_cannot_run(validate(tmp_path, kubeconform=script), "kubeconform", *words)


def test_failing_kubeconform_in_manifest_mode_is_exit_2(tmp_path):
    env = tool_env(str(fake_bin(tmp_path, kubeconform="exit 3")))
    assert_cannot_run(run_cli("--manifests", str(GOOD), env=env, cwd=tmp_path), "kubeconform", "exited with status 3")


def test_hanging_kubeconform_stops_at_the_deadline(tmp_path):
    env = tool_env(str(fake_bin(tmp_path, kubeconform="sleep 300")))
    r = run_cli("--manifests", str(GOOD), "--deadline", "2", env=env, cwd=tmp_path, timeout=60)
    assert_cannot_run(r, "kubeconform", "deadline")


# --- helm --------------------------------------------------------------------------------------

HELM_FAULTS = {
    "crash": ('echo "panic: runtime error: invalid memory address" >&2\nexit 2',
              ["exited with status 2", "panic: runtime error"]),
    "exit 1 without output": ("exit 1", ["exited with status 1", "(no stderr)"]),
    "exit 1 without helm's Error: line": ('echo "fatal: something odd" >&2\nexit 1', ["something odd"]),
    "killed by a signal": ("kill -TERM $$", ["was killed by SIGTERM"]),
    "garbage output": ("printf 'kind: [unclosed\\n'\nexit 0", ["does not parse"]),
    "a scalar instead of objects": ("echo 'just some words'\nexit 0", ["does not parse"]),
    "output that is not UTF-8": ("printf 'a: \\377\\376\\n'\nexit 0", ["not UTF-8"]),
}


@pytest.mark.parametrize("fault", HELM_FAULTS)
def test_failing_helm_is_exit_2(tmp_path, fault):
    script, words = HELM_FAULTS[fault]
    assert_cannot_run(validate(tmp_path, helm=script), "helm", *words)


def test_a_chart_error_stays_a_finding(tmp_path):
    """helm's own user-error path (exit 1, an `Error:` line) is the chart's fault: a finding, exit 1."""
    r = validate(tmp_path, helm='echo "Error: execution error at (x/templates/a.yaml:1:3): boom" >&2\nexit 1')
    assert r.code == 1, r.out + r.err
    assert "values/render-failed" in r.rules(), r.json["findings"]


def test_hanging_helm_is_stopped_with_its_whole_process_group(tmp_path):
    pids = tmp_path / "pids"
    # helm and a child of its own, both hanging; the child must not outlive the run
    script = f'sleep 300 &\necho $! >> {pids}\nsleep 300'
    r = validate(tmp_path, "--render-timeout", "2", helm=script)
    assert_cannot_run(r, "helm", "did not finish within 2s", "process group")
    children = [int(p) for p in pids.read_text().split()]
    assert children
    time.sleep(0.2)
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], \
            f"helm's child {pid} outlived the run"


# --- git ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("script,words", [
    ("kill -9 $$", ["was killed by SIGKILL"]),
    ('echo "error: index file corrupt" >&2\nexit 1', ["exited with status 1", "index file corrupt"]),
])
def test_failing_git_is_exit_2(tmp_path, script, words):
    assert_cannot_run(validate(tmp_path, git=script), "git", *words)
