#!/usr/bin/env python3
"""This repository's own runs, old code against new, alternately in one process (docs/performance.md):
a warm whole-repo run, one values file changed (the pre-commit path: a comment appended, one helm
render), one value changed (`replicaCount`, a new number each round: the values checked by
jsonschema, one helm render, kubeconform for the changed Deployment), the pre-commit hook itself
(`pre-commit run gitops-validate --files <values file>`, comment appended), the same path-scoped run
on a values file whose render is cached (a second commit attempt), `--help` and `--version`. Wall and CPU time (the run and its children: helm, kubeconform,
git); on a shared machine the CPU medians are the numbers to compare.

    python scripts/measure_this_repo.py --rounds 10 --baseline 54c0c41

Both validators run from `git archive` copies (`--new` defaults to HEAD) on a `git archive` copy of
this repository at HEAD, each with its own cache, warmed first. Needs `make setup` (the pinned tools).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VALUES = "clusters/minikube/values/todo-backend.yaml"
MAIN = "import sys; from gitops_validate.cli import main; sys.exit(main(sys.argv[1:]))"


def archive(rev: str, paths: list[str], dest: Path) -> None:
    out = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, *paths], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        tar.extractall(dest, filter="data")


def code(rev: str, tmp: Path) -> Path:
    dest = tmp / f"code-{rev}"
    archive(rev, ["validator"], dest)
    (dest / "validator").rename(dest / "gitops_validate")
    data = dest / "gitops_validate/data/versions"   # a symlink to the repo's `versions` in git
    data.unlink(missing_ok=True)
    shutil.copy(ROOT / "versions", data)
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--baseline", default="main", help="the old code (a commit)")
    ap.add_argument("--new", default="HEAD", help="the new code (a commit)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="measure-") as t:
        tmp = Path(t)
        repo = tmp / "repo"
        archive("HEAD", [], repo)
        (repo / ".tools").symlink_to(ROOT / ".tools")
        git = ["git", "-C", str(repo), "-c", "user.name=m", "-c", "user.email=m@m"]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "copy", "--no-verify"], check=True)
        codes = {name: code(rev, tmp) for name, rev in (("old", args.baseline), ("new", args.new))}

        (repo / ".venv").symlink_to(ROOT / ".venv")   # scripts/gitops-validate, the hook's entry, runs it

        def run(name: str, *argv: str, hook: bool = False) -> tuple[float, float]:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env |= {"PYTHONPATH": str(codes[name]), "GITOPS_VALIDATE_CACHE": str(tmp / f"cache-{name}"),
                    "PATH": f"{ROOT / '.tools/bin'}:{env['PATH']}"}
            cmd = [str(ROOT / ".venv/bin/pre-commit"), "run", "gitops-validate", "--files", *argv] if hook \
                else [sys.executable, "-c", MAIN, *argv]
            r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            p = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
            wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
            if p.returncode != 0:
                raise SystemExit(f"{name} {argv}: exit {p.returncode}: {p.stderr[-500:]}")
            return wall, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime

        for name in codes:   # caches and bytecode warm
            run(name), run(name), run(name, "--help")
        values = repo / VALUES
        original = values.read_text()
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for i in range(args.rounds):
            for name in codes:
                for what, argv in (("warm", ()), ("--help", ("--help",)), ("--version", ("--version",))):
                    results.setdefault((what, name), []).append(run(name, *argv))
                values.write_text(original + f"# round {i} {name}\n")
                results.setdefault(("one values file changed", name), []).append(run(name, VALUES))
                values.write_text(original.replace("replicaCount: 2\n", f"replicaCount: {i + 3}\n", 1))
                results.setdefault(("one value changed", name), []).append(run(name, VALUES))
                values.write_text(original + f"# hook round {i} {name}\n")
                results.setdefault(("pre-commit hook, one file", name), []).append(run(name, VALUES, hook=True))
                values.write_text(original)   # rendered before: the path-scoped run of a second commit attempt
                results.setdefault(("one values file, render cached", name), []).append(run(name, VALUES))
    print(f"{args.rounds} rounds, old = {args.baseline}, new = {args.new}; load average at the end "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| run | old wall | new wall | old CPU | new CPU |\n|---|---|---|---|---|")
    for what in ("warm", "one values file changed", "one value changed", "pre-commit hook, one file",
                 "one values file, render cached", "--help", "--version"):
        med = {(n, k): statistics.median(x[k] for x in results[(what, n)]) * 1000 for n in codes for k in (0, 1)}
        print(f"| {what} | {med['old', 0]:.0f} ms | {med['new', 0]:.0f} ms | {med['old', 1]:.0f} ms | {med['new', 1]:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
