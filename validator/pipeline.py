"""The pipeline: discover -> render -> schema -> policy. The CLI is a thin layer over ``run``."""

from __future__ import annotations

import os
import posixpath
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from . import appsource, discover, policy, render, schema, schemastore, suppress, tools, userdirs
from .config import Config
from .findings import Finding, Severity
from .model import ClusterFacts, Manifest
from .rules import Context
from .yamlio import YamlProblem, decode, load_all, split_stream

#: Changing one of these can change every result.
GLOBAL_FILES = (".gitops-validator.yaml",)


class CannotRun(Exception):
    """The validator cannot do its job (exit 2); the message says what to do."""


@dataclass
class Options:
    repo: Path
    config: Config
    paths: list[str] = field(default_factory=list)   # changed files (pre-commit) or manifest files
    manifests: bool = False
    kubernetes_version: str | None = None
    schema_dir: Path | None = None
    cache_dir: Path | None = None
    jobs: int = min(4, os.cpu_count() or 1)
    stdin: str | None = None


@dataclass
class Result:
    findings: list[Finding]
    apps: int
    objects: int
    seconds: float
    helm_runs: int = 0
    cache_hits: int = 0


def find_tool(name: str) -> str:
    path = tools.locate(name)
    if not path:
        raise CannotRun(tools.missing_hint(name))
    return path


def schema_root(opts: Options) -> Path | None:
    """The schema tree given (--schema-dir, GITOPS_VALIDATE_SCHEMA_DIR, config schemaDir), or None:
    the user's cache, built on first use from the installed packages."""
    if opts.schema_dir or os.environ.get("GITOPS_VALIDATE_SCHEMA_DIR"):
        return opts.schema_dir or Path(os.environ["GITOPS_VALIDATE_SCHEMA_DIR"])
    return opts.repo / opts.config.schema_dir if opts.config.schema_dir else None


def _require_schemas(root: Path | None, version: str) -> Path:
    if root is None:
        try:
            return schemastore.user_schemas(userdirs.schema_dir(), version)
        except SystemExit as e:  # no such minor in kubernetes-validate
            raise CannotRun(f"cannot build the Kubernetes schemas: {e}") from None
        except OSError as e:
            raise CannotRun(f"cannot build the Kubernetes schemas in {userdirs.schema_dir()}: {e}") from None
    d = schemastore.kubernetes_schema_dir(root, version)
    if not d.is_dir():
        raise CannotRun(f"no offline schemas for Kubernetes {schemastore.kubernetes_minor(version)} in {d}. "
                        "Build them with `python -m validator.schemastore build --kubernetes-version "
                        f"{version} --out {root}`, or leave out --schema-dir/schemaDir to use the built-in ones.")
    return root


