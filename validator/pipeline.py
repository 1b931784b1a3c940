"""The pipeline: discover -> render -> schema -> policy. The CLI is a thin layer over ``run``."""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from . import appsource, discover, kustomize, policy, render, schema, schemastore
from .config import Config
from .findings import Finding, Severity
from .model import ClusterFacts, Manifest
from .rules import POLICY_RULES, Context
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


def find_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise CannotRun(f"{name} not found on PATH. {hint}")
    return path


HELM_HINT = ("Install it with `make setup` (builds helm v4 into .tools/bin; `make validate` puts it on PATH) "
             "or `go install helm.sh/helm/v4/cmd/helm@v4.2.1`.")
KUSTOMIZE_HINT = ("Install it with `make setup` (builds kustomize v5 into .tools/bin) or "
                  "`go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.1`.")
#: The app name of a cluster's Argo CD install (cluster.yaml ``argocdInstall``) in findings.
INSTALL_APP = "argocd-install"
#: The rules for the install's objects: cluster-wide facts this repo sets (NodePorts, projects).
#: Upstream's workloads (probes, resources, images) are Argo CD's to harden, not this repo's;
#: every object of the install is still schema-checked.
INSTALL_RULES = tuple(r for r in POLICY_RULES if r.id == "refs/nodeport" or r.id.startswith("argocd/"))
KUBECONFORM_HINT = ("Install it with `make setup` (builds it into .tools/bin) or "
                    "`go install github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0`.")


def schema_root(opts: Options) -> Path:
    root = opts.schema_dir or (Path(os.environ["GITOPS_VALIDATE_SCHEMA_DIR"]) if os.environ.get("GITOPS_VALIDATE_SCHEMA_DIR")
                               else opts.repo / (opts.config.schema_dir or ".tools/schemas"))
    return root


def argocd_manifests_dir(opts: Options) -> Path:
    """Argo CD's release manifests that `make setup` keeps offline (.tools/argocd/<version>/), next
    to the schemas; GITOPS_VALIDATE_ARGOCD_DIR overrides."""
    env = os.environ.get("GITOPS_VALIDATE_ARGOCD_DIR")
    return Path(env) if env else schema_root(opts).parent / "argocd"


def _require_schemas(root: Path, version: str) -> None:
    d = schemastore.kubernetes_schema_dir(root, version)
    if not d.is_dir():
        raise CannotRun(f"no offline schemas for Kubernetes {schemastore.kubernetes_minor(version)} in {d}. "
                        "Run `make setup` (or pass --schema-dir).")


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
    kubeconform = find_tool("kubeconform", KUBECONFORM_HINT)
    root = schema_root(opts)
    if opts.manifests:
        return _run_manifests(opts, kubeconform, root, start)
    return _run_repo(opts, kubeconform, root, start)


def _run_manifests(opts: Options, kubeconform: str, root: Path, start: float) -> Result:
    version = _kube_version(opts, None)
    _require_schemas(root, version)
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
        if sev is None:
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


