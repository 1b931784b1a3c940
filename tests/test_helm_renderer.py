"""helm-renderer (scripts/helm-renderer, validator/helmrenderer.py): byte-identical to the helm CLI on
every request the validator makes, pinned to the helm in `versions`, and fail-closed when it breaks.

The identity proof runs the real pipeline with the real renderer and, for every request it sends
the renderer, the real helm CLI with the same argv, directory and environment at the same moment
(while the values file it names still exists), on this repo, a generated repo and the chart
fixtures; then every chart directory of those repos once more with plain `helm template`, many
requests through one renderer process, so that state one request leaves behind would show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import argo_fixture
import synth
import user_repo
from conftest import ROOT, TOOLS, VERSIONS, run_cli, tool_env
from gitops_validate import config as config_mod
from gitops_validate import helmrenderer, pipeline, tools
from gitops_validate.rendercache import RenderCache
from gitops_validate.rules import REGISTRY

RENDERER = TOOLS / helmrenderer.NAME
MODULE = ROOT / "scripts" / "helm-renderer"


def test_helm_pin_is_the_versions_file() -> None:
    p = subprocess.run(["go", "mod", "edit", "-json"], cwd=MODULE, capture_output=True, text=True, check=True)
    required = {r["Path"]: r["Version"] for r in json.loads(p.stdout)["Require"]}
    assert required["helm.sh/helm/v4"] == VERSIONS["HELM_VERSION"]
    assert (MODULE / "go.sum").stat().st_size > 0


def _renderer() -> str:
    if not RENDERER.is_file():
        pytest.fail(f"{RENDERER} is missing: run `make setup`")
    return str(RENDERER)


def test_embeds_the_pinned_helm() -> None:
    _renderer()
    mine = subprocess.run([RENDERER, "version"], capture_output=True, check=True).stdout
    helm = subprocess.run([TOOLS / "helm", "version"], capture_output=True, check=True).stdout
    assert mine == helm and VERSIONS["HELM_VERSION"].encode() in mine


@pytest.fixture
def both_ways(monkeypatch):
    """Every renderer request also goes to the helm CLI; the list of (argv, renderer, CLI) answers."""
    _renderer()
    for k, v in tool_env().items():
        monkeypatch.setenv(k, v)
    seen: list[tuple[list[str], tools.Completed, tools.Completed]] = []
    real = helmrenderer.Pool.run

    def run(self, argv, cwd, env, timeout):
        mine = real(self, argv, cwd, env, timeout)
        seen.append((argv, mine, tools.run("helm", argv, timeout, cwd=cwd, env=env)))
        return mine

    monkeypatch.setattr(helmrenderer.Pool, "run", run)
    return seen


def _validate(repo: Path, cache: Path) -> None:
    cfg = config_mod.load(repo / ".gitops-validator.yaml", set(REGISTRY)) if (repo / ".gitops-validator.yaml").is_file() \
        else config_mod.load(None, set(REGISTRY))
    pipeline.run(pipeline.Options(repo=repo, config=cfg, cache_dir=cache))


def _assert_identical(seen) -> int:
    templates = 0
    for argv, mine, cli in seen:
        assert (mine.returncode, mine.stdout) == (cli.returncode, cli.stdout), argv
        if cli.returncode:  # helm's own words, though the CLI re-run is what the validator reports
            assert mine.stderr == cli.stderr, argv
        templates += argv[1] == "template" and cli.returncode == 0
    return templates


def _repos(tmp_path: Path) -> dict[str, Path]:
    return {
        "this repo": ROOT,
        "generated": synth.make_repo(tmp_path / "synth", 6, clusters=2, defects=True),
        "argo fixture": argo_fixture.make_repo(tmp_path / "argo"),
        "user repo": user_repo.make_user_repo(tmp_path / "user", str(TOOLS / "helm"), tool_env()),
    }


def test_byte_identical_to_helm_on_every_app(tmp_path: Path, both_ways) -> None:
    counts = {}
    for name, repo in _repos(tmp_path).items():
        both_ways.clear()
        _validate(repo, tmp_path / f"cache-{len(counts)}")  # a fresh cache: every app renders
        counts[name] = _assert_identical(both_ways)
    assert all(counts.values()), counts  # each repo had successful renders to compare
    assert counts["generated"] >= 12, counts


def test_byte_identical_on_every_chart_fixture_one_process(tmp_path: Path) -> None:
    """Every chart of those repos and this one, plain and with flags, in one renderer process,
    alternating flags so that a namespace, a --set or a kube version one request set and the next
    did not would show."""
    env = {**tool_env(), "HELM_NO_PLUGINS": "1"}
    helm = str(TOOLS / "helm")
    charts = sorted({p.parent for repo in _repos(tmp_path).values() for p in repo.rglob("Chart.yaml")
                     if ".tools" not in p.parts and ".venv" not in p.parts})
    assert len(charts) >= 5, charts
    pool = helmrenderer.Pool(_renderer(), env)
    try:
        compared = 0
        for chart in charts:
            for flags in ([], ["--namespace", "other", "--set", "replicaCount=2", "--kube-version", "1.30.0",
                               "--api-versions", "example.com/v1/Thing", "--include-crds"], []):
                argv = [helm, "template", str(chart), *flags]
                mine = pool.run(argv, chart, env, 60)
                cli = tools.run("helm", argv, 60, cwd=chart, env=env)
                assert (mine.returncode, mine.stdout, mine.stderr) == (cli.returncode, cli.stdout, cli.stderr), argv
                compared += cli.returncode == 0
        assert len(pool._all) == 1   # one process served them all
    finally:
        pool.close()
    assert compared >= 2 * len(charts), "most fixtures render"


# --- fail closed, and the CLI has the last word ---------------------------------------------

FAKE = '''#!{python}
import json, os, subprocess, sys, time
MODE = {mode!r}
for line in sys.stdin:
    req = json.loads(line)
    if req["argv"][1] == "version":
        if os.environ.get("FAKE_LOG"):
            with open(os.environ["FAKE_LOG"], "a") as log:
                log.write("version\\n")
        p = subprocess.run(req["argv"], capture_output=True)
        out = p.stdout if MODE != "other-helm" else b"version.BuildInfo{{Version:\\"v9.9.9\\"}}\\n"
        status, err = p.returncode, p.stderr
    elif MODE == "crash":
        sys.exit(3)
    elif MODE == "hang":
        time.sleep(600)
    elif MODE == "garbage":
        sys.stdout.buffer.write(b"hello\\n"); sys.stdout.flush(); continue
    elif MODE == "short":
        sys.stdout.buffer.write(b"helm-renderer 0 100000 0\\nkind: Foo\\n"); sys.stdout.flush(); sys.exit(0)
    else:  # "refuse": a non-zero status for every render, which the helm CLI must overrule
        status, out, err = 1, b"", b"Error: the renderer says no\\n"
    sys.stdout.buffer.write(b"helm-renderer %d %d %d\\n" % (status, len(out), len(err)) + out + err)
    sys.stdout.flush()
'''


def _fake_env(tmp_path: Path, mode: str | None) -> dict[str, str]:
    """tool_env whose helm is the pinned one in a folder of its own, beside a fake renderer (or none)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("helm", "kubeconform", "kustomize"):
        (bindir / tool).symlink_to(TOOLS / tool)
    if mode:
        (bindir / helmrenderer.NAME).write_text(FAKE.format(python=sys.executable, mode=mode))
        (bindir / helmrenderer.NAME).chmod(0o755)
    env = tool_env(str(bindir))
    env["GITOPS_VALIDATE_CACHE"] = str(tmp_path / "cache")
    return env


