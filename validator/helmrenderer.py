"""helm-renderer: ``helm template`` without a helm process per app.

A helm process spends about 70 of its 110 ms per render starting up. ``helm-renderer``
(scripts/helm-renderer, built by ``make setup`` into .tools/bin) is helm's own command line, from the
pinned helm Go module, run once per request in one long-lived process, as Argo CD's repo server
renders many apps in one process. Requests carry the exact argv, working directory and
environment the validator would give the helm CLI; the answer is helm's exit status, stdout and
stderr. tests/test_helm_renderer.py proves the bytes identical to the CLI's on every app of this
repo, a generated repo and the chart fixtures; scripts/bench.py checks it on every bench app.

- One renderer process per render worker, each serving one request at a time (``Pool``).
- The helm CLI stays the authority: it is used when no renderer sits beside helm (``locate``) or when the renderer embeds another helm than ``helm version`` reports (``-v`` and
  ``gitops-validate doctor`` say which); render.py re-runs every request the renderer answers
  with a non-zero status on the CLI, so a chart's error reads exactly as helm prints it.
- Fail closed: a renderer that dies, outlives the render timeout or answers outside its protocol
  raises ``tools.ToolFailed`` (exit 2), never a pass.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Protocol

from . import tools

NAME = "helm-renderer"
HANDSHAKE_TIMEOUT = 30
_HEADER = re.compile(rb"helm-renderer (-?\d{1,3}) (\d{1,12}) (\d{1,12})\n")
_MAX_HEADER = 64


class Renderer:
    """One renderer process; ``call`` is not thread-safe (the pool hands each to one thread)."""

    def __init__(self, path: str, env: dict[str, str]):
        self.path, self.env = path, env
        self._log = tempfile.TemporaryFile()  # its own complaints, quoted when it fails
        try:
            self.proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                         start_new_session=True, bufsize=0, env=env)
        except OSError as e:
            self._log.close()
            raise tools.ToolFailed(NAME, f"could not be started: {e.strerror or e}") from None
        tools.track(self.proc.pid, NAME)

    def call(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tools.Completed:
        limit, why = tools.time_limit(timeout)
        deadline = time.monotonic() + limit
        line = json.dumps({"argv": argv, "cwd": str(cwd), "env": env}).encode() + b"\n"
        try:
            self.proc.stdin.write(line)
        except OSError:
            self._failed("stopped before it read a request")
        buf = bytearray()
        while b"\n" not in buf and len(buf) <= _MAX_HEADER:
            buf += self._read(deadline, why, _MAX_HEADER + 1 - len(buf))
        m = _HEADER.match(bytes(buf))
        if not m:
            self._failed(f"answered outside its protocol ({bytes(buf[:_MAX_HEADER])!r})")
        status, n_out, n_err = (int(g) for g in m.groups())
        body = buf[m.end():]
        while len(body) < n_out + n_err:
            body += self._read(deadline, why, n_out + n_err - len(body))
        if len(body) > n_out + n_err:
            self._failed("answered with more bytes than its header announced")
        return tools.Completed(status, bytes(body[:n_out]), bytes(body[n_out:]))

    def _read(self, deadline: float, why: str, n: int) -> bytes:
        fd = self.proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._failed(f"{why} and was stopped")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if tools.stopping():
                self.close()
                tools.check_deadline()  # raises Interrupted
            if ready:
                data = os.read(fd, min(n, 1 << 20))
                if not data:
                    self._failed("stopped in the middle of a request")
                return data

    def _failed(self, what: str):
        self.close()
        tools.check_deadline()  # a signal or the run's deadline killed it: say that instead
        code = self.proc.returncode
        died = f" ({tools.describe_exit(code)})" if code is not None and code != -signal.SIGKILL else ""
        self._log.seek(0)
        raise tools.ToolFailed(NAME, f"{what}{died}", self._log.read()[-4000:])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait()
        tools.untrack(self.proc.pid)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class Pool:
    """Idle renderers; a thread takes one (or starts one) per request and gives it back."""

    def __init__(self, path: str, env: dict[str, str]):
        self.path = path
        self.env = env
        self._idle: list[Renderer] = []
        self._all: list[Renderer] = []
        self._lock = threading.Lock()

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tools.Completed:
        with self._lock:
            r = self._idle.pop() if self._idle else None
        if r is None:
            r = Renderer(self.path, self.env)
            with self._lock:
                self._all.append(r)
        out = r.call(argv, cwd, env, timeout)  # a failure closes r, which is not given back
        with self._lock:
            self._idle.append(r)
        return out

    def adopt(self, r: Renderer) -> None:
        """``r`` (started by ``start_early``) as an idle renderer of this pool."""
        with self._lock:
            self._all.append(r)
            self._idle.append(r)

    def close(self) -> None:
        with self._lock:
            every, self._all, self._idle = self._all, [], []
        for r in every:
            r.close()


_lock = threading.Lock()
_pools: dict[str, Pool | None] = {}   # helm path -> its renderers, or None: the helm CLI renders
_notes: dict[str, str] = {}           # helm path -> which renders and why (``-v``)
_early: dict[str, Renderer] = {}      # renderer path -> one started before its pool (``start_early``)


def helm_env() -> dict[str, str]:
    """The environment of every helm run (CLI or renderer): the user's, without helm plugins."""
    return {**os.environ, "HELM_NO_PLUGINS": "1"}


