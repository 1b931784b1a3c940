"""The render cache: helm's output on disk, keyed by everything that can change it.

A key covers the helm binary's content, the real path and content of every file that feeds the
render (chart files with symlinks resolved, value files), the request's flags and the validator's
own version, so a hit is always what helm would print now. Writes are atomic (a unique temporary
name, then ``os.replace``) and thread-safe; a cache that cannot be written degrades to no cache
with one warning; the least recently used entries are evicted past a size bound. The cache lives
outside the repository (``$XDG_CACHE_HOME/gitops-validate/<repo hash>``), and discovery skips it
should ``GITOPS_VALIDATE_CACHE`` put it inside.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from . import __version__, helmrenderer, tools

if TYPE_CHECKING:
    from .render import RenderRequest

SUFFIX = ".yaml"
DEFAULT_MAX_MB = 100
VERSION_TIMEOUT = 30


def default_dir(repo: Path) -> Path:
    """``$GITOPS_VALIDATE_CACHE``, else one folder per repository under the user's cache."""
    if os.environ.get("GITOPS_VALIDATE_CACHE"):
        return Path(os.environ["GITOPS_VALIDATE_CACHE"]).absolute()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base.absolute() / "gitops-validate" / hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _api_versions_digest(api_versions: tuple[str, ...]) -> str:
    """A digest of a cluster's API versions (hundreds, the same for each of its apps), once."""
    return hashlib.sha256(json.dumps(list(api_versions)).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def chart_files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` in sorted order, symlinks followed (as helm follows them), each
    real directory visited once."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real_dir = os.path.realpath(dirpath)
        if real_dir in seen:
            dirnames[:] = []
            continue
        seen.add(real_dir)
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def tree_digest(root: Path) -> list:
    """(relative path, real path, content hash) of every file under ``root`` (``chart_files``)."""
    out = []
    for p in chart_files(root):
        try:
            out.append([str(p.relative_to(root)), os.path.realpath(p), _file_digest(p)])
        except OSError as e:  # a dangling link: helm will say so; its absence is part of the key
            out.append([str(p.relative_to(root)), os.path.realpath(p), f"unreadable: {e.strerror}"])
    return out


class RenderCache:
    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_MB << 20):
        self.directory = directory
        self.max_bytes = max_bytes
        self.enabled = True
        self._lock = threading.Lock()
        self._charts: dict[str, list] = {}   # chart dir -> tree digest, once per run
        self._helm: str | None = None
        self._helm_lock = threading.Lock()
        self._agrees = False                    # the renderer beside helm is known to embed it
        self._agrees_memo: Path | None = None   # where that is remembered, when there is a renderer

    def _disable(self, why: OSError) -> None:
        with self._lock:
            if self.enabled:
                self.enabled = False
                print(f"gitops-validate: warning: render cache {self.directory} is not usable "
                      f"({why.strerror or why}); rendering without it", file=sys.stderr)

    def chart_digest(self, repo: Path, chart: str) -> str:
        """One SHA-256 of the chart's tree digest (once per run)."""
        return hashlib.sha256(json.dumps(self._chart(repo, chart)).encode()).hexdigest()

    def _chart(self, repo: Path, chart: str) -> list:
        with self._lock:
            hit = self._charts.get(chart)
        if hit is None:
            hit = tree_digest(repo / chart)
            with self._lock:
                self._charts[chart] = hit
        return hit

    def helm_identity(self, helm: str) -> str:
        """Once per run: the content hash of the helm binary (symlinks resolved) and what it reports
        as its version, and helm-renderer's content hash when there is one, so that a shim
        switching helm behind one path changes every key. Hashing 64 MB costs more than a warm run, so
        the hash (and a binary's version) is remembered in the cache folder by the binary's real path,
        size, mtime, ctime and inode (a rewrite changes its ctime)."""
        with self._helm_lock:
            if self._helm is None:
                digest, memo = self._binary_digest(helm)
                # A binary's `helm version` is a function of its content: remembered like the hash. A
                # script (a shim) may call another helm each time: asked on every run.
                with open(os.path.realpath(helm), "rb") as fh:
                    script = fh.read(2) == b"#!"
                version_memo = memo.with_suffix(".version")
                version = None if script else self.get_file(version_memo)
                if version is None:
                    proc = tools.run("helm", [helm, "version"], VERSION_TIMEOUT)
                    if proc.returncode != 0:
                        raise tools.ToolFailed("helm", f"{tools.describe_exit(proc.returncode)} on `helm version`", proc.stderr)
                    version = proc.stdout.decode("utf-8", "replace").strip()
                    if not script:
                        self.put_file(version_memo, version)
                self._helm = digest + " " + version
                renderer = helmrenderer.locate(helm)  # it renders in helm's place: its binary is in the key too
                if renderer:
                    mine, memo = self._binary_digest(renderer)
                    self._helm += f" {helmrenderer.NAME} {mine}"
                    # the helm it embeds is a function of its content too: once it agrees with this
                    # helm's version, no run needs to ask either again (helmrenderer.pool_for)
                    self._agrees_memo = memo.with_suffix(".agrees")
                    self._agrees = not script and self.get_file(self._agrees_memo) == self._helm
            return self._helm

    def renderer_agrees(self, helm: str) -> bool:
        """Whether an earlier run found the renderer beside ``helm`` embedding that very helm."""
        self.helm_identity(helm)
        return self._agrees

    def renderer_agreed(self, helm: str) -> None:
        """Remember that the renderer beside ``helm`` embeds the helm ``helm version`` reports."""
        self.helm_identity(helm)
        if self._agrees_memo is not None:
            self.put_file(self._agrees_memo, self._helm)

    def _binary_digest(self, path: str) -> tuple[str, Path]:
        """The binary's content hash, and the memo file it is remembered in."""
        real = os.path.realpath(path)
        st = os.stat(real)
        stamp = f"{real}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"
        memo = self.directory / f"helm-{hashlib.sha256(stamp.encode()).hexdigest()[:32]}.digest"
        digest = self.get_file(memo)
        if digest is None:
            digest = _file_digest(Path(real))
            self.put_file(memo, digest)
        return digest, memo

    def key(self, repo: Path, req: "RenderRequest", helm: str) -> str:
        parts = {
            "validator": __version__,
            "helm": self.helm_identity(helm),
            "chart": self._chart(repo, req.chart),
            "values": [[f, os.path.realpath(repo / f), _file_digest(repo / f)] for f in req.value_files],
            "req": [req.chart, req.release, req.namespace, req.kube_version,
                    _api_versions_digest(tuple(req.api_versions)), req.values_yaml,
                    sorted(req.set.items()), sorted(req.set_string.items()),
                    req.skip_crds, req.skip_tests, req.skip_schema_validation],
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        return self.get_file(self.directory / f"{key}{SUFFIX}")

    def put(self, key: str, text: str) -> None:
        self.put_file(self.directory / f"{key}{SUFFIX}", text)

    def get_file(self, path: Path) -> str | None:
        if not self.enabled:
            return None
        try:
            text = path.read_text(encoding="utf-8")
            os.utime(path)  # least recently used goes first
            return text
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return None  # a damaged entry is a miss; the put that follows replaces it

    def put_file(self, path: Path, text: str) -> None:
        """Atomically: a unique temporary name in the same folder, then os.replace."""
        if not self.enabled:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            self._disable(e)

    def evict(self) -> int:
        """Remove the least recently used entries until the cache fits its bound; how many went."""
        if not self.enabled or not self.directory.is_dir():
            return 0
        entries = []
        with os.scandir(self.directory) as it:  # one stat per entry, no Path per file: 500 apps, every run
            for e in it:
                try:
                    if e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        entries.append((st.st_mtime_ns, st.st_size, e.path))
                except OSError:
                    continue
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            try:
                os.unlink(p)
            except OSError:
                continue
            total -= size
            removed += 1
        return removed
