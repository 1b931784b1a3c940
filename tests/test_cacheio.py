"""The cache's own I/O stays true while it does less of it (issue 13, change 17).

- File digests are remembered by stat (real path, size, mtime, ctime, inode, device) and trusted
  only for a file whose times are ``RACY_NS`` older than the run that hashed it: a same-size edit
  with its mtime put back, a touch, a replace by rename and a symlink swap are all seen; a damaged
  memo is ignored.
- ``evict`` scans the folder only when the last scan's total plus the logged writes may pass the
  bound; the bound holds after every run, with concurrent writers, a damaged or old marker, and
  writes nobody logged (the daily rescan).
- Every write of a real run into the cache folder is logged (kustomize's included).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, TOOLS, run_cli, tool_env
from gitops_validate import rendercache
from gitops_validate.render import RenderRequest
from gitops_validate.rendercache import RenderCache


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """The files read and hashed (a spy: the real hash still runs)."""
    seen: list[str] = []
    real = rendercache._file_digest

    def spy(path: Path) -> str:
        seen.append(str(path))
        return real(path)
    monkeypatch.setattr(rendercache, "_file_digest", spy)
    return seen


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def settle() -> None:
    """Past the racy window: a file written before this is trusted by a run started after it."""
    time.sleep(rendercache.RACY_NS / 1e9 + 0.2)


def run_digests(cache: Path, files: list[Path]) -> list[str]:
    """One run: a new RenderCache, every file's digest, the memo saved as the pipeline does."""
    rc = RenderCache(cache)
    out = [rc.digest(os.path.realpath(f)) for f in files]
    rc.save_digests()
    return out


def test_a_memoised_digest_is_used_and_every_kind_of_edit_is_seen(tmp_path, hashed):
    d = tmp_path / "repo"
    d.mkdir()
    names = ["same-size", "touched", "renamed-over", "unchanged"]
    files = [d / f"{n}.yaml" for n in names]
    for f in files:
        f.write_text("pullPolicy: Always\n")
    settle()
    cache = tmp_path / "cache"
    assert run_digests(cache, files) == [sha(f) for f in files]
    assert len(hashed) == 4
    hashed.clear()
    assert run_digests(cache, files) == [sha(f) for f in files]
    assert hashed == [], "an old, unchanged file is hashed again: the memo is not used"

    same_size, touched, renamed_over, _ = files
    st = same_size.stat()
    same_size.write_text("pullPolicy: Never_\n")           # same size ...
    os.utime(same_size, ns=(st.st_atime_ns, st.st_mtime_ns))   # ... and the same mtime
    assert same_size.stat().st_size == st.st_size and same_size.stat().st_mtime_ns == st.st_mtime_ns
    os.utime(touched)
    other = d / "other.tmp"
    other.write_text("pullPolicy: Neverr\n")
    st = renamed_over.stat()
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, renamed_over)
    hashed.clear()
    assert run_digests(cache, files) == [sha(f) for f in files]
    assert sorted(hashed) == sorted(map(str, files[:3]))   # the unchanged one from the memo


def test_a_file_changed_just_before_the_run_that_hashed_it_is_hashed_again(tmp_path, hashed):
    """git's racy-clean rule: a write in the same timestamp tick after the hash would keep the
    stamp, so a digest is trusted only once the file is older than its hashing run by RACY_NS."""
    f = tmp_path / "values.yaml"
    f.write_text("a: 1\n")
    cache = tmp_path / "cache"
    run_digests(cache, [f])
    hashed.clear()
    run_digests(cache, [f])
    assert hashed == [str(f)]


