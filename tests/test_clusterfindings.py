"""A whole-repository warm run takes a cluster's cross-object findings from the result cache
(resultcache.ResultCache.get_findings, keyed by pipeline._cluster_key), and changes no finding.

A whole-repository run with renders of its own (the cold run, the run after a change) stores them
too, under the key the next run makes from the result entries it stored (change 26): the first
warm run after a cold one runs no policy rule. On a generated two-cluster repo with planted
defects, the JSON findings of cold, warm and warm again are those of commit BASELINE (the code
before, `git archive`) and of a run with the cluster files deleted, and stay so after each kind
of change the key must see: a values file that breaks a cross-app reference, an Application in a
repository file, the cluster's capacity. A damaged or moved cluster file is recomputed, never
trusted; a cluster one of whose renders no result entry could hold gets no cluster file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import synth
from conftest import tool_env
from gitops_validate import config as config_mod, pipeline, policy, resultcache
from gitops_validate.rules import REGISTRY
from test_incremental import code_at, old
from test_resultcache import cache_env, edit, plant, validate

#: The code before the cold run stored the cluster findings (issue 13, change 26); change 20's
#: tests compared with 64f603a, before any cluster findings were stored, and this code matched it.
BASELINE = "2a5afac"
#: The clusters' findings files of a cold run of ``repo``: its two clusters and the Argo CD
#: objects of no cluster (read from files).
CLUSTERS = 3


@pytest.fixture(scope="module")
def baseline_code(tmp_path_factory) -> Path:
    return code_at(BASELINE, tmp_path_factory.mktemp("baseline"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return plant(synth.make_repo(tmp_path / "repo", 6, clusters=2, defects=True))


def cluster_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").glob(f"*{resultcache.CLUSTER_SUFFIX}"))


def without_cluster_files(repo: Path, env: dict, tmp_path: Path) -> tuple[int, list]:
    """A run that finds no cluster file (every cluster evaluated, and stored again)."""
    for p in cluster_files(tmp_path):
        p.unlink()
    return validate(repo, env=env)


def evaluated(repo: Path, tmp_path: Path, monkeypatch) -> tuple[list, int]:
    """An in-process run: its findings and how many times it ran the policy rules."""
    for k, v in tool_env().items():
        monkeypatch.setenv(k, v)
    calls: list[int] = []
    real = policy.evaluate
    monkeypatch.setattr(policy, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = config_mod.load(repo / ".gitops-validator.yaml", set(REGISTRY))
    found = pipeline.run(pipeline.Options(repo=repo, config=cfg, cache_dir=tmp_path / "cache")).findings
    monkeypatch.undo()
    return found, len(calls)


@pytest.mark.parametrize("change", ["values, a broken reference", "an Application file", "capacity"])
def test_warm_findings_are_those_of_the_baseline_and_follow_each_change(repo, tmp_path, baseline_code, change):
    env = cache_env(tmp_path)
    expected = old(baseline_code, repo)
    assert validate(repo, env=env) == expected          # cold: fresh renders, stored per cluster once their entries are
    assert len(cluster_files(tmp_path)) == CLUSTERS
    assert validate(repo, env=env) == expected          # warm: from the cluster files the cold run stored
    assert validate(repo, env=env) == expected          # warm again
    assert len(cluster_files(tmp_path)) == CLUSTERS
    assert without_cluster_files(repo, env, tmp_path) == expected
    if change == "capacity":   # a cluster-wide sum: the cluster's facts are in the key
        edit(repo, "clusters/cluster1/cluster.yaml", 'cpu: "4"', 'cpu: "1"')
    elif change == "an Application file":   # a repository file read by discovery: its bytes are in the key
        edit(repo, "argocd/root-minikube.yaml", "  project: todo-bootstrap\n", "  project: todo\n")
    else:   # backend0's Service moves away from the port frontend1 calls: a finding on frontend1
        edit(repo, "clusters/minikube/values/backend0.yaml", "port: 8001", "port: 8005")
    changed = old(baseline_code, repo)
    assert changed != expected
    assert validate(repo, env=env) == changed          # renders of its own: stored per cluster
    assert validate(repo, env=env) == changed
    assert validate(repo, env=env) == changed
    assert without_cluster_files(repo, env, tmp_path) == changed


def test_a_warm_run_runs_no_policy_rule_and_a_path_scoped_one_does(repo, tmp_path, monkeypatch):
    first, runs = evaluated(repo, tmp_path, monkeypatch)
    assert runs > 0 and len(cluster_files(tmp_path)) == CLUSTERS   # cold: evaluated and stored
    again, runs_again = evaluated(repo, tmp_path, monkeypatch)
    assert again == first and runs_again == 0                      # the first warm run: from the files
    assert evaluated(repo, tmp_path, monkeypatch) == (first, 0)
    # a whole-repository run after a change (one fresh render) stores too: the run after it hits
    edit(repo, "clusters/minikube/values/backend0.yaml", "port: 8001", "port: 8005")
    changed, runs_changed = evaluated(repo, tmp_path, monkeypatch)
    assert runs_changed > 0 and changed != first
    assert evaluated(repo, tmp_path, monkeypatch) == (changed, 0)
    edit(repo, "clusters/minikube/values/backend0.yaml", "port: 8005", "port: 8001")
    assert evaluated(repo, tmp_path, monkeypatch) == (first, 0)    # back to the first inputs: its files still hold
    # a path-scoped run reports on part of the cluster: it evaluates, as before
    cfg = config_mod.load(repo / ".gitops-validator.yaml", set(REGISTRY))
    calls: list[int] = []
    real = policy.evaluate
    monkeypatch.setattr(policy, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    for k, v in tool_env().items():
        monkeypatch.setenv(k, v)
    scoped = pipeline.run(pipeline.Options(repo=repo, config=cfg, paths=["clusters/minikube/values/frontend3.yaml"],
                                           cache_dir=tmp_path / "cache")).findings
    assert calls and scoped and {f.app for f in scoped} < {f.app for f in first}


def test_a_render_whose_entry_is_not_stored_leaves_its_cluster_evaluated(repo, tmp_path, baseline_code, monkeypatch):
    """A cold run that could not store one render's result entry (ResultCache.put refused it, as it
    does for an object JSON cannot carry or a failed write) stores no findings for that cluster:
    the next run renders it again and evaluates it, and the findings stay the baseline's."""
    real = resultcache.ResultCache.put
    refused: list[str] = []

    def put(self, key, entry):   # refuse the first entry of a backend0 (one of the two clusters)
        if not refused and any(o.doc.get("metadata", {}).get("name") == "backend0-todo-backend" for o in entry.objects):
            refused.append(key)
            return False
        return real(self, key, entry)

    monkeypatch.setattr(resultcache.ResultCache, "put", put)
    assert evaluated(repo, tmp_path, monkeypatch)[1] > 0 and refused
    monkeypatch.undo()
    assert len(cluster_files(tmp_path)) == CLUSTERS - 1   # the other cluster and the objects of no cluster
    env = cache_env(tmp_path)
    assert validate(repo, env=env) == old(baseline_code, repo)   # renders it again, evaluates its cluster, stores
    assert len(cluster_files(tmp_path)) == CLUSTERS
    assert evaluated(repo, tmp_path, monkeypatch)[1] == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated", "emptied", "another key", "foreign class"])