def start_early(helm: str) -> None:
    """Start the renderer beside ``helm`` at once, before anything knows whether a render is due
    (a path-scoped run, which usually renders the app its change touches): its start-up (the Go
    runtime, helm's packages: most of a single render's time) then overlaps the run's imports and
    discovery. ``pool_for`` adopts it, under the same environment, as the pool's first renderer;
    a run that renders nothing closes it unused (``close_all``). Whether it stands in for helm is
    still decided by ``pool_for``, as for any renderer."""
    path = locate(helm)
    with _lock:
        if path is None or path in _early or helm in _pools:
            return
    try:
        r = Renderer(path, helm_env())
    except tools.ToolFailed:
        return   # the run's own start meets the same failure where it reports it
    with _lock:
        _early[path] = r


def locate(helm: str) -> str | None:
    """The renderer beside ``helm`` (``make setup`` builds both into .tools/bin): one that stands
    in for a helm elsewhere would be a different pairing than the one the user chose, and a
    wrapper put in front of helm (as tests do to log its calls) keeps seeing every render."""
    path = Path(helm).parent / NAME
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


class AgreementMemo(Protocol):
    """Where a run remembers that the renderer beside a helm embeds that helm (the render cache,
    by both binaries' identity): a later run then asks neither for its version."""

    def renderer_agrees(self, helm: str) -> bool: ...

    def renderer_agreed(self, helm: str) -> None: ...


def pool_for(helm: str, env: dict[str, str], timeout: float = HANDSHAKE_TIMEOUT,
             memo: AgreementMemo | None = None) -> Pool | None:
    """The renderers that stand in for ``helm`` in this run, or None when the CLI renders: no
    renderer is found, or it embeds another helm (its ``version`` differs from the CLI's)."""
    with _lock:
        if helm in _pools:
            return _pools[helm]
        path = locate(helm)
        pool = None if path is None else Pool(path, env)
        early = _early.pop(path, None) if path is not None else None
        if early is not None and pool is not None and early.env == env:
            pool.adopt(early)
        elif early is not None:
            early.close()
        if pool is None:
            _notes[helm] = f"helm CLI (no {NAME} beside {helm}; `make setup` builds it)"
        elif memo is not None and memo.renderer_agrees(helm):
            _notes[helm] = f"{NAME} ({path})"
        else:
            argv = [helm, "version"]
            mine = pool.run(argv, Path.cwd(), env, timeout)
            theirs = tools.run("helm", argv, timeout, env=env)
            if (mine.returncode, mine.stdout) != (theirs.returncode, theirs.stdout):
                pool.close()
                pool = None
                _notes[helm] = (f"helm CLI ({path} embeds {mine.stdout.decode('utf-8', 'replace').strip()!r}, "
                                f"helm says {theirs.stdout.decode('utf-8', 'replace').strip()!r})")
            else:
                _notes[helm] = f"{NAME} ({path})"
                if memo is not None:
                    memo.renderer_agreed(helm)
        _pools[helm] = pool
        return pool


def note() -> str:
    """What rendered in this run, for ``-v``."""
    with _lock:
        return "; ".join(sorted(set(_notes.values())))


def close_all() -> None:
    """Stop every renderer (the end of a run); the next run looks again."""
    with _lock:
        pools = [p for p in _pools.values() if p is not None]
        _pools.clear()
        unused = list(_early.values())
        _early.clear()
    for p in pools:
        p.close()
    for r in unused:
        r.close()