def _run_repo(opts: Options, kubeconform: str, root: Path, start: float) -> Result:
    repo, config = opts.repo, opts.config
    disc = discover.discover(repo, config)
    findings = list(disc.findings)
    versions = {name: _kube_version(opts, cf) for name, cf in disc.clusters.items()}
    default_version = _kube_version(opts, None)

    def version_of(cluster: str | None) -> str:
        return versions.get(cluster, default_version) if cluster else default_version

    for v in {*versions.values(), default_version}:
        _require_schemas(root, v)
    api_versions = {v: schemastore.api_versions(root, v) for v in {*versions.values(), default_version}}
    revision = _revision(repo)
    argocd_dir = argocd_manifests_dir(opts)
    tools: dict[str, str] = {}

    def tool(name: str, hint: str) -> str:
        if name not in tools:
            tools[name] = find_tool(name, hint)
        return tools[name]

    top: list[Manifest] = []
    generated_apps: list[Manifest] = []   # by ApplicationSets: policy-checked (projects), not files
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
            generated_apps += generated

    apps: dict[tuple, _App] = {}
    pending = [_App(m, m.cluster) for m in top]
    helm_runs = cache_hits = 0
    # Each cluster's Argo CD install first: its argocd-cm holds kustomize.buildOptions.
    build_options: dict[str | None, tuple[str, ...]] = {}
    argo_files = {m.file for m in disc.argo}
    for name, cf in sorted(disc.clusters.items()):
        if cf.argocd_install:
            a = _install_app(repo, name, cf, opts, argocd_dir, tool("kustomize", KUSTOMIZE_HINT))
            apps[(name, None, INSTALL_APP)] = a
            # the install's AppProjects etc. are also repo files, read (and checked) once
            a.manifests = [m for m in a.manifests if not (m.kind in discover.ARGO_KINDS and m.file in argo_files)]
            build_options[name] = _kustomize_build_options(a.manifests)
    with ThreadPoolExecutor(max_workers=opts.jobs) as pool:
        while pending:
            jobs: list[tuple[_App, render.RenderRequest]] = []
            kjobs: list[tuple[_App, kustomize.KustomizeRequest]] = []
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
                target = appsource.Target(a.cluster, version, api_versions[version], revision, a.hint_files,
                                          argocd_dir, build_options.get(a.cluster, ()))
                prep = appsource.prepare(a.manifest, repo, config, target)
                a.findings += prep.findings
                a.paths |= prep.paths
                a.manifests += prep.manifests
                kjobs += [(a, k) for k in prep.kustomize]
                for req in prep.requests:
                    vf, ok = schema.check_values(repo, req)
                    a.findings += vf
                    if ok:
                        jobs.append((a, req))
            do_render = partial(render.render, repo, helm=tool("helm", HELM_HINT) if jobs else "", cache_dir=opts.cache_dir)
            results = list(pool.map(do_render, [req for _, req in jobs]))
            do_kustomize = partial(kustomize.render, repo, kustomize=tool("kustomize", KUSTOMIZE_HINT) if kjobs else "",
                                   cache_dir=opts.cache_dir)
            kresults = list(pool.map(do_kustomize, [req for _, req in kjobs]))
            pending = []
            for (a, kreq), kr in zip(kjobs, kresults, strict=True):
                a.findings += kr.findings
                a.manifests += kr.manifests
                a.paths |= kr.paths
                cache_hits += kr.cached
                pending += [_App(c, a.cluster) for c in kr.manifests
                            if c.kind == "Application" and c.api_version.startswith("argoproj.io/")]
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
    checked = [m for m in all_objects if scope.keeps(_app_of(m), m.file)]
    for a in apps.values():
        findings += a.findings
    findings = [f for f in findings if scope.keeps(f.app, f.file)]

    by_version: dict[str, list[Manifest]] = {}
    for m in checked:
        by_version.setdefault(version_of(m.cluster), []).append(m)
    for v, batch in sorted(by_version.items()):
        findings += schema.check_objects(batch, kubeconform, root, v)
    by_cluster: dict[str | None, list[Manifest]] = {}
    for m in all_objects + generated_apps:
        by_cluster.setdefault(m.cluster, []).append(m)
    for cluster, objs in by_cluster.items():
        ctx = Context(tuple(objs), disc.clusters.get(cluster) if cluster else None, config.allowed_registries)
        mine = [m for m in objs if scope.keeps(_app_of(m), m.file)]
        findings += policy.evaluate([m for m in mine if m.app != INSTALL_APP], ctx, config.severities, repo=repo)
        findings += policy.evaluate([m for m in mine if m.app == INSTALL_APP], ctx, config.severities, INSTALL_RULES,
                                    repo=repo)
    n_apps = sum(1 for a in apps.values() if scope.keeps(a.manifest.name, None))
    return _finish(findings, opts, n_apps, len(checked), start, helm_runs=helm_runs, cache_hits=cache_hits)


def _install_app(repo: Path, cluster: str, cf: ClusterFacts, opts: Options, argocd_dir: Path, kustomize_bin: str) -> _App:
    """The cluster's Argo CD install, rendered with plain `kustomize build` (as `kubectl apply -k`
    does) into the objects of its namespace; an app of its own in findings."""
    path = cf.argocd_install or "."
    facts_file = f"{cf.directory}/cluster.yaml" if cf.directory else None
    anchor = Manifest({"kind": "Kustomization", "metadata": {"name": INSTALL_APP}}, facts_file, None, cluster=cluster)
    a = _App(anchor, cluster)
    if not (repo / path).is_dir() or kustomize.kustomization_file(repo / path) is None:
        a.findings.append(Finding("argocd/missing-path", Severity.ERROR,
                                  f"argocdInstall {path!r} is not a kustomization directory in the repository",
                                  facts_file, None, None, INSTALL_APP))
        return a
    req = kustomize.KustomizeRequest(app=INSTALL_APP, path=path, namespace="", cluster=cluster, argocd_dir=argocd_dir)
    r = kustomize.render(repo, req, kustomize_bin, opts.cache_dir)
    a.findings += r.findings
    a.manifests += r.manifests
    a.paths |= r.paths
    return a


def _kustomize_build_options(objects: list[Manifest]) -> tuple[str, ...]:
    """argocd-cm ``kustomize.buildOptions`` of an install (Argo CD splits it on whitespace)."""
    for m in objects:
        if m.kind == "ConfigMap" and m.name == "argocd-cm":
            return tuple(str((m.doc.get("data") or {}).get("kustomize.buildOptions") or "").split())
    return ()


def _app_of(m: Manifest) -> str | None:
    """The app an object belongs to; an Application read from a file is its own."""
    return m.app if m.app is not None or m.kind != "Application" else m.name


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
        # a changed AppProject affects the apps in it (and the app-of-apps that renders them)
        projects = {m.name for m in disc.argo if m.kind == "AppProject" and m.file in changed}
        for a in apps.values():
            if projects and str((a.manifest.doc.get("spec") or {}).get("project")) in projects:
                affected |= {a.manifest.name} | ({a.manifest.app} if a.manifest.app else set())
            dirs = [p for p in a.paths if (opts.repo / p).is_dir()]
            if (a.manifest.file in changed and a.manifest.line is not None) or changed & a.paths or any(
                    c.startswith(d.rstrip("/") + "/") for c in changed for d in dirs):
                affected.add(a.manifest.name)
        return cls(affected, changed)

    def keeps(self, app: str | None, file: str | None) -> bool:
        return self.apps is None or app in self.apps or (file is not None and file in self.changed)
