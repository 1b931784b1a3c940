"""The composite GitHub Action (action.yml): its shell steps pass shellcheck, and the validate step,
run here as the runner would run it, honours fail-on and writes the SARIF it uploads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TOOLS, tool_env
from user_repo import BAD_CHANGE, make_user_repo

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
STEPS = {s["name"]: s for s in ACTION["runs"]["steps"]}


def test_action_shape():
    assert ACTION["runs"]["using"] == "composite"
    assert set(ACTION["inputs"]) == {"paths", "format", "kubernetes-version", "fail-on", "config", "upload-sarif"}
    upload = STEPS["upload the findings (SARIF)"]["uses"]
    name, _, ref = upload.partition("@")
    assert name == "github/codeql-action/upload-sarif" and len(ref) == 40 and int(ref, 16) >= 0  # pinned by SHA
    for step in STEPS.values():
        if "run" in step:  # inputs reach the shell through env only, never pasted into the script
            assert "${{" not in step["run"], step["name"]


@pytest.mark.parametrize("name", [n for n, s in STEPS.items() if "run" in s])
def test_action_scripts_pass_shellcheck(name, tmp_path):
    script = tmp_path / "step.sh"
    script.write_text("#!/usr/bin/env bash\n" + STEPS[name]["run"])
    shellcheck = Path(sys.executable).parent / "shellcheck"
    p = subprocess.run([shellcheck, "-S", "warning", str(script)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout


@pytest.fixture(scope="module")
def bad_repo(tmp_path_factory) -> Path:
    repo = make_user_repo(tmp_path_factory.mktemp("action") / "deploy", str(TOOLS / "helm"))
    for rel, text in BAD_CHANGE.items():
        (repo / rel).write_text(text)
    return repo


@pytest.mark.parametrize(("fail_on", "code"), [("error", 1), ("never", 0), ("bogus", 2)])
def test_validate_step_fail_on(bad_repo, tmp_path, fail_on, code):
    out = tmp_path / "github-output"
    env = {**tool_env(), "RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(out), "PATHS": "", "FORMAT": "github",
           "KUBE": "1.35", "FAIL_ON": fail_on, "CONFIG": "", "GITOPS_VALIDATE_CACHE": str(tmp_path / "render")}
    p = subprocess.run(["bash", "-c", STEPS["gitops-validate"]["run"]], cwd=bad_repo, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == code, p.stdout + p.stderr
    assert "::error file=manifests/redis/service.yaml,line=9,title=refs/target-port::" in p.stdout
    sarif = json.loads((tmp_path / "gitops-validate.sarif").read_text())
    assert {r["ruleId"] for r in sarif["runs"][0]["results"]} >= {"refs/target-port", "images/latest-tag"}
    assert out.read_text() == f"sarif-file={tmp_path / 'gitops-validate.sarif'}\n"
