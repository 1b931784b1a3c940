"""A render cache that cannot lie (issue 9): keyed by helm's content, the real paths and contents of
every file that feeds a render and the validator's version; atomic thread-safe writes; an unusable
cache degrades to none with one warning; it lives outside the repo and is never read as repo content;
its size is bounded."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from conftest import ROOT, TOOLS, run_cli, tool_env
from gitops_validate import rendercache
from gitops_validate.rendercache import RenderCache


def validate(repo: Path, cache: Path | None, *args: str, bindir: Path | None = None, env_extra: dict | None = None):
    env = tool_env(str(bindir) if bindir else None)
    env.pop("GITOPS_VALIDATE_CACHE")
    if cache:
        env["GITOPS_VALIDATE_CACHE"] = str(cache)
    env.update(env_extra or {})
    return run_cli("--repo", str(repo), "--format", "json", "-v", *args, env=env)


def renders(r) -> str:
    line = next(x for x in r.err.splitlines() if "helm render(s)" in x)
    return line.removeprefix("gitops-validate: ")


def test_a_helm_switched_behind_the_same_path_misses_the_cache(tmp_path):
    """A shim rewritten in place (same path, size and mtime, other helm behind it) gives another key."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "kubeconform").symlink_to(TOOLS / "kubeconform")
    for name in ("helm-a", "helm-b"):
        (bindir / name).symlink_to(TOOLS / "helm")
    shim = bindir / "helm"
    shim.write_text(f'#!/bin/sh\nexec "{bindir}/helm-a" "$@"\n')
    shim.chmod(0o755)
    cache = tmp_path / "cache"
    assert validate(ROOT, cache, bindir=bindir).code == 0
    assert renders(validate(ROOT, cache, bindir=bindir)) == "0 helm render(s), 3 from cache"
    st = shim.stat()
    shim.write_text(f'#!/bin/sh\nexec "{bindir}/helm-b" "$@"\n')
    os.utime(shim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert renders(validate(ROOT, cache, bindir=bindir)) == "3 helm render(s), 0 from cache"


def test_a_symlinked_template_directory_is_part_of_the_key(repo_copy, tmp_path):
    """A chart whose templates/ is a link inside the repo: editing the target must re-render."""
    chart, shared = repo_copy / "apps/todo-backend", repo_copy / "apps/shared"
    shared.mkdir()
    (shared / "Chart.yaml").write_text("apiVersion: v2\nname: shared\nversion: 0.1.0\n")
    shutil.move(chart / "templates", shared / "templates")
    (chart / "templates").symlink_to("../shared/templates")
    cache = tmp_path / "cache"
    assert validate(repo_copy, cache).code == 0
    svc = shared / "templates/service.yaml"
    svc.write_text(svc.read_text().replace("  type: {{ .Values.service.type }}\n",
                                           "  type: {{ .Values.service.type }}\n  typo: 1\n"))
    r = validate(repo_copy, cache)
    assert r.code == 1, "a stale cached render passed"
    assert renders(r) == "1 helm render(s), 2 from cache"


def test_the_validator_version_is_part_of_the_key(monkeypatch, tmp_path):
    from gitops_validate.render import RenderRequest
    req = RenderRequest("a", "apps/todo-backend", "a", "ns", "v1.35.1", (), [], None)
    cache = RenderCache(tmp_path)
    before = cache.key(ROOT, req, str(TOOLS / "helm"))
    monkeypatch.setattr(rendercache, "__version__", "999")
    assert cache.key(ROOT, req, str(TOOLS / "helm")) != before


def test_concurrent_writes_of_one_key_are_atomic(tmp_path):
    cache = RenderCache(tmp_path / "c")
    texts = [f"kind: ConfigMap\n# writer {i}\n" + "x" * 100_000 for i in range(16)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(texts))

    def write(text: str) -> None:
        try:
            start.wait()
            for _ in range(20):
                cache.put("k", text)
                assert cache.get("k") in texts
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and cache.enabled
    # no temporary file left (beside the entry, the log of writes for the size bound)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [rendercache.WRITTEN, "k.yaml"]


def test_an_unusable_cache_is_no_cache_with_one_warning(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = validate(ROOT, blocker / "cache")
    assert r.code == 0, r.err
    warnings = [x for x in r.err.splitlines() if "warning" in x]
    assert len(warnings) == 1 and "render cache" in warnings[0], r.err
    assert renders(r) == "3 helm render(s), 0 from cache"


def test_the_default_cache_is_outside_the_repo(repo_copy, tmp_path):
    xdg = tmp_path / "xdg"
    r = validate(repo_copy, None, env_extra={"XDG_CACHE_HOME": str(xdg)})
    assert r.code == 0
    (entry,) = (xdg / "gitops-validate").iterdir()
    assert len(list(entry.glob("*.yaml"))) == 3
    assert not (repo_copy / ".cache").exists()


def test_a_cache_inside_the_repo_is_never_read_as_repo_content(repo_copy):
    """Not git-ignored, inside the tree: its rendered Applications once came back as duplicates."""
    cache = repo_copy / "render-cache"
    assert validate(repo_copy, cache).code == 0
    assert list(cache.glob("*.yaml"))
    r = validate(repo_copy, cache)
    assert r.code == 0, r.json["findings"]
    assert renders(r) == "0 helm render(s), 3 from cache"


def test_the_cache_is_bounded_least_recently_used_first(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for i in range(20):  # 20 stale entries of 50 KB, older than anything this run writes
        p = cache / f"{i:064x}.yaml"
        p.write_text("x" * 50_000)
        os.utime(p, (1_000_000 + i, 1_000_000 + i))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text((ROOT / ".gitops-validator.yaml").read_text() + "limits: {cacheMaxMegabytes: 0.25}\n")
    r = validate(ROOT, cache, "--config", str(cfg))
    assert r.code == 0, r.err
    sizes = {p.name: p.stat().st_size for p in cache.iterdir()}
    fresh = [n for n in sizes if n.endswith(".yaml") and not n.startswith("0000")]
    assert sum(sizes.values()) <= 0.25 * 2**20
    assert len(fresh) == 3, "this run's renders were evicted before older ones"
    assert "0000000000000000000000000000000000000000000000000000000000000000.yaml" not in sizes  # the oldest went
    # the next run is served from what was kept
    assert renders(validate(ROOT, cache, "--config", str(cfg))) == "0 helm render(s), 3 from cache"


def test_evict_spares_another_runs_write_in_flight_and_removes_an_old_orphan(tmp_path):
    """A scan runs while another run is between ``put_file``'s temporary write and its rename: that
    fresh dot-``.tmp`` file is not an entry and must survive (the rename would fail and the render be
    lost); one left by a run that crashed long ago is evicted like any entry."""
    d = tmp_path / "c"
    cache = RenderCache(d, max_bytes=100_000)
    for i in range(4):  # stale entries, older than anything below
        p = d / f"{i:064x}.yaml"
        cache.put_file(p, "x" * 30_000)
        os.utime(p, (1_000_000 + i, 1_000_000 + i))
    orphan = d / ".dead.yaml.abc123.tmp"
    orphan.write_text("y" * 30_000)
    old = time.time() - rendercache.TMP_MIN_AGE_S - 60
    os.utime(orphan, (old, old))

    started, scanned = threading.Event(), threading.Event()
    outcome: list = []

    def other_run() -> None:
        # put_file's own steps, paused between the write and the rename; larger than the bound
        # itself, so a scan that took it for an entry would remove it
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".live.yaml.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write("kind: ConfigMap\n" + "z" * 150_000)
        started.set()
        scanned.wait(60)
        try:
            os.replace(tmp, d / "live.yaml")
            outcome.append("renamed")
        except OSError as e:
            outcome.append(e)

    writer = threading.Thread(target=other_run)
    writer.start()
    assert started.wait(60)
    removed = cache.evict()
    scanned.set()
    writer.join(60)
    assert outcome == ["renamed"], "the scan deleted another run's write in flight"
    assert cache.get("live").startswith("kind: ConfigMap\n")
    assert not orphan.exists(), "an orphan temporary file older than the bound was kept"
    assert removed >= 5 and not list(d.glob("0*.yaml"))  # the stale entries and the orphan went
