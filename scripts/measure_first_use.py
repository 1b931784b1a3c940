"""Measure an installed gitops-validate's first use against warm runs, side by side in one run
(docs/performance.md): `PATH=$PWD/.tools/bin:$PATH .venv/bin/python scripts/measure_first_use.py`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from user_repo import make_user_repo  # noqa: E402

from gitops_validate import schemastore  # noqa: E402


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="gitops-validate-measure-"))
    try:
        repo = make_user_repo(tmp / "deploy", str(ROOT / ".tools" / "bin" / "helm"))
        cli = Path(sys.executable).parent / "gitops-validate"
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "GITOPS_VALIDATE_CACHE": str(tmp / "render")}
        env.pop("GITOPS_VALIDATE_SCHEMA_DIR", None)
        for label in ("first use (empty cache)", "warm", "warm"):
            t = time.perf_counter()
            p = subprocess.run([str(cli), "--no-cache"], cwd=repo, env=env, capture_output=True, text=True)
            print(f"{label:<24} {time.perf_counter() - t:6.2f}s  exit {p.returncode}")
        for minor in ("1.33", "1.34"):
            t = time.perf_counter()
            schemastore.user_schemas(tmp / "schemas", minor)
            print(f"{'build ' + minor:<24} {time.perf_counter() - t:6.2f}s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