def test_a_damaged_cluster_file_is_recomputed_not_trusted(repo, tmp_path, damage):
    env = cache_env(tmp_path)
    validate(repo, env=env)
    good = validate(repo, env=env)
    files = cluster_files(tmp_path)
    assert files and any(json.loads(json.loads(p.read_text())["findings"]) for p in files)
    for i, p in enumerate(files):
        text = p.read_text()
        data = json.loads(text)
        other = files[(i + 1) % len(files)]
        p.write_text({"garbage": "\x00not json",
                      "truncated": text[: len(text) // 2],
                      # no findings, the digest of the old ones: trusting it would drop every finding
                      "emptied": json.dumps({**data, "findings": "[]"}),
                      "another key": other.read_text() if other != p else json.dumps({**data, "key": "0" * 64}),
                      "foreign class": text.replace('\\"@\\": \\"Finding\\"', '\\"@\\": \\"Path\\"'),
                      }[damage])
    assert validate(repo, env=env) == good
    for p in files:   # rewritten with what was recomputed
        data = json.loads(p.read_text())
        assert data["key"] == p.name.removesuffix(resultcache.CLUSTER_SUFFIX)
    assert validate(repo, env=env) == good


def test_an_app_of_another_origin_keeps_the_cluster_evaluated(tmp_path):
    """Objects that come from no result-cache entry (a fresh render, kustomize, the Argo CD
    install, an ApplicationSet) leave the cluster without a key: evaluated every run."""
    assert pipeline._cluster_key(None, "c", [pipeline.Manifest({"kind": "ConfigMap"})], {}, set(),  # type: ignore[arg-type]
                                 "1.35.0", None, None, tmp_path, {}) is None  # type: ignore[arg-type]
