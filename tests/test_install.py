"""gitops-validate as another Argo CD repository uses it (issue 14): the wheel installed into a fresh
venv outside this repo, and the pre-commit hook installed from a clone of this repo at HEAD. Only
the helm and kubeconform binaries of `.tools/bin` are used; schemas come from the package itself.
Dependencies install offline from `.tools/wheels` (make setup), so these tests need no network."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, TOOLS, VERSIONS, run_cli, tool_env
from user_repo import BAD_CHANGE, BAD_RULES, make_user_repo

import gitops_validate

PKG = gitops_validate.__name__  # the import name the wheel installs (its sources are in validator/)

WHEELS = ROOT / ".tools" / "wheels"
BUILD_FILES = ("pyproject.toml", "README.md", "validator")
GIT = ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com"]


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _offline_pip() -> dict[str, str]:
    if not WHEELS.is_dir():
        pytest.fail(f"{WHEELS} is missing: run `make setup`")
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELS), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _user_env(tmp: Path, *path: Path) -> dict[str, str]:
    """A user's environment: the pinned helm and kubeconform alone on PATH (plus ``path``), a home and
    a cache of its own, nothing from this repo."""
    bindir = tmp / "tools-bin"
    bindir.mkdir(exist_ok=True)
    for tool in ("helm", "kubeconform"):
        if not (bindir / tool).exists():
            (bindir / tool).symlink_to(TOOLS / tool)
    (tmp / "home").mkdir(exist_ok=True)
    return {"PATH": ":".join(map(str, (*path, bindir, "/usr/bin", "/bin"))), "HOME": str(tmp / "home"),
            "XDG_CACHE_HOME": str(tmp / "cache"), "LANG": "C.UTF-8",
            # The render cache outside the scanned tree (issue 14 item 3 makes that the default).
            "GITOPS_VALIDATE_CACHE": str(tmp / "render-cache")}


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> tuple[Path, Path]:
    """The wheel built from a copy of the sources, installed into a fresh venv: (wheel, venv bin)."""
    tmp = tmp_path_factory.mktemp("install")
    env = {**tool_env(), **_offline_pip()}
    (tmp / "src").mkdir()
    for name in BUILD_FILES:  # a copy: building in place would leave build/ in this repo
        src = ROOT / name
        (shutil.copytree(src, tmp / "src" / name, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy(src, tmp / "src" / name))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp / "dist", tmp / "src"], env=env)
    wheel = next((tmp / "dist").glob("*.whl"))
    _run([sys.executable, "-m", "venv", "--without-pip", tmp / "venv"])  # this pip installs into it
    _run([sys.executable, "-m", "pip", "--python", tmp / "venv" / "bin" / "python", "install", wheel], env=env)
    return wheel, tmp / "venv" / "bin"


def test_wheel_carries_the_argocd_schemas_and_the_pins(wheel_venv):
    wheel, _ = wheel_venv
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in ("application", "applicationset", "appproject"):
        assert f"{PKG}/data/crds/argoproj.io/{kind}_v1alpha1.json" in names
    assert {f"{PKG}/data/NOTICE", f"{PKG}/data/crds/api-versions.txt", f"{PKG}/cli.py"} <= names
    assert zipfile.ZipFile(wheel).read(f"{PKG}/data/versions").decode() == (ROOT / "versions").read_text()
    assert {n.split("/")[0] for n in names} == {PKG, wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}


def test_wheel_validates_a_user_repository_like_this_repo_does(wheel_venv, tmp_path):
    _, venv = wheel_venv
    repo = make_user_repo(tmp_path / "deploy", str(TOOLS / "helm"))
    env = _user_env(tmp_path, venv)
    where = _run([venv / "python", "-c", f"import {PKG}; print({PKG}.__file__)"], cwd=repo, env=env).stdout
    assert where.startswith(str(venv.parent)), where  # the installed package, not this repo's

    def both() -> tuple[subprocess.CompletedProcess, object]:
        user = subprocess.run([venv / "gitops-validate", "--format", "json"], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=300)
        ours = run_cli("--format", "json", cwd=repo,
                       env={**tool_env(), "GITOPS_VALIDATE_CACHE": str(tmp_path / "our-render-cache")})
        assert user.returncode == ours.code, user.stderr + ours.err
        mine = __import__("json").loads(user.stdout)
        assert mine["findings"] == ours.json["findings"]
        assert (mine["summary"]["apps"], mine["summary"]["objects"]) == (ours.json["summary"]["apps"], ours.json["summary"]["objects"])
        return user, mine

    user, doc = both()
    assert user.returncode == 0 and doc["summary"]["apps"] == 3 and doc["summary"]["objects"] >= 8, user.stdout
    minor = "v" + ".".join(VERSIONS["KUBERNETES_VERSION"].lstrip("v").split(".")[:2])
    assert (tmp_path / "cache" / "gitops-validate" / "schemas" / "kubernetes" / minor / "deployment-apps-v1.json").is_file()

    for rel, text in BAD_CHANGE.items():
        (repo / rel).write_text(text)
    user, doc = both()
    assert user.returncode == 1 and {f["rule"] for f in doc["findings"] if f["severity"] == "error"} == BAD_RULES, user.stdout


def test_precommit_hook_from_a_clone_of_this_repo_blocks_a_bad_commit(tmp_path):
    head = _run(["git", "rev-parse", "HEAD"], cwd=ROOT).stdout.strip()
    hook_repo = tmp_path / "gitops-validate"
    _run(["git", "clone", "-q", ROOT, hook_repo])
    _run(["git", "checkout", "-q", head], cwd=hook_repo)
    repo = make_user_repo(tmp_path / "deploy", str(TOOLS / "helm"))
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hook_repo}\n    rev: {head}\n    hooks:\n      - id: gitops-validate\n")
    env = {**_user_env(tmp_path), **_offline_pip(), "PRE_COMMIT_HOME": str(tmp_path / "pre-commit")}
    pre_commit = Path(sys.executable).parent / "pre-commit"
    _run([pre_commit, "install"], cwd=repo, env=env)  # the documented one-time step
    _run(["git", "add", ".pre-commit-config.yaml"], cwd=repo, env=env)
    _run([*GIT, "commit", "-q", "-m", "pre-commit"], cwd=repo, env=env)

    for rel, text in BAD_CHANGE.items():
        (repo / rel).write_text(text)
    _run(["git", "add", "-A"], cwd=repo, env=env)
    bad = subprocess.run([*GIT, "commit", "-m", "bad"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0, bad.stdout
    said = bad.stdout + bad.stderr  # git runs hooks with their stdout on its stderr
    assert all(rule in said for rule in BAD_RULES), said
    assert _run(["git", "rev-list", "--count", "HEAD"], cwd=repo).stdout.strip() == "2"

    _run(["git", "checkout", "-q", "HEAD", "--", "."], cwd=repo, env=env)
    values = repo / "charts/guestbook/values-prod.yaml"
    values.write_text(values.read_text().replace("replicaCount: 2", "replicaCount: 3"))
    _run(["git", "add", "-A"], cwd=repo, env=env)
    good = _run([*GIT, "commit", "-m", "good"], cwd=repo, env=env)
    assert re.search(r"gitops-validate\.+Passed", good.stdout + good.stderr), good.stdout + good.stderr
    assert _run(["git", "rev-list", "--count", "HEAD"], cwd=repo).stdout.strip() == "3"
