"""Shared fixtures: the real tools from `make setup`, and a way to run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.harness import copy_repo, read_versions

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools" / "bin"
CLI = Path(sys.executable).parent / "gitops-validate"
VERSIONS = read_versions()


def tool_env(path_prefix: str | None = None) -> dict[str, str]:
    """Environment with the pinned tools first on PATH. Missing tools fail the test, never skip it."""
    for tool in ("helm", "kubeconform", "kustomize"):
        if not (TOOLS / tool).is_file():
            pytest.fail(f"{TOOLS / tool} is missing: run `make setup`")
    env = dict(os.environ)
    env["PATH"] = f"{path_prefix or TOOLS}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("NO_COLOR", None)
    env["GITOPS_VALIDATE_SCHEMA_DIR"] = str(ROOT / ".tools" / "schemas")
    # one render cache for every test repo (keys cover all inputs), not one per tmp repo in ~/.cache
    env.setdefault("GITOPS_VALIDATE_CACHE", str(ROOT / ".cache" / "gitops-validate"))
    return env


def helm_logged(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """``tool_env`` whose helm is the pinned one behind a wrapper that writes each call's arguments
    as a line of the returned log file (how tests count and inspect helm runs)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "helm.log"
    (bindir / "helm").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {TOOLS / "helm"} "$@"\n')
    (bindir / "helm").chmod(0o755)
    (bindir / "kubeconform").symlink_to(TOOLS / "kubeconform")
    return tool_env(str(bindir)), log


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)

    def rules(self, severity: str = "error") -> set[str]:
        return {f["rule"] for f in self.json["findings"] if f["severity"] == severity}


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, stdin: str | None = None, timeout: int = 120) -> Run:
    p = subprocess.run([str(CLI), *args], cwd=cwd, env=env or tool_env(), input=stdin,
                       capture_output=True, text=True, timeout=timeout)
    return Run(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """This repository's tracked and untracked files in a fresh git repo (tools and venv left out)."""
    dest = tmp_path / "repo"
    copy_repo(dest)
    return dest