def test_a_symlink_swap_changes_the_render_key(tmp_path):
    repo = tmp_path / "repo"
    (repo / "chart" / "templates").mkdir(parents=True)
    (repo / "chart" / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (repo / "a.yaml").write_text("x: 1\n")
    (repo / "b.yaml").write_text("x: 2\n")
    st = (repo / "a.yaml").stat()
    os.utime(repo / "b.yaml", ns=(st.st_atime_ns, st.st_mtime_ns))
    (repo / "values.yaml").symlink_to("a.yaml")
    settle()
    req = RenderRequest(app="a", chart="chart", release="a", namespace="n", kube_version="1.30.0",
                        api_versions=(), value_files=["values.yaml"], values_yaml=None)
    cache = tmp_path / "cache"
    helm = str(TOOLS / "helm")

    def key() -> str:
        rc = RenderCache(cache)
        k = rc.key(repo, req, helm)
        rc.save_digests()
        return k
    first = key()
    assert key() == first
    (repo / "values.yaml").unlink()
    (repo / "values.yaml").symlink_to("b.yaml")
    swapped = key()
    assert swapped != first and key() == swapped
    (repo / "values.yaml").unlink()
    (repo / "values.yaml").symlink_to("a.yaml")
    assert key() == first


@pytest.mark.parametrize("damage", ["garbage", "wrong shape", "wrong digest type"])
def test_a_damaged_memo_is_ignored(tmp_path, hashed, damage):
    f = tmp_path / "values.yaml"
    f.write_text("a: 1\n")
    settle()
    cache = tmp_path / "cache"
    run_digests(cache, [f])
    memo = cache / rendercache.DIGESTS
    memo.write_text({"garbage": "\0{not json",
                     "wrong shape": '{"format": 1, "files": [1, 2]}',
                     "wrong digest type": memo.read_text().replace(f'"{sha(f)}"', "7")}[damage])
    hashed.clear()
    assert run_digests(cache, [f]) == [sha(f)]
    assert hashed == [str(f)]
    hashed.clear()
    assert run_digests(cache, [f]) == [sha(f)] and hashed == []   # rewritten, trusted again


# --- eviction: a scan only when the folder may be over its bound ---------------------------

def folder_size(d: Path) -> int:
    return sum(e.stat().st_size for e in os.scandir(d) if e.is_file(follow_symlinks=False))


@pytest.fixture
def scans(monkeypatch) -> list[int]:
    seen: list[int] = []
    real = RenderCache._scan_and_evict

    def spy(self, d):
        seen.append(1)
        return real(self, d)
    monkeypatch.setattr(RenderCache, "_scan_and_evict", spy)
    return seen


def test_the_bound_holds_after_every_run_and_few_runs_scan(tmp_path, scans):
    cache = tmp_path / "cache"
    bound = 200_000
    for run in range(60):
        rc = RenderCache(cache, bound)
        for i in range(3):
            rc.put(f"{run:04d}{i:060d}", "x" * 2_000)   # 6 KB a run: over the bound every ~30 runs
        rc.evict()
        assert folder_size(cache) <= bound, run
    # the first run (no marker), when it fills (run 33) and then every few runs (evicted to LOW_WATER)
    assert 3 <= len(scans) <= 9, len(scans)
    kept = sorted(p.name for p in cache.glob("*.yaml"))
    assert kept[-1].startswith("0059") and not kept[0].startswith("0000")   # oldest went first


def test_concurrent_writers_keep_the_bound(tmp_path):
    cache = tmp_path / "cache"
    bound = 300_000

    def worker(n: int) -> None:
        for run in range(15):
            rc = RenderCache(cache, bound)
            for i in range(4):
                rc.put(f"{n:02d}{run:04d}{i:058d}", "y" * 3_000)
            rc.evict()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    RenderCache(cache, bound).evict()   # any run after them
    assert folder_size(cache) <= bound
    assert len(list(cache.glob("*.yaml"))) > 50   # it evicted down to the bound, not everything


@pytest.mark.parametrize("how", ["no marker", "damaged marker", "damaged log", "old marker"])
def test_an_unknown_size_is_scanned(tmp_path, scans, how):
    """Writes nobody logged (by hand, a crash between a write and its log line) are found by the
    scan a missing, damaged or day-old marker forces."""
    cache = tmp_path / "cache"
    bound = 100_000
    rc = RenderCache(cache, bound)
    rc.put("a" * 64, "z" * 1_000)
    rc.evict()
    for i in range(5):   # 150 KB nobody logged
        (cache / f"{i:064x}.yaml").write_text("w" * 30_000)
    scans.clear()
    RenderCache(cache, bound).evict()
    assert scans == [], "a fresh marker and a valid log: no scan"
    marker, log = cache / rendercache.SCANNED, cache / rendercache.WRITTEN
    if how == "no marker":
        marker.unlink()
    elif how == "damaged marker":
        marker.write_text("12\0x")
    elif how == "damaged log":
        log.write_text("12\nnot a number\n")
    else:
        old = time.time() - rendercache.SCAN_MAX_AGE_S - 60
        os.utime(marker, (old, old))
    RenderCache(cache, bound).evict()
    assert scans == [1] and folder_size(cache) <= bound


def test_every_write_of_a_run_is_logged(tmp_path):
    """A cold run on this repo (helm renders, result entries, kubeconform verdicts, the Argo CD
    install's kustomize build, memos): the marker's total plus the log covers the folder."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / rendercache.SCANNED).write_text("0")   # a fresh scan of an empty folder
    env = tool_env() | {"GITOPS_VALIDATE_CACHE": str(cache)}
    r = run_cli("--repo", str(ROOT), "--format", "json", env=env)
    assert r.code == 0, r.out + r.err
    assert list(cache.glob("*.kustomize.json")), "the install's build was not cached"
    log = (cache / rendercache.WRITTEN).read_bytes()
    marker = (cache / rendercache.SCANNED).read_bytes()
    assert int(marker) + len(marker) + len(log) + sum(map(int, log.split())) >= folder_size(cache)


# --- the same findings as the code before this change ----------------------------------------

#: The last commit before change 17 (the cache's I/O).
BEFORE_IO = "8e98044"


@pytest.fixture(scope="module")
def io_before(tmp_path_factory) -> Path:
    from test_incremental import code_at
    return code_at(BEFORE_IO, tmp_path_factory.mktemp("before-io"))


def test_findings_identical_to_the_code_before_cold_warm_path_scoped_and_evicting(tmp_path, io_before):
    """On a generated repo with planted defects: whole repo cold, warm and warm with every digest
    from the memo; a path-scoped run after a same-size edit whose mtime was put back; and all of it
    again under a bound so small that every run evicts."""
    import synth
    from test_incremental import old
    from test_resultcache import CHANGED, cache_env, edit, plant, validate
    repo = plant(synth.make_repo(tmp_path / "repo", 6, defects=True))
    small = tmp_path / "small.yaml"
    small.write_text((repo / ".gitops-validator.yaml").read_text() + "limits: {cacheMaxMegabytes: 0.05}\n")
    settle()
    whole = old(io_before, repo)
    assert whole[0] == 1 and len({f["rule"] for f in whole[1]}) >= 4, whole
    env, tight = cache_env(tmp_path), cache_env(tmp_path, "tight")
    for _ in range(3):   # cold, warm, warm with the memo written by a run after settle()
        assert validate(repo, env=env) == whole
        assert validate(repo, "--config", str(small), env=tight) == old(io_before, repo, "--config", str(small))
    assert folder_size(tmp_path / "tight") <= 0.05 * 2**20
    st = (repo / CHANGED).stat()
    edit(repo, CHANGED, "replicaCount: 2", "replicaCount: 3")
    os.utime(repo / CHANGED, ns=(st.st_atime_ns, st.st_mtime_ns))
    expected = old(io_before, repo, CHANGED)
    assert validate(repo, CHANGED, env=env) == expected
    assert validate(repo, CHANGED, "--config", str(small), env=tight) == old(io_before, repo, CHANGED, "--config", str(small))
    assert validate(repo, env=env) == old(io_before, repo)
