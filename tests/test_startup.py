"""This repository's warm run and start-up (issue 13, change 21) change no finding.

- kubeconform's verdict keys hash the object's text as it is (not quoted as JSON again);
- the validator's source digest is remembered by its files' stamps;
- the Argo CD install's objects are kept as built, each with its JSON (``kustomize._store_built``);
- the thread pool, difflib, zipfile and pathlib (for `--help`) are imported where they are used.

The JSON findings are compared with the code before (BEFORE, from `git archive`) on this repository
with defects planted in the install and beside it, and on a generated repo with planted defects:
cold, warm (twice: the second from what the first kept) and path-scoped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import synth
from test_incremental import code_at, old
from test_resultcache import edit, plant
from test_values_memo import append, new

#: The last commit before change 21.
BEFORE = "64f603a"
PATCH = "argocd/patches/argocd-server-nodeport.yaml"
VALUES = "clusters/minikube/values/todo-frontend.yaml"


@pytest.fixture(scope="module")
def before_code(tmp_path_factory) -> Path:
    return code_at(BEFORE, tmp_path_factory.mktemp("before"))


def test_this_repo_with_install_defects_findings_identical_to_before(repo_copy, before_code, tmp_path):
    cache = tmp_path / "cache"
    assert new(repo_copy, cache=cache) == old(before_code, repo_copy)
    # a bogus field in an install patch (schema/invalid at its line), an app's NodePort on Argo CD's
    edit(repo_copy, PATCH, "      nodePort: 30443\n", "      nodePort: 30443\n      bogus: 1\n")
    edit(repo_copy, VALUES, "nodePort: 30000", "nodePort: 30080")
    want = old(before_code, repo_copy)
    for _ in range(3):   # cold, then twice from what the runs before kept
        assert new(repo_copy, cache=cache) == want
    assert {"schema/invalid", "refs/nodeport"} <= {f["rule"] for f in want[1]}, want
    for changed in (PATCH, VALUES):
        append(repo_copy, changed, "# edited\n")
        for _ in range(2):
            assert new(repo_copy, changed, cache=cache) == old(before_code, repo_copy, changed), changed


def test_a_planted_repo_findings_identical_to_before(tmp_path, before_code):
    repo = plant(synth.make_repo(tmp_path / "repo", 6, defects=True))
    cache = tmp_path / "cache"
    want = old(before_code, repo)
    for _ in range(3):
        assert new(repo, cache=cache) == want
    changed = "clusters/minikube/values/backend0.yaml"
    append(repo, changed, "# edited\n")
    for _ in range(2):
        assert new(repo, changed, cache=cache) == old(before_code, repo, changed)
    assert {"refs/nodeport"} <= {f["rule"] for f in want[1]}, want
