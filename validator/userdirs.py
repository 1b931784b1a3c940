"""Where gitops-validate keeps what it builds for the user, outside any scanned repository.

``$XDG_CACHE_HOME/gitops-validate`` (default ``~/.cache/gitops-validate``) holds the Kubernetes
schemas built from the pinned ``kubernetes-validate`` package (``schemas/``) and the tools
``gitops-validate tools install`` builds (``bin/``).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gitops-validate"


def bin_dir() -> Path:
    return cache_root() / "bin"


def schema_dir() -> Path:
    return cache_root() / "schemas"
