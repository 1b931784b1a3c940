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
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from . import __version__, helmrenderer, tools
from .realpaths import RealPaths

if TYPE_CHECKING:
    from .render import RenderRequest

SUFFIX = ".yaml"
DEFAULT_MAX_MB = 100
VERSION_TIMEOUT = 30
#: the folder's size as the last full scan found it (after its evictions), and what runs wrote since
SCANNED, WRITTEN = ".size-scanned", ".size-written"
#: a full scan also when the log of writes is this long, or the last scan this old (a run that
#: crashed between a write and its log line, a file put there by hand)
WRITTEN_MAX_BYTES = 256 << 10
SCAN_MAX_AGE_S = 24 * 3600
#: a dot-``.tmp`` file younger than this may be another run's write in flight (``put`` writes a
#: temporary name, then renames it): eviction leaves it alone. Far beyond a run's deadline, so an
#: older one is an orphan of a run that crashed, and evictable like any entry.
TMP_MIN_AGE_S = 600
#: a scan evicts down to this share of the bound (as ccache does), so that a full cache is not
#: scanned again on the next run
LOW_WATER = 0.8
#: file-digest memo (``RenderCache.digest``): a digest is trusted only for a file whose mtime and
#: ctime are this much older than the run that hashed it (git's "racy clean" rule; 2 s covers the
#: coarsest file system timestamps, FAT's)
DIGESTS = "file-digests.json"
RACY_NS = 2_000_000_000


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


def tree_digest(root: Path, digest=None) -> list:
    """(relative path, real path, content hash) of every file under ``root`` (``chart_files``);
    ``digest(real path)`` hashes a file (``RenderCache.digest``), by default from its content."""
    out = []
    for p in chart_files(root):
        real = os.path.realpath(p)
        try:
            out.append([str(p.relative_to(root)), real, digest(real) if digest else _file_digest(p)])
        except OSError as e:  # a dangling link: helm will say so; its absence is part of the key
            out.append([str(p.relative_to(root)), real, f"unreadable: {e.strerror}"])
    return out


def write_atomic(directory: Path | str, path: Path | str, text: str) -> None:
    """``text`` into ``path`` (in the cache folder ``directory``) atomically: a unique temporary name
    in the same folder, then os.replace; the write is logged for the size bound. OSError on failure
    (no temporary file is left)."""
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    note_written(directory, len(text.encode("utf-8")) if not text.isascii() else len(text))


def note_written(directory: Path | str, size: int) -> None:
    """Log ``size`` bytes written into the cache folder, after the write (``RenderCache.evict`` adds
    the log to the last scan's total). One short ``O_APPEND`` write: concurrent runs' lines do not
    mix. A write not logged (no folder, a crash in between) is caught by the next full scan."""
    try:
        fd = os.open(os.path.join(directory, WRITTEN), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"%d\n" % size)
        finally:
            os.close(fd)
    except OSError:
        pass


