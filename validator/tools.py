"""Running the external tools (helm, kubeconform, git) so that the gate fails closed.

Every tool runs in its own process group (so a timeout or a signal stops it and everything it
started), within its own timeout and the run's overall deadline. A tool that is killed, times out
or cannot be started raises ``ToolFailed``: the validator could not run (exit 2), never a pass.
What a non-zero exit means is the caller's call (helm's exit 1 with ``Error:`` is a chart problem,
kubeconform's exit 1 means "invalid objects"), and so is output that does not parse.

SIGINT and SIGTERM stop every tool still running and raise ``Interrupted`` in the main thread;
no new tool starts afterwards, so worker threads wind down at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from .record import Record

STDERR_LINES = 8


class CannotRun(Exception):
    """The validator cannot do its job (exit 2); the message says what to do."""


class ToolFailed(CannotRun):
    """A tool crashed, was killed, timed out or printed what cannot be parsed."""

    def __init__(self, tool: str, what: str, stderr: str | bytes = ""):
        tail = stderr_tail(stderr)
        super().__init__(f"{tool} {what}" + (f"; its stderr ends with:\n{tail}" if tail else " (no stderr)"))


class Interrupted(BaseException):
    """SIGINT or SIGTERM: a BaseException so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def stderr_tail(stderr: str | bytes, lines: int = STDERR_LINES) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    return "\n".join(f"  {line}" for line in text.strip().splitlines()[-lines:])


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


# --- the run's state: live process groups, the deadline, whether we are stopping -------------

_lock = threading.RLock()          # re-entrant: the signal handler runs on the main thread
_groups: dict[int, str] = {}       # pgid -> tool name, of every tool still running
_deadline: float | None = None     # time.monotonic() by which the whole run must end
_deadline_seconds: float | None = None
_stopping: int | None = None       # the signal that stops the run
_starting = False                  # the main thread is between starting a tool and recording it


def set_deadline(seconds: float | None) -> None:
    global _deadline, _deadline_seconds
    _deadline_seconds = seconds
    _deadline = None if seconds is None else time.monotonic() + seconds


def check_deadline() -> None:
    """Between stages: stop when the run is over its deadline or was interrupted."""
    if _stopping is not None:
        raise Interrupted(_stopping)
    if _deadline is not None and time.monotonic() > _deadline:
        raise CannotRun(f"the run did not finish within its deadline of {_deadline_seconds:g}s "
                        "(--deadline, or limits.deadline in the config)")


def _kill_groups() -> None:
    with _lock:
        for pgid in list(_groups):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _on_signal(signum: int, _frame) -> None:
    global _stopping
    if _stopping is None:
        _stopping = signum
    _kill_groups()
    if not _starting:  # else run() raises once the new process is recorded (and killed)
        raise Interrupted(signum)


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM stop the run (main thread only)."""
    global _stopping
    _stopping = None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


class Completed(Record):
    returncode: int
    stdout: bytes
    stderr: bytes

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def time_limit(timeout: float) -> tuple[float, str]:
    """How long a tool may take now (its own timeout or what is left of the run's deadline), and
    how to say that it took longer."""
    limit, why = timeout, f"did not finish within {timeout:g}s"
    if _deadline is not None and _deadline - time.monotonic() < limit:
        limit = max(0.0, _deadline - time.monotonic())
        why = f"was still running at the run's deadline ({_deadline_seconds:g}s, --deadline)"
    return limit, why


def stopping() -> bool:
    return _stopping is not None


def track(pid: int, tool: str) -> None:
    """A long-lived tool's process group (helmrenderer.py), stopped with the others on a signal."""
    with _lock:
        if _stopping is not None:
            os.killpg(pid, signal.SIGKILL)
            raise Interrupted(_stopping)
        _groups[pid] = tool


def untrack(pid: int) -> None:
    with _lock:
        _groups.pop(pid, None)


def run(tool: str, cmd: list[str], timeout: float, **popen) -> Completed:
    """Run ``cmd`` in a new process group; its output as bytes. Raises ``ToolFailed`` when it cannot
    be started, is killed by a signal or outlives ``timeout`` / the run's deadline (the whole group
    is killed), ``Interrupted`` when the run is being stopped."""
    global _starting
    check_deadline()
    limit, why = time_limit(timeout)
    main = threading.current_thread() is threading.main_thread()
    with _lock:
        if _stopping is not None:
            raise Interrupted(_stopping)
        if main:  # a signal now must not leave the new process unrecorded
            _starting = True
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True, **popen)
            _groups[proc.pid] = tool
        except OSError as e:
            raise ToolFailed(tool, f"could not be started: {e.strerror or e}") from None
        finally:
            if main:
                _starting = False
    try:
        if _stopping is not None:  # the signal came while this tool was starting
            raise Interrupted(_stopping)
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        _kill_groups_of(proc)
        out, err = proc.communicate()
        raise ToolFailed(tool, f"{why} and was stopped (its whole process group)", err) from None
    finally:
        if proc.poll() is None:  # interrupted while waiting: the handler killed it, reap it
            _kill_groups_of(proc)
            proc.wait()
        with _lock:
            _groups.pop(proc.pid, None)
    if _stopping is not None:
        raise Interrupted(_stopping)
    if proc.returncode < 0:
        raise ToolFailed(tool, describe_exit(proc.returncode), err)
    # The tool has exited; anything it left behind in its group goes too.
    _kill_groups_of(proc)
    return Completed(proc.returncode, out, err)


def _kill_groups_of(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