def _revision(repo: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "HEAD"
    except (OSError, subprocess.SubprocessError):
        return "HEAD"


def _guess_cluster(app: Manifest, clusters: dict[str, ClusterFacts]) -> str | None:
    """The cluster folder holding the Application or one of its value files."""
    spec = app.doc.get("spec") or {}
    paths = [app.file or ""]
    for src in spec.get("sources") or [spec.get("source") or {}]:
        if isinstance(src, dict):
            for vf in (src.get("helm") or {}).get("valueFiles") or []:
                paths.append(posixpath.normpath(posixpath.join(str(src.get("path", ".")), str(vf).lstrip("$"))))
    return discover.cluster_of(paths, clusters)


def _kube_version(opts: Options, facts: ClusterFacts | None) -> str:
    return opts.kubernetes_version or (facts.kubernetes_version if facts else None) or opts.config.kubernetes_version


def run(opts: Options) -> Result:
    start = time.perf_counter()
    kubeconform = find_tool("kubeconform")
    root = schema_root(opts)
    if opts.manifests:
        return _run_manifests(opts, kubeconform, root, start)
    return _run_repo(opts, kubeconform, root, start)


def _run_manifests(opts: Options, kubeconform: str, root: Path | None, start: float) -> Result:
    version = _kube_version(opts, None)
    root = _require_schemas(root, version)
    findings: list[Finding] = []
    manifests: list[Manifest] = []
    sources = opts.paths or ["-"]
    for src in sources:
        name = "<stdin>" if src == "-" else src
        try:
            raw = (opts.stdin if opts.stdin is not None else sys.stdin.read()).encode() if src == "-" else Path(src).read_bytes()
        except OSError as e:
            raise CannotRun(f"cannot read {src}: {e.strerror}") from None
        try:
            text = decode(raw)
        except YamlProblem as e:
            findings.append(Finding(e.rule, Severity.ERROR, e.message, name, e.line))
            continue
        for chunk in split_stream(text):
            try:
                for d in load_all(chunk.text, first_line=chunk.first_line):
                    if d.data is None:
                        continue
                    if not isinstance(d.data, dict):
                        findings.append(Finding("schema/not-kubernetes", Severity.ERROR,
                                                "not a Kubernetes object: the document is not a mapping", name, d.line))
                        continue
                    manifests.append(Manifest(d.data, name, d.line, yaml=d))
            except YamlProblem as e:
                findings.append(Finding(e.rule, Severity.ERROR, e.message, name, e.line))
    clusters, _ = discover.load_clusters(opts.repo, opts.config)
    facts = next(iter(clusters.values())) if len(clusters) == 1 else None  # which one is ambiguous otherwise
    findings += schema.check_objects(manifests, kubeconform, root, version)
    ctx = Context(tuple(manifests), facts, opts.config.allowed_registries)
    findings += policy.evaluate(manifests, ctx, opts.config.severities)
    return _finish(findings, opts, 0, len(manifests), start)


def _finish(findings: list[Finding], opts: Options, apps: int, objects: int, start: float, **stats) -> Result:
    out: dict[tuple, Finding] = {}
    for f in findings:
        sev = opts.config.severities.get(f.rule, f.severity) if f.rule in opts.config.severities else f.severity
        if sev is None or suppress.excluded(f, opts.config.exclude, opts.config.rule_exclude):
            continue
        if sev is not f.severity:
            f = Finding(f.rule, sev, f.message, f.file, f.line, f.object, f.app)
        out.setdefault((f.rule, f.file, f.line, f.message, f.app), f)
    return Result(sorted(out.values(), key=Finding.sort_key), apps, objects, time.perf_counter() - start, **stats)


@dataclass
class _App:
    manifest: Manifest
    cluster: str | None
    hint_files: tuple[str, ...] = ()   # the parent's value files, for an app rendered by one
    paths: set[str] = field(default_factory=set)
    manifests: list[Manifest] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def _run_repo(opts: Options, kubeconform: str, root: Path | None, start: float) -> Result:
    repo, config = opts.repo, opts.config
    disc = discover.discover(repo, config)
    findings = list(disc.findings)
    versions = {name: _kube_version(opts, cf) for name, cf in disc.clusters.items()}
    default_version = _kube_version(opts, None)

    def version_of(cluster: str | None) -> str:
        return versions.get(cluster, default_version) if cluster else default_version

    given = root
    for v in sorted({*versions.values(), default_version}):
        root = _require_schemas(given, v)
    api_versions = {v: schemastore.api_versions(root, v) for v in {*versions.values(), default_version}}
    revision = _revision(repo)

    top: list[Manifest] = []
    for m in disc.argo:
        m.cluster = _guess_cluster(m, disc.clusters) if m.kind != "AppProject" else discover.cluster_of([m.file or ""], disc.clusters)
        if m.kind == "Application":
            top.append(m)
        elif m.kind == "ApplicationSet":
            generated, fs = discover.expand_applicationset(m, repo, config)
            findings += fs
            for g in generated:
                g.cluster = _guess_cluster(g, disc.clusters) or m.cluster
            top += generated

    helm: str | None = None
    apps: dict[tuple, _App] = {}
    pending = [_App(m, m.cluster) for m in top]
    helm_runs = cache_hits = 0
    with ThreadPoolExecutor(max_workers=opts.jobs) as pool:
        while pending:
            jobs: list[tuple[_App, render.RenderRequest]] = []
            for a in pending:
                key = (a.cluster, a.manifest.namespace, a.manifest.name)
                if key in apps:  # the first definition wins, as it does in the cluster
                    m = a.manifest
                    findings.append(Finding("argocd/duplicate-application", Severity.ERROR,
                                            f"Application {m.name!r} is defined twice (or renders itself); "
                                            f"first in {apps[key].manifest.file}",
                                            m.file, m.line_of(("metadata", "name")), m.ref, m.name))
                    continue
                apps[key] = a
                version = version_of(a.cluster)
                target = appsource.Target(a.cluster, version, api_versions[version], revision, a.hint_files)
                prep = appsource.prepare(a.manifest, repo, config, target)
                a.findings += prep.findings
                a.paths |= prep.paths
                a.manifests += prep.manifests
                for req in prep.requests:
                    vf, ok = schema.check_values(repo, req)
                    a.findings += vf
                    if ok:
                        jobs.append((a, req))
            if jobs and helm is None:
                helm = find_tool("helm")
            do_render = partial(render.render, repo, helm=helm, cache_dir=opts.cache_dir)
            results = list(pool.map(do_render, [req for _, req in jobs]))
            pending = []
            for (a, req), r in zip(jobs, results, strict=True):
                a.findings += r.findings
                a.manifests += r.manifests
                cache_hits += r.cached
                helm_runs += not r.cached
                for child in r.manifests:
                    if child.kind == "Application" and child.api_version.startswith("argoproj.io/"):
                        pending.append(_App(child, a.cluster, tuple(req.value_files)))

    scope = _Scope.of(opts, apps, disc)
    file_objects = [m for m in disc.argo if m.file]
    all_objects = file_objects + [m for a in apps.values() for m in a.manifests]
    checked = [m for m in all_objects if scope.keeps(m.app, m.file)]
    for a in apps.values():
        findings += a.findings
    findings = [f for f in findings if scope.keeps(f.app, f.file)]

    by_version: dict[str, list[Manifest]] = {}
    for m in checked:
        by_version.setdefault(version_of(m.cluster), []).append(m)
    for v, batch in sorted(by_version.items()):
        findings += schema.check_objects(batch, kubeconform, root, v)
    by_cluster: dict[str | None, list[Manifest]] = {}
    for m in all_objects:
        by_cluster.setdefault(m.cluster, []).append(m)
    for cluster, objs in by_cluster.items():
        ctx = Context(tuple(objs), disc.clusters.get(cluster) if cluster else None, config.allowed_registries)
        findings += policy.evaluate([m for m in objs if scope.keeps(m.app, m.file)], ctx, config.severities)
    n_apps = sum(1 for a in apps.values() if scope.keeps(a.manifest.name, None))
    return _finish(findings, opts, n_apps, len(checked), start, helm_runs=helm_runs, cache_hits=cache_hits)


@dataclass
class _Scope:
    """What a run reports on: every app, or (with changed files) the apps those files affect
    and the changed files themselves. Other apps are still loaded, for cross-app references."""
    apps: set[str] | None          # None: everything
    changed: set[str]

    @classmethod
    def of(cls, opts: Options, apps: dict[tuple, _App], disc: discover.Discovery) -> "_Scope":
        if not opts.paths:
            return cls(None, set())
        changed = {posixpath.normpath(p) for p in opts.paths}
        if changed & set(GLOBAL_FILES) or any(
                cf.directory and p == f"{cf.directory}/cluster.yaml" for p in changed for cf in disc.clusters.values()):
            return cls(None, changed)
        affected = set()
        for a in apps.values():
            dirs = [p for p in a.paths if (opts.repo / p).is_dir()]
            if (a.manifest.file in changed and a.manifest.line is not None) or changed & a.paths or any(
                    c.startswith(d.rstrip("/") + "/") for c in changed for d in dirs):
                affected.add(a.manifest.name)
        return cls(affected, changed)

    def keeps(self, app: str | None, file: str | None) -> bool:
        return self.apps is None or app in self.apps or (file is not None and file in self.changed)
