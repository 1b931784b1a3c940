"""Real paths of many files, as one run asks them: each folder resolved once.

``os.path.realpath`` walks every component of a path with an ``lstat``; a run asks it for every
value file and chart file of hundreds of apps that share a few folders. The real path of ``d/f``
is the real path of ``d`` plus ``f`` when ``f`` is not a symlink, so only the file itself is
looked at. Plain strings: no ``Path`` per file in these loops.
"""

from __future__ import annotations

import errno
import os
import stat

#: errors after which ``lstat`` says the path is not a symlink (as ``Path.is_symlink`` reads them)
_NOT_A_LINK = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


class RealPaths:
    """``os.path.realpath`` for the run, with the real path of each folder remembered (a run
    takes the repository as it is when it starts)."""

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}

    def __call__(self, p: str) -> str:
        parent, name = os.path.split(p)
        if name in ("", ".", ".."):
            return os.path.realpath(p)
        try:
            if stat.S_ISLNK(os.lstat(p).st_mode):
                return os.path.realpath(p)
        except OSError as e:
            if e.errno not in _NOT_A_LINK:
                return os.path.realpath(p)  # cannot tell: resolved in full
        real_parent = self._dirs.get(parent)
        if real_parent is None:
            real_parent = self._dirs[parent] = os.path.realpath(parent)
        return os.path.join(real_parent, name)
