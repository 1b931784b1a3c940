#!/usr/bin/env python3
"""`make bench`: gitops-validate against the floor and other tools, side by side, on synthetic repos.

For each N (apps in all, in clusters/<c>/apps.yaml, made from this repo's charts by tests/synth.py) and
each cluster count, every round runs, interleaved (one of each before the next round):

  cold        gitops-validate on the repo with an empty render cache
  warm        the same again (renders from the cache)
  one file    one values file changed (a new pod annotation each round: a new render, new objects for
              kubeconform and the rules, a new values check), pre-commit style: that path only
  floor       what any validator must do at least: `helm template` per app (as many in parallel
              as we use) plus one kubeconform over everything (the helm CLI: a process per app)
  manifests   gitops-validate --manifests on the pre-rendered objects (schema + policy, no helm)
  kubeconform kubeconform alone on the same objects
  checkov     checkov (its own venv under .tools, pinned in `versions`) on the same objects
  kube-score  kube-score (built with `go install`, pinned in `versions`) on the same objects

Before timing, every app's `helm template` goes through helm-renderer (which our runs render with)
and the helm CLI: the bench fails unless the bytes are identical.

It reports the median seconds, the peak memory (largest process of the run, from wait4's
rusage: the maximum resident set of the process and the children it waited for) and the growth
exponent between sizes (log t2/t1 / log n2/n1; 1.0 is linear). `--baseline REV` adds our warm,
one-file and manifests runs of an older commit, run from `git archive`, for a before/after in the same rounds.

It prints the issue's target ratios per row (ours on manifests / kubeconform alone, checkov / ours,
kube-score / ours, cold / floor). `--objects` (default 2000,20000) then times each stage of a
`--manifests` run (reading YAML, schema, policy, and the whole run) on `tests/synth.py`'s manifest
streams of that many objects, in fresh processes, interleaved, and gives each stage's growth exponent.

Then it rewrites the tables in docs/performance.md (unless --no-write). `--quick` is the smoke test
of `make test`: N=2, one round, no checkov or kube-score, 100 and 200 objects.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import synth  # noqa: E402  (tests/synth.py: the generator the index tests use too)
from gitops_validate import helmrenderer, schemastore  # noqa: E402

TOOLS = ROOT / ".tools"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
JOBS = min(4, os.cpu_count() or 1)    # the validator's default render parallelism


def versions() -> dict[str, str]:
    out = {}
    for line in (ROOT / "versions").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


VERSIONS = versions()


# --- running one measured process ----------------------------------------------------------------

class Failed(Exception):
    pass


def measure(cmd: list[str], cwd: Path, env: dict | None = None, ok=(0,), stdout=subprocess.DEVNULL) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one command; a non-accepted exit code is an error."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=stdout, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode not in ok:
            err.seek(0)
            raise Failed(f"{' '.join(map(str, cmd[:4]))} ... exited {p.returncode}: {err.read().decode()[-1500:]}")
    return seconds, usage.ru_maxrss


def tool_env(pythonpath: Path | None = None) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{TOOLS / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["GITOPS_VALIDATE_SCHEMA_DIR"] = str(TOOLS / "schemas")
    # as installed: pip compiles a package's bytecode; without it every run compiles the validator again
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return env


# --- the subjects ----------------------------------------------------------------------------------

class Subject:
    """One repo (N apps in all, split over the clusters) with its pre-rendered objects."""

    def __init__(self, work: Path, apps: int, clusters: int):
        self.apps, self.clusters = apps, clusters
        self.per_cluster = max(1, apps // clusters)
        self.dir = work / f"n{apps}-c{clusters}"
        self.repo = synth.make_repo(self.dir / "repo", self.per_cluster, clusters)
        self.cache = self.dir / "cache"
        self.rendered = self.dir / "rendered"
        self.rendered.mkdir()
        self.all = self.dir / "all.yaml"
        self.kube_version = VERSIONS["KUBERNETES_VERSION"].lstrip("v")
        self.round = 0

    def cluster_names(self) -> list[str]:
        return ["minikube"] + [f"cluster{c}" for c in range(1, self.clusters)]

    def helm_commands(self) -> list[tuple[str, list[str]]]:
        """(output name, helm template argv) for every app, as the validator renders them."""
        out = []
        for name in self.cluster_names():
            out.append((f"{name}-root", ["template", str(self.repo / "argocd/apps"), "--name-template", f"root-{name}",
                                          "--namespace", "argocd", "--kube-version", self.kube_version,
                                          "--values", str(self.repo / f"clusters/{name}/apps.yaml"),
                                          "--set", "repoURL=https://github.com/todo-chatbot/todo-gitops.git",
                                          "--set", "targetRevision=main", "--include-crds"]))
            for i in range(self.per_cluster):
                chart = "todo-backend" if i % 2 == 0 else "todo-frontend"
                app = f"{'backend' if i % 2 == 0 else 'frontend'}{i}"
                out.append((f"{name}-{app}", ["template", str(self.repo / "apps" / chart), "--name-template", app,
                                              "--namespace", "todo", "--kube-version", self.kube_version,
                                              "--values", str(self.repo / f"clusters/{name}/values/{app}.yaml"),
                                              "--include-crds"]))
        return out

    def kubeconform_cmd(self, paths: list[str]) -> list[str]:
        cmd = [str(TOOLS / "bin/kubeconform"), "-strict", "-summary", "-output", "json",
               "-kubernetes-version", self.kube_version]
        for loc in schemastore.schema_locations(TOOLS / "schemas", self.kube_version):
            cmd += ["-schema-location", loc]
        return cmd + paths

    # each returns (seconds, peak KiB)

    def ours(self, *args: str, cache: bool = True, code: Path | None = None) -> tuple[float, int]:
        env = tool_env(code or ROOT)   # this checkout's validator, whichever venv runs it
        env["GITOPS_VALIDATE_CACHE"] = str(self.cache if code is None else self.cache.with_name("cache-" + code.name))
        package = "gitops_validate" if code is None else "validator"  # a baseline from before the rename
        cmd = [sys.executable, "-c", f"import sys; from {package}.cli import main; sys.exit(main(sys.argv[1:]))",
               "--format", "json", *args]
        return measure(cmd, self.repo, env, ok=(0, 1))

    def cold(self) -> tuple[float, int]:
        shutil.rmtree(self.cache, ignore_errors=True)
        return self.ours()

    def one_file(self, code: Path | None = None) -> tuple[float, int]:
        rel = "clusters/minikube/values/frontend1.yaml" if self.per_cluster > 1 else "clusters/minikube/values/backend0.yaml"
        path = self.repo / rel
        original = path.read_text()
        self.round += 1
        # a real change, not a comment: every cache keyed by the values' content misses
        path.write_text(original + f"podAnnotations:\n  bench/round: \"{self.round}\"\n")
        try:
            return self.ours(rel, code=code)
        finally:
            path.write_text(original)

    def floor(self) -> tuple[float, int]:
        helm = str(TOOLS / "bin/helm")
        start = time.perf_counter()

        def one(item: tuple[str, list[str]]) -> int:
            name, args = item
            with open(self.rendered / f"{name}.yaml", "wb") as out:
                return measure([helm, *args], self.repo, tool_env(), stdout=out)[1]

        with ThreadPoolExecutor(JOBS) as pool:
            peaks = list(pool.map(one, self.helm_commands()))
        files = sorted(str(p) for p in self.rendered.glob("*.yaml"))
        _, kc_peak = measure(self.kubeconform_cmd(files), self.repo, tool_env(), ok=(0, 1))
        return time.perf_counter() - start, max(peaks + [kc_peak])

    def check_renderer(self) -> int:
        """helm-renderer answers every app's `helm template` with the bytes the floor's helm CLI
        wrote (the cold runs render through it): any difference fails the bench."""
        helm = str(TOOLS / "bin/helm")
        env = {**tool_env(), "HELM_NO_PLUGINS": "1"}
        pool = helmrenderer.Pool(str(TOOLS / "bin" / helmrenderer.NAME), env)
        try:
            for name, args in self.helm_commands():
                cli = subprocess.run([helm, *args], cwd=self.repo, env=env, capture_output=True, stdin=subprocess.DEVNULL)
                mine = pool.run([helm, *args], self.repo, env, 120)
                if (mine.returncode, mine.stdout) != (cli.returncode, cli.stdout):
                    raise Failed(f"helm-renderer and the helm CLI differ on {name} (N={self.apps}x{self.clusters}): "
                                 f"status {mine.returncode} vs {cli.returncode}, {len(mine.stdout)} vs {len(cli.stdout)} bytes")
        finally:
            pool.close()
        return len(self.helm_commands())

    def write_all(self) -> None:
        self.all.write_text("".join(p.read_text() for p in sorted(self.rendered.glob("*.yaml"))))

    def manifests(self, code: Path | None = None) -> tuple[float, int]:
        return self.ours("--manifests", str(self.all), code=code)

    def kubeconform(self) -> tuple[float, int]:
        return measure(self.kubeconform_cmd([str(self.all)]), self.repo, tool_env(), ok=(0, 1))

    def checkov(self) -> tuple[float, int]:
        return measure([str(TOOLS / "checkov-venv/bin/checkov"), "--quiet", "--compact", "--framework", "kubernetes",
                        "-o", "json", "-d", str(self.rendered)], self.dir, tool_env(), ok=(0, 1))

    def kube_score(self) -> tuple[float, int]:
        return measure([str(TOOLS / "bin/kube-score"), "score", "--output-format", "ci", str(self.all)], self.dir,
                       tool_env(), ok=(0, 1))


# --- the external tools ----------------------------------------------------------------------------

def install_tools() -> None:
    """checkov into its own venv and kube-score into .tools/bin, at the pinned versions (stamped)."""
    stamps = TOOLS / "stamps"
    stamps.mkdir(parents=True, exist_ok=True)

    def ok(name: str, version: str, path: Path) -> bool:
        s = stamps / name
        return path.exists() and s.is_file() and s.read_text() == version

    v = VERSIONS["CHECKOV_VERSION"]
    if not ok("checkov", v, TOOLS / "checkov-venv/bin/checkov"):
        print(f"bench: installing checkov {v} into .tools/checkov-venv", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(TOOLS / "checkov-venv")], check=True)
        subprocess.run([str(TOOLS / "checkov-venv/bin/pip"), "install", "-q", f"checkov=={v}"], check=True)
        (stamps / "checkov").write_text(v)
    v = VERSIONS["KUBE_SCORE_VERSION"]
    if not ok("kube-score", v, TOOLS / "bin/kube-score"):
        print(f"bench: building kube-score {v} (go install)", file=sys.stderr)
        subprocess.run(["go", "install", "-ldflags", "-s -w", f"github.com/zegl/kube-score/cmd/kube-score@{v}"],
                       env={**os.environ, "GOBIN": str(TOOLS / "bin"), "CGO_ENABLED": "0"}, check=True)
        (stamps / "kube-score").write_text(v)


def baseline_code(rev: str, dest: Path) -> Path:
    """The validator package of commit ``rev`` (or a directory holding one already)."""
    if (Path(rev) / "validator").is_dir():
        return Path(rev)
    # validator/data/versions is a link to the top-level versions file
    paths = ["validator"] + (["versions"] if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}:versions"],
                                                             capture_output=True).returncode == 0 else [])
    out = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, *paths], capture_output=True,
                         check=True)
    code = dest / f"validator-{rev}"
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        tar.extractall(code, filter="data")
    return code


# --- start-up --------------------------------------------------------------------------------------

def startup(rounds: int) -> dict[str, float]:
    """Median seconds of `gitops-validate --help` and `--version` (this checkout's validator)."""
    cmd = [sys.executable, "-c", "import sys; from gitops_validate.cli import main; sys.exit(main(sys.argv[1:]))"]
    out = {}
    for flag in ("--help", "--version"):
        times = [measure([*cmd, flag], ROOT, tool_env(ROOT))[0] for _ in range(rounds)]
        out[flag] = statistics.median(times)
    return out


# --- the table -------------------------------------------------------------------------------------

COLUMNS = [("cold", "full run, cold"), ("warm", "warm (renders cached)"), ("one_file", "one values file changed"),
           ("floor", "floor: helm per app + one kubeconform"), ("manifests", "ours on pre-rendered manifests"),
           ("kubeconform", "kubeconform alone"), ("checkov", "checkov"), ("kube_score", "kube-score")]


def exponent(points: list[tuple[int, float]]) -> str:
    """Growth exponent from the smallest to the largest size, and over the last step."""
    points = [(n, t) for n, t in points if t > 0]
    if len(points) < 2:
        return "–"
    (n0, t0), (n1, t1), (n2, t2) = points[0], points[-2], points[-1]
    whole = math.log(t2 / t0) / math.log(n2 / n0)
    last = math.log(t2 / t1) / math.log(n2 / n1)
    return f"{whole:.2f} ({last:.2f})"


def table(results: dict, columns: list[tuple[str, str]], objects: dict) -> str:
    head = ["N apps × clusters", "objects"] + [title for _, title in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (apps, clusters), row in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = [f"{apps} × {clusters}", str(objects[(apps, clusters)])]
        for key, _ in columns:
            times = [t for t, _ in row.get(key, [])]
            cells.append(f"{statistics.median(times):.2f} s" if times else "–")
        lines.append("| " + " | ".join(cells) + " |")
    for clusters in sorted({c for _, c in results}):
        sizes = sorted(a for a, c in results if c == clusters)
        if len(sizes) < 2 and clusters != min(c for _, c in results):
            continue
        big = results[(sizes[-1], clusters)]
        lines.append("| " + " | ".join([f"peak MB, {sizes[-1]} × {clusters}", ""] + [
            f"{max(m for _, m in big[k]) / 1024:.0f}" if big.get(k) else "–" for k, _ in columns]) + " |")
        lines.append("| " + " | ".join([f"growth exponent × {clusters}", ""] + [
            exponent([(objects[(a, clusters)], statistics.median(t for t, _ in results[(a, clusters)][k]))
                      for a in sizes if results[(a, clusters)].get(k)]) for k, _ in columns]) + " |")
    return "\n".join(lines)


#: The issue's targets, as (title, numerator, denominator, target).
RATIOS = [("ours on manifests / kubeconform alone", "manifests", "kubeconform", "≤ 2"),
          ("checkov / ours on manifests", "checkov", "manifests", "≥ 10"),
          ("kube-score / ours on manifests", "kube_score", "manifests", "> 1"),
          ("cold / floor", "cold", "floor", "≤ 1.2")]


def ratio_table(results: dict, objects: dict, baseline: str | None) -> str:
    """The target ratios per row, from the medians of the same rounds."""
    ratios = RATIOS + ([(f"{what} @{baseline} / now", f"{key}_before", key, "(speed-up)")
                        for what, key in (("warm", "warm"), ("one values file", "one_file"), ("ours on manifests", "manifests"))]
                       if baseline else [])
    head = ["N apps × clusters", "objects"] + [f"{title} (target {target})" for title, _, _, target in ratios]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (apps, clusters), row in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = [f"{apps} × {clusters}", str(objects[(apps, clusters)])]
        for _, a, b, _ in ratios:
            if row.get(a) and row.get(b):
                cells.append(f"{statistics.median(t for t, _ in row[a]) / statistics.median(t for t, _ in row[b]):.2f}")
            else:
                cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- stages on generated objects (--objects) -------------------------------------------------------

STAGE_SCRIPT = """
import gc, json, sys, time
from pathlib import Path
from gitops_validate import pipeline, policy, schema
from gitops_validate.model import Manifest
from gitops_validate.rules import Context
from gitops_validate.yamlio import decode, load_all, many_documents, split_stream
path, schemas, version = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
out = {}
t = time.perf_counter()
with many_documents():
    text = decode(Path(path).read_bytes())
    objs = [Manifest(d.data, path, d.line, yaml=d) for c in split_stream(text)
            for d in load_all(c.text, first_line=c.first_line) if isinstance(d.data, dict)]
out["parse"] = time.perf_counter() - t
t = time.perf_counter()
schema.check_objects(objs, pipeline.find_tool("kubeconform"), schemas, version)
out["schema"] = time.perf_counter() - t
t = time.perf_counter()
policy.evaluate(objs, Context(tuple(objs), None, ("docker.io/library/",)))
out["policy"] = time.perf_counter() - t
print(json.dumps(out))
"""
STAGES = [("parse", "reading YAML (line numbers kept)"), ("schema", "schema (kubeconform + API limits)"),
          ("policy", "policy (every rule)"), ("run", "whole `--manifests` run")]


def objects_growth(sizes: list[int], rounds: int, work: Path) -> str:
    """Each stage's median seconds on synth.manifest_stream of about ``sizes`` objects, and its growth
    exponent from the smallest to the largest; every size in a fresh process, interleaved."""
    files = {}
    for n in sizes:
        stream = synth.manifest_stream(max(1, round(n / 5.3)))   # about 5.3 objects per unit
        files[n] = work / f"objects-{n}.yaml"
        files[n].write_text(stream)
    counts = {n: sum(1 for line in files[n].read_text().splitlines() if line.startswith("kind: ")) for n in sizes}
    version = VERSIONS["KUBERNETES_VERSION"].lstrip("v")
    times: dict[int, dict[str, list[float]]] = {n: {} for n in sizes}
    for r in range(rounds):
        for n in sizes:
            p = subprocess.run([sys.executable, "-c", STAGE_SCRIPT, str(files[n]), str(TOOLS / "schemas"), version],
                               env=tool_env(ROOT), capture_output=True, text=True, cwd=work)
            if p.returncode != 0:
                raise Failed(f"stage timer on {counts[n]} objects exited {p.returncode}: {p.stderr[-1500:]}")
            for k, v in json.loads(p.stdout.splitlines()[-1]).items():
                times[n].setdefault(k, []).append(v)
            run, _ = measure([sys.executable, "-c", "import sys; from gitops_validate.cli import main; "
                              "sys.exit(main(sys.argv[1:]))", "--format", "json", "--manifests", str(files[n])],
                             work, tool_env(ROOT), ok=(0, 1))
            times[n].setdefault("run", []).append(run)
            print(f"bench: round {r + 1} {counts[n]} objects: " + ", ".join(
                f"{k} {v[-1]:.2f} s" for k, v in times[n].items()), file=sys.stderr, flush=True)
    head = ["stage"] + [f"{counts[n]} objects" for n in sizes] + [f"growth exponent {counts[sizes[0]]} → {counts[sizes[-1]]}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, title in STAGES:
        med = [statistics.median(times[n][key]) for n in sizes]
        lines.append("| " + " | ".join([title] + [f"{t:.2f} s" for t in med] + [
            f"{math.log(med[-1] / med[0]) / math.log(counts[sizes[-1]] / counts[sizes[0]]):.2f}"
            if len(sizes) > 1 and med[0] > 0 else "–"]) + " |")
    return "\n".join(lines)


def machine() -> str:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; load average at the start {load:.1f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10,50,200,500", help="apps in all (comma-separated)")
    p.add_argument("--clusters", default="1,3", help="cluster counts the apps are split over; the extra ones "
                                                     "run the two largest sizes")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline", metavar="REV", help="also time our warm, one-file and manifests runs of commit REV")
    p.add_argument("--quick", action="store_true", help="smoke test: N=2, one round, no checkov or kube-score")
    p.add_argument("--no-write", action="store_true", help="print the table, do not rewrite docs/performance.md")
    p.add_argument("--no-external", action="store_true", help="skip checkov and kube-score")
    p.add_argument("--objects", default="2000,20000", help="object counts for the stage growth table "
                                                           "(comma-separated; empty: skip it)")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cluster_counts = [int(c) for c in args.clusters.split(",")]
    if args.quick:
        sizes, cluster_counts, args.rounds, args.no_external, args.objects = [2], [1], 1, True, "100,200"
    object_sizes = [int(n) for n in args.objects.split(",") if n.strip()]
    for tool in ("helm", "kubeconform", "helm-renderer"):
        if not (TOOLS / "bin" / tool).is_file():
            print(f"bench: {TOOLS / 'bin' / tool} is missing: run `make setup`", file=sys.stderr)
            return 2
    if not args.no_external:
        install_tools()

    columns = [c for c in COLUMNS if not (args.no_external and c[0] in ("checkov", "kube_score"))]
    with tempfile.TemporaryDirectory(prefix="gitops-bench-") as tmp:
        work = Path(tmp)
        code = baseline_code(args.baseline, work) if args.baseline else None
        if code:
            columns += [("warm_before", f"warm @{args.baseline}"), ("one_file_before", f"one values file @{args.baseline}"),
                        ("manifests_before", f"manifests @{args.baseline}")]
        subjects = []
        for clusters in cluster_counts:
            for apps in (sizes if clusters == cluster_counts[0] else sizes[-2:]):
                subjects.append(Subject(work, apps, clusters))
        results: dict[tuple[int, int], dict[str, list]] = {(s.apps, s.clusters): {} for s in subjects}
        objects: dict[tuple[int, int], int] = {}
        for s in subjects:   # pre-render once: the manifests the other tools read
            s.floor()
            print(f"bench: N={s.apps}x{s.clusters}: helm-renderer and the helm CLI print the same bytes for all "
                  f"{s.check_renderer()} apps", file=sys.stderr, flush=True)
            s.write_all()
            objects[(s.apps, s.clusters)] = sum(1 for line in s.all.read_text().splitlines()
                                                if re.match(r"^kind: ", line))
        for r in range(args.rounds):
            for s in subjects:
                row = results[(s.apps, s.clusters)]
                steps = [("cold", s.cold), ("warm", s.ours), ("one_file", s.one_file), ("floor", s.floor),
                         ("manifests", s.manifests), ("kubeconform", s.kubeconform)]
                if not args.no_external:
                    steps += [("checkov", s.checkov), ("kube_score", s.kube_score)]
                if code:
                    s.ours(code=code)  # fill the old code's own cache first (its cache format may differ)
                    steps += [("warm_before", lambda s=s: s.ours(code=code)),
                              ("one_file_before", lambda s=s: s.one_file(code=code)),
                              ("manifests_before", lambda s=s: s.manifests(code=code))]
                for key, step in steps:
                    row.setdefault(key, []).append(step())
                    print(f"bench: round {r + 1} N={s.apps}x{s.clusters} {key}: {row[key][-1][0]:.2f} s "
                          f"{row[key][-1][1] / 1024:.0f} MB",
                          file=sys.stderr, flush=True)
        start = startup(max(5, args.rounds * 5))
        growth = objects_growth(object_sizes, args.rounds, work) if object_sizes else ""

    text = table(results, columns, objects) + "\n\nThe issue's target ratios (medians of the same rounds):\n\n" + \
        ratio_table(results, objects, args.baseline)
    if growth:
        text += ("\n\nEach stage of `--manifests` on `tests/synth.py`'s generated objects (Deployments, Services, "
                 "ConfigMaps, Secrets, ... with planted defects; fresh processes, interleaved, medians):\n\n" + growth)
    tools = (f"helm {VERSIONS['HELM_VERSION']}, kubeconform {VERSIONS['KUBECONFORM_VERSION']}"
             + ("" if args.no_external else
                f", checkov {VERSIONS['CHECKOV_VERSION']}, kube-score {VERSIONS['KUBE_SCORE_VERSION']}"))
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    block = (f"{BEGIN}\nMeasured {stamp} by `make bench` ({args.rounds} interleaved rounds, medians; "
             f"`{' '.join(sys.argv[1:]) or 'no options'}`). Machine: {machine()}. Tools: {tools}.\n\n{text}\n\n"
             f"Start-up (median of {max(5, args.rounds * 5)}): `gitops-validate --help` {start['--help'] * 1000:.0f} ms, "
             f"`--version` {start['--version'] * 1000:.0f} ms.\n{END}")
    print(block)
    if not args.no_write:
        doc = DOC.read_text()
        if BEGIN in doc and END in doc:
            doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
        else:
            doc += "\n" + block + "\n"
        DOC.write_text(doc)
        print(f"bench: wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(2)
