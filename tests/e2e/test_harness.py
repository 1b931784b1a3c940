"""The harness cleans up after itself: a run interrupted midway leaves no process and no port behind.

A child pytest runs the GitOps loop; once the control plane and Argo CD are up it is interrupted
(Ctrl-C, or killed outright). Its processes are the ones whose working directory is in its
temporary directory (the harness starts each one there).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e.harness import ROOT

pytestmark = pytest.mark.e2e

# As /proc/<pid>/comm shows them: at most 15 characters.
WANTED = {name[:15] for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
                                 "redis-server", "argocd-repo-server", "argocd-application-controller",
                                 "argocd-server")}


def started_in(run: Path) -> dict[int, str]:
    """pid -> program name of every live process whose working directory is inside `run`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")).is_relative_to(run.resolve()):
                found[int(entry.name)] = (entry / "comm").read_text().strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def listening(pids: set[int]) -> set[int]:
    """TCP ports the given processes listen on (from /proc/net/tcp and their open sockets)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    return {port for port, inode in _listen_table() if inode in inodes}


def _listen_table() -> list[tuple[int, str]]:
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                rows.append((int(fields[1].rsplit(":", 1)[1], 16), fields[9]))
    return rows


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_interrupted_run_leaves_nothing(sig: signal.Signals, tmp_path: Path) -> None:
    run = tmp_path / "run"
    output = tmp_path / "child.log"   # the child's report, shown when it misbehaves

    def said() -> str:
        return "\n--- the child pytest's last lines:\n" + "\n".join(output.read_text(errors="replace").splitlines()[-40:])

    with open(output, "wb") as out:
        # Ctrl-C as a terminal gives it: SIGINT at its default in the child, also when this run
        # inherited it ignored (a job started with `&` by a shell without job control has SIGINT
        # ignored, and so would every process it starts: the child would never see the Ctrl-C)
        child = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-m", "e2e", "-p", "no:cacheprovider", f"--basetemp={run}",
             str(ROOT / "tests" / "e2e" / "test_gitops_loop.py")],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while not WANTED <= set(started_in(run).values()):
            assert child.poll() is None, f"the run ended (exit {child.returncode}) before everything was up{said()}"
            assert time.monotonic() < deadline, f"not all up after 300 s: {sorted(set(started_in(run).values()))}"
            time.sleep(1)
        ports = listening(set(started_in(run)))
        assert ports, "the harness's processes listen on no port"
        child.send_signal(sig)
        try:
            child.wait(120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the child pytest did not end within 120 s of {sig.name}; still running: "
                        f"{sorted(set(started_in(run).values()))}{said()}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    # The kernel delivers PDEATHSIG and closes the sockets of what it killed; give that a moment.
    deadline = time.monotonic() + 30
    while True:
        left = started_in(run)
        still = ports & {port for port, _ in _listen_table()}
        if not (left or still) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, f"left running after {sig.name}: {left}"
    if sig == signal.SIGINT:  # the harness's own exit path: its run directory (keys, tokens, etcd) is gone
        assert not [d for d in run.glob("**/pki") if d.is_dir()], "the run directory was left behind"
    owners = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout if still and shutil.which("ss") else ""
    assert not still, f"ports still listening 30 s after {sig.name}: {sorted(still)}\n{owners}"
