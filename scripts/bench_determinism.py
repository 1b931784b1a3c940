"""The determinism check's cost, side by side in one run: whole-repo runs with and without it,
interleaved, cold (an empty render cache each time) and warm (a filled cache per mode).

    PATH=.tools/bin:$PATH GITOPS_VALIDATE_SCHEMA_DIR=.tools/schemas .venv/bin/python scripts/bench_determinism.py [ROUNDS]

Run from the repository root. Prints medians and the ratio; docs/performance.md has the numbers.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gitops_validate import config, determinism, pipeline, render
from gitops_validate.rules import REGISTRY

CHECKED = determinism.render_checked


def unchecked(repo: Path, req: render.RenderRequest, helm: str, cache_dir: Path | None) -> render.Rendered:
    return render.render(repo, req, helm, cache_dir)


def timed(repo: Path, cfg: config.Config, cache: Path) -> float:
    start = time.perf_counter()
    result = pipeline.run(pipeline.Options(repo=repo, config=cfg, cache_dir=cache))
    assert not result.findings, result.findings
    return time.perf_counter() - start


def main(rounds: int) -> None:
    repo = Path.cwd()
    cfg = config.load(repo / config.DEFAULT_NAME, set(REGISTRY))
    modes = {"with": CHECKED, "without": unchecked}
    cold: dict[str, list[float]] = {m: [] for m in modes}
    warm: dict[str, list[float]] = {m: [] for m in modes}
    caches = {m: Path(tempfile.mkdtemp(prefix=f"bench-{m}-")) for m in modes}
    try:
        for i in range(rounds):
            for mode, fn in modes.items():
                determinism.render_checked = fn  # the pipeline looks it up at call time
                with tempfile.TemporaryDirectory() as empty:
                    cold[mode].append(timed(repo, cfg, Path(empty)))
                if i == 0:
                    timed(repo, cfg, caches[mode])  # fill
                warm[mode].append(timed(repo, cfg, caches[mode]))
    finally:
        determinism.render_checked = CHECKED
        for c in caches.values():
            shutil.rmtree(c, ignore_errors=True)
    for name, times in (("cold", cold), ("warm", warm)):
        for mode, ts in times.items():
            print(f"{name} {mode:8} median {statistics.median(ts):.2f}s  min {min(ts):.2f}s  max {max(ts):.2f}s")
        print(f"{name} ratio of medians {statistics.median(times['with']) / statistics.median(times['without']):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
