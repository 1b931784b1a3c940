"""Per-path and per-rule exclusions (with globs) and the baseline (issue 14 item 6), on the
generated Argo CD repository of tests/user_repo.py with its bad change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TOOLS, run_cli, tool_env
from user_repo import BAD_CHANGE, BAD_RULES, FILES, make_user_repo

from gitops_validate import config as config_mod
from gitops_validate.rules import REGISTRY
from gitops_validate.suppress import path_matches


@pytest.mark.parametrize(("path", "patterns", "hit"), [
    ("apps/legacy/templates/a.yaml", ["apps/legacy"], True),
    ("apps/legacy/templates/a.yaml", ["apps/legacy/"], True),
    ("apps/legacy2/a.yaml", ["apps/legacy"], False),
    ("apps/x/templates/a.yaml", ["apps/*/templates/*.yaml"], True),
    ("apps/x/y/templates/a.yaml", ["apps/*/templates/*.yaml"], False),
    ("apps/x/y/templates/a.yaml", ["apps/**/templates/*.yaml"], True),
    ("a.yaml", ["**/a.yaml"], True),
    ("deep/er/a.yaml", ["**/a.yaml"], True),
    ("b.yaml", ["**/a.yaml"], False),
    (None, ["**"], False),
])
def test_path_globs(path, patterns, hit):
    assert path_matches(path, patterns) is hit


def test_rule_globs_and_settings(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rules:\n  secrets/*: warning\n  secrets/literal-value: error\n"
                   "  images/latest-tag: {severity: off}\n  refs/*: {exclude: [legacy/**]}\nexclude: [vendor]\n")
    c = config_mod.load(cfg, set(REGISTRY))
    secrets = [r for r in REGISTRY if r.startswith("secrets/")]
    assert len(secrets) > 1
    assert all(c.severities[r].value == ("error" if r == "secrets/literal-value" else "warning") for r in secrets)
    assert c.severities["images/latest-tag"] is None
    assert c.rule_exclude["refs/target-port"] == ("legacy/**",) and c.exclude == ("vendor",)
    cfg.write_text("rules:\n  secret/*: warning\n")
    with pytest.raises(config_mod.ConfigError, match="unknown rule 'secret/\\*'"):
        config_mod.load(cfg, set(REGISTRY))
    cfg.write_text("rules:\n  refs/*: {exclude: legacy}\n")
    with pytest.raises(config_mod.ConfigError, match="c.yaml:2"):
        config_mod.load(cfg, set(REGISTRY))


@pytest.fixture
def bad_repo(tmp_path) -> Path:
    repo = make_user_repo(tmp_path / "deploy", str(TOOLS / "helm"))
    for rel, text in BAD_CHANGE.items():
        (repo / rel).write_text(text)
    return repo


def _run(repo: Path, *args: str):
    env = {**tool_env(), "GITOPS_VALIDATE_CACHE": str(repo.parent / "render-cache")}
    return run_cli("--format", "json", *args, cwd=repo, env=env)


def test_exclusions_in_the_config(bad_repo):
    assert _run(bad_repo).rules() == BAD_RULES
    config = bad_repo / ".gitops-validator.yaml"
    base = config.read_text()
    config.write_text(base + "exclude: [manifests/redis]\n")
    assert _run(bad_repo).rules() == BAD_RULES - {"refs/target-port"}
    config.write_text(base + "rules:\n  images/*:\n    exclude: ['charts/*/templates/**']\n")
    assert _run(bad_repo).rules() == BAD_RULES - {"images/latest-tag"}
    config.write_text(base + "rules:\n  images/*:\n    exclude: ['charts/other/**']\n")
    assert _run(bad_repo).rules() == BAD_RULES


def test_baseline_blocks_only_new_findings(bad_repo):
    baseline = bad_repo / "gitops-validate-baseline.json"
    n = len(_run(bad_repo).json["findings"])  # the errors of BAD_RULES, and warnings
    r = _run(bad_repo, "--write-baseline", str(baseline))
    assert r.code == 0 and f"recorded {n} finding(s)" in r.err
    assert BAD_RULES <= {e["rule"] for e in json.loads(baseline.read_text())["findings"]}
    r = _run(bad_repo, "--baseline", str(baseline))
    assert r.code == 0 and r.json["findings"] == [] and f"{n} known finding(s)" in r.err

    # Lines added above a known finding move it; it stays known.
    svc = bad_repo / "manifests/redis/service.yaml"
    svc.write_text("# the cache\n# of the app\n" + svc.read_text())
    r = _run(bad_repo, "--baseline", str(baseline))
    assert r.code == 0 and r.json["findings"] == []

    # A new problem is reported, the known ones still are not.
    dep = bad_repo / "manifests/redis/deployment.yaml"
    dep.write_text(dep.read_text().replace("redis:7.4.2", "redis:latest"))
    r = _run(bad_repo, "--baseline", str(baseline))
    assert r.code == 1 and [(f["rule"], f["file"]) for f in r.json["findings"]] == [
        ("images/latest-tag", "manifests/redis/deployment.yaml")]

    # A fixed finding leaves a stale entry: said, not an error.
    dep.write_text(FILES["manifests/redis/deployment.yaml"])
    svc.write_text(FILES["manifests/redis/service.yaml"])
    r = _run(bad_repo, "--baseline", str(baseline))
    assert r.code == 0 and "1 baseline entry no longer occurs" in r.err


def test_a_bad_baseline_is_exit_2(bad_repo):
    for text in ("not json", '{"findings": []}', '{"version": 1, "findings": [{"rule": "x"}]}'):
        (bad_repo / "b.json").write_text(text)
        r = _run(bad_repo, "--baseline", str(bad_repo / "b.json"))
        assert r.code == 2 and "b.json" in r.err and "Traceback" not in r.err, r.err
    r = _run(bad_repo, "--baseline", str(bad_repo / "missing.json"))
    assert r.code == 2 and "cannot read" in r.err