@pytest.mark.parametrize("mode, says", [
    ("crash", "stopped in the middle of a request (exited with status 3)"),
    ("hang", "did not finish within 3s and was stopped"),
    ("garbage", "answered outside its protocol (b'hello\\n')"),
    ("short", "stopped in the middle of a request"),
])
def test_a_broken_renderer_is_exit_2(tmp_path: Path, mode: str, says: str) -> None:
    r = run_cli("--render-timeout", "3", env=_fake_env(tmp_path, mode))
    assert r.code == 2, (r.out, r.err)
    assert f"helm-renderer {says}" in r.err


def test_the_cli_overrules_a_renderer_failure(tmp_path: Path) -> None:
    r = run_cli("-v", env=_fake_env(tmp_path, "refuse"))
    assert r.code == 0, (r.out, r.err)   # every render failed in the renderer and passed in helm
    assert "rendered by helm-renderer" in r.err and "the renderer says no" not in r.out + r.err


@pytest.mark.parametrize("mode, says", [
    (None, "rendered by helm CLI (no helm-renderer beside "),
    ("other-helm", "embeds 'version.BuildInfo{Version:\"v9.9.9\"}', helm says 'version.BuildInfo{Version:\"v4"),
])
def test_without_a_matching_renderer_the_cli_renders(tmp_path: Path, mode: str | None, says: str) -> None:
    r = run_cli("-v", env=_fake_env(tmp_path, mode))
    assert r.code == 0, (r.out, r.err)
    assert says in r.err


def test_the_agreement_is_remembered_until_the_renderer_changes(tmp_path: Path, repo_copy: Path) -> None:
    """Comparing the renderer's helm with the CLI's costs two processes: once per pair of binaries."""
    env = _fake_env(tmp_path, "refuse")   # renders fall back to the CLI; `version` is answered truly
    env["FAKE_LOG"] = str(tmp_path / "asked")
    values = repo_copy / "clusters" / "minikube" / "values" / "todo-backend.yaml"

    def run_with_a_render() -> int:
        values.write_text(values.read_text() + "#\n")   # a new render key: one helm render
        r = run_cli("-v", str(values.relative_to(repo_copy)), cwd=repo_copy, env=env)
        assert r.code == 0 and "rendered by helm-renderer" in r.err, (r.out, r.err)
        return len((tmp_path / "asked").read_text().splitlines())

    assert run_with_a_render() == 1
    assert run_with_a_render() == 1, "asked again though neither binary changed"
    fake = tmp_path / "bin" / helmrenderer.NAME
    fake.write_text(fake.read_text() + "\n")   # another renderer binary
    assert run_with_a_render() == 2


def test_the_cache_key_names_the_renderer(tmp_path: Path) -> None:
    lone, paired = tmp_path / "lone", tmp_path / "paired"
    for d in (lone, paired):
        d.mkdir()
        (d / "helm").symlink_to(TOOLS / "helm")
    (paired / helmrenderer.NAME).symlink_to(_renderer())
    ids = [RenderCache(tmp_path / "cache").helm_identity(str(d / "helm")) for d in (lone, paired)]
    assert ids[0] != ids[1] and ids[1].startswith(ids[0] + f" {helmrenderer.NAME} ")


def test_doctor_names_the_renderer(tmp_path: Path) -> None:
    r = run_cli("doctor")
    assert r.code == 0, r.err
    assert f"{helmrenderer.NAME}" in r.out and str(RENDERER) in r.out