class RenderCache:
    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_MB << 20):
        self.directory = directory
        self.max_bytes = max_bytes
        self.enabled = True
        self._lock = threading.Lock()
        self._charts: dict[str, str] = {}    # chart dir -> chart_digest, once per run
        self._helm: str | None = None
        self._helm_lock = threading.Lock()
        self._agrees = False                    # the renderer beside helm is known to embed it
        self._agrees_memo: Path | None = None   # where that is remembered, when there is a renderer
        # file digests remembered across runs by stat (``digest``); before any file is looked at
        self._started_ns = time.time_ns()
        self._digests: dict[str, list] | None = None
        self._digests_new: dict[str, list] = {}
        self._digests_seen: set[str] = set()
        self._real = RealPaths()

    def _disable(self, why: OSError) -> None:
        with self._lock:
            if self.enabled:
                self.enabled = False
                print(f"gitops-validate: warning: render cache {self.directory} is not usable "
                      f"({why.strerror or why}); rendering without it", file=sys.stderr)

    def chart_digest(self, repo: Path, chart: str) -> str:
        """One SHA-256 of the chart's tree digest (``tree_digest``), once per run: every app of a
        chart has it in its key."""
        with self._lock:
            hit = self._charts.get(chart)
        if hit is None:
            hit = hashlib.sha256(json.dumps(tree_digest(repo / chart, self.digest)).encode()).hexdigest()
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

    def digest(self, real: str) -> str:
        """SHA-256 of the file at ``real`` (a real path), from the memo when the file's size,
        mtime, ctime, inode and device are those it was hashed with and both times are ``RACY_NS``
        older than the run that hashed it: a later write in the same timestamp tick would
        otherwise go unseen. ctime cannot be set back (``touch -d``, a same-size edit, a rename
        over it all change it or the inode). Raises OSError like reading the file would."""
        st = os.stat(real)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
        memo = self._memo()
        hit = memo.get(real)
        self._digests_seen.add(real)
        if hit is not None and hit[:5] == stamp and max(st.st_mtime_ns, st.st_ctime_ns) + RACY_NS < hit[5]:
            return hit[6]
        digest = _file_digest(Path(real))
        with self._lock:
            self._digests_new[real] = [*stamp, self._started_ns, digest]
        return digest

    def _memo(self) -> dict[str, list]:
        """The file-digest memo as the last run wrote it; empty when absent or damaged, and an entry
        of the wrong shape is dropped (the folder is the user's own, as are the renders it keys)."""
        if self._digests is None:
            memo: dict[str, list] = {}
            text = self.get_file(self.directory / DIGESTS)
            try:
                data = json.loads(text) if text else {}
                if isinstance(data, dict) and data.get("format") == 1 and isinstance(data.get("files"), dict):
                    memo = {k: v for k, v in data["files"].items()
                            if isinstance(v, list) and len(v) == 7 and all(type(x) is int for x in v[:6])
                            and isinstance(v[6], str)}
            except ValueError:
                pass
            self._digests = memo
        return self._digests

    def save_digests(self) -> None:
        """Write the memo back when this run hashed a file (a changed or new one, or one still too
        recent to trust), with the files this run asked for: a deleted file's entry goes."""
        if not self._digests_new:
            return
        memo = self._memo()
        files = {k: memo[k] for k in self._digests_seen if k in memo} | self._digests_new
        self.put_file(self.directory / DIGESTS, json.dumps({"format": 1, "files": files}))
        self._digests_new = {}

    def key(self, repo: Path, req: "RenderRequest", helm: str) -> str:
        parts = {
            "validator": __version__,
            "helm": self.helm_identity(helm),
            "chart": self.chart_digest(repo, req.chart),
            "values": [[f, real, self.digest(real)]
                       for f, real in ((f, self._real(os.path.join(repo, f))) for f in req.value_files)],
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

    def get_file(self, path: Path | str) -> str | None:
        if not self.enabled:
            return None
        try:
            with open(path, "rb") as fh:
                os.utime(fh.fileno())  # least recently used goes first
                return fh.read().decode("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return None  # a damaged entry is a miss; the put that follows replaces it

    def put_file(self, path: Path | str, text: str) -> bool:
        """Atomically: a unique temporary name in the same folder, then os.replace. Whether it was written."""
        if not self.enabled:
            return False
        try:
            write_atomic(self.directory, path, text)
        except OSError as e:
            self._disable(e)
            return False
        return True

    def evict(self) -> int:
        """Past its bound, remove the least recently used entries down to ``LOW_WATER`` of it; how many went.
        The folder is scanned only when it may be over the bound: the last scan's total plus the
        bytes logged since (``note_written``) is an upper bound of its size, as long as every write
        is logged after it lands. A scan first moves the log aside, so a line logged while it runs
        is counted again next time (never lost); then it records what it left."""
        if not self.enabled:
            return 0
        d = str(self.directory)
        scanned, written = os.path.join(d, SCANNED), os.path.join(d, WRITTEN)
        total: int | None = None
        try:
            if time.time() - os.stat(scanned).st_mtime < SCAN_MAX_AGE_S:
                with open(scanned, "rb") as fh:
                    text = fh.read(64)
                total = int(text) + len(text)   # the marker's own bytes count too
        except (OSError, ValueError):
            pass
        if total is not None:
            try:
                with open(written, "rb") as fh:
                    log = fh.read(WRITTEN_MAX_BYTES + 1)
                # the log's own bytes count too
                total = None if len(log) > WRITTEN_MAX_BYTES else total + len(log) + sum(int(n) for n in log.split())
            except FileNotFoundError:
                pass
            except (OSError, ValueError):
                total = None
        if total is not None and total <= self.max_bytes:
            return 0
        if not os.path.isdir(d):
            return 0
        aside = f"{written}.{os.getpid()}.{threading.get_ident()}"
        try:
            os.replace(written, aside)
        except OSError:
            aside = None
        removed, total = self._scan_and_evict(d)
        if aside:
            try:
                os.unlink(aside)
            except OSError:
                pass
        self._put_scanned(scanned, total)
        return removed

    def _put_scanned(self, path: str, total: int) -> None:
        """The scan's total, atomically, not itself logged as a write (the next scan counts it)."""
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{SCANNED}.", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                fh.write(str(total))
            os.replace(tmp, path)
        except OSError:
            pass

    def _scan_and_evict(self, d: str) -> tuple[int, int]:
        entries = []
        in_flight = 0   # bytes of other runs' fresh temporary files: counted, never removed
        fresh_after_ns = time.time_ns() - TMP_MIN_AGE_S * 1_000_000_000
        with os.scandir(d) as it:  # one stat per entry, no Path per file
            for e in it:
                try:
                    if e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        if e.name.startswith(".") and e.name.endswith(".tmp") and st.st_mtime_ns > fresh_after_ns:
                            in_flight += st.st_size
                        else:
                            entries.append((st.st_mtime_ns, st.st_size, e.path))
                except OSError:
                    continue
        total = in_flight + sum(size for _, size, _ in entries)
        removed = 0
        target = self.max_bytes if total <= self.max_bytes else int(self.max_bytes * LOW_WATER)
        for _, size, p in sorted(entries):
            if total <= target:
                break
            try:
                os.unlink(p)
            except OSError:
                continue
            total -= size
            removed += 1
        return removed, total
