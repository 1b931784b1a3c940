"""The pipeline: discover -> render -> schema -> policy. The CLI is a thin layer over ``run``."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import posixpath
import sys
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path

from . import appsource, confine, determinism, discover, kustomize, policy, provenance, render, resultcache, schema, schemastore, suppress, toolchain, tools, userdirs
from .config import Config
from .findings import Finding, Severity
from .helmrenderer import close_all as close_renderers
from .model import ClusterFacts, Manifest, dig, no_objects, sequence
from .record import Record, replace
from .rendercache import RenderCache
from .rules import POLICY_RULES, Context, refs
from .rules.capacity import Budget, budget
from .rules.secrets import secret_keys
from .tools import CannotRun
from .yamlio import YamlProblem, decode, load_all, split_stream

#: Changing one of these can change every result.
GLOBAL_FILES = (".gitops-validator.yaml",)


class Options(Record):
    repo: Path
    config: Config
    paths: list[str]                   # changed files (pre-commit) or manifest files
    manifests: bool
    kubernetes_version: str | None
    schema_dir: Path | None
    cache_dir: Path | None
    jobs: int
    stdin: str | None

    def __init__(self, repo: Path, config: Config, paths: list[str] | None = None, manifests: bool = False,
                 kubernetes_version: str | None = None, schema_dir: Path | None = None,
                 cache_dir: Path | None = None, jobs: int = min(4, os.cpu_count() or 1),
                 stdin: str | None = None) -> None:
        self.repo = repo
        self.config = config
        self.paths = [] if paths is None else paths
        self.manifests = manifests
        self.kubernetes_version = kubernetes_version
        self.schema_dir = schema_dir
        self.cache_dir = cache_dir
        self.jobs = jobs
        self.stdin = stdin


class Result(Record):
    findings: list[Finding]
    apps: int
    objects: int
    seconds: float
    helm_runs: int
    cache_hits: int
    budgets: list[Budget]              # per cluster: who asks for what (capacity/)

    def __init__(self, findings: list[Finding], apps: int, objects: int, seconds: float, helm_runs: int = 0,
                 cache_hits: int = 0, budgets: list[Budget] | None = None) -> None:
        self.findings = findings
        self.apps = apps
        self.objects = objects
        self.seconds = seconds
        self.helm_runs = helm_runs
        self.cache_hits = cache_hits
        self.budgets = [] if budgets is None else budgets


def find_tool(name: str) -> str:
    path = toolchain.locate(name)
    if not path:
        raise CannotRun(toolchain.missing_hint(name))
    return path


#: The app name of a cluster's Argo CD install (cluster.yaml ``argocdInstall``) in findings.
INSTALL_APP = "argocd-install"
#: The rules for the install's objects: cluster-wide facts this repo sets (NodePorts, projects).
#: Upstream's workloads (probes, resources, images) are Argo CD's to harden, not this repo's;
#: every object of the install is still schema-checked.
INSTALL_RULES = tuple(r for r in POLICY_RULES if r.id == "refs/nodeport" or r.id.startswith("argocd/"))


def schema_root(opts: Options) -> Path | None:
    """The schema tree given (--schema-dir, GITOPS_VALIDATE_SCHEMA_DIR, config schemaDir), or None:
    the user's cache, built on first use from the installed packages."""
    if opts.schema_dir or os.environ.get("GITOPS_VALIDATE_SCHEMA_DIR"):
        return opts.schema_dir or Path(os.environ["GITOPS_VALIDATE_SCHEMA_DIR"])
    return opts.repo / opts.config.schema_dir if opts.config.schema_dir else None



def argocd_manifests_dir(opts: Options) -> Path:
    """Argo CD's release manifests that `make setup` keeps offline (.tools/argocd/<version>/), next
    to the schemas; GITOPS_VALIDATE_ARGOCD_DIR overrides."""
    env = os.environ.get("GITOPS_VALIDATE_ARGOCD_DIR")
    root = schema_root(opts)
    return Path(env) if env else (root.parent if root else opts.repo / ".tools") / "argocd"


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
                        "Build them with `python -m gitops_validate.schemastore build --kubernetes-version "
                        f"{version} --out {root}`, or leave out --schema-dir/schemaDir to use the built-in ones.")
    return root


def _revision(repo: Path) -> str:
    out = discover.git(repo, "rev-parse", "HEAD")
    return (out or b"").decode("ascii", "replace").strip() or "HEAD"


def _guess_cluster(app: Manifest, clusters: dict[str, ClusterFacts]) -> str | None:
    """The cluster folder holding the Application or one of its value files."""
    spec = app.spec
    paths = [app.file or ""]
    for src in sequence(spec.get("sources")) or [spec.get("source")]:
        if isinstance(src, dict):
            for vf in sequence(dig(src, "helm", "valueFiles")):
                paths.append(posixpath.normpath(posixpath.join(str(src.get("path", ".")), str(vf).lstrip("$"))))
    return discover.cluster_of(paths, clusters)


def _kube_version(opts: Options, facts: ClusterFacts | None) -> str:
    if opts.kubernetes_version or not (facts and facts.kubernetes_version):
        return opts.kubernetes_version or opts.config.kubernetes_version  # both normalised when read
    try:
        return schemastore.normalize_version(facts.kubernetes_version)
    except ValueError as e:
        raise CannotRun(f"{facts.directory}/cluster.yaml: kubernetesVersion: {e}") from None


def run(opts: Options) -> Result:
    # A run builds one large heap of parsed objects that lives until its end; the cycle collector
    # would rescan it again and again as it grows (a fifth of a warm path-scoped run's CPU at 500
    # apps). Reference counting still frees everything acyclic; cycles wait for the run's end.
    collecting = gc.isenabled()
    gc.disable()
    tools.set_deadline(opts.config.limits.deadline)
    try:
        return _run(opts)
    finally:
        tools.set_deadline(None)  # the deadline is this run's: nothing called after it may inherit it
        if collecting:
            gc.enable()


def _run(opts: Options) -> Result:
    start = time.perf_counter()
    kubeconform = find_tool("kubeconform")
    root = schema_root(opts)
    if opts.manifests:
        return _run_manifests(opts, kubeconform, root, start)
    try:
        return _run_repo(opts, kubeconform, root, start)
    finally:
        close_renderers()  # the long-lived helm processes end with the run


def _run_manifests(opts: Options, kubeconform: str, root: Path | None, start: float) -> Result:
    version = _kube_version(opts, None)
    root = _require_schemas(root, version)
    findings: list[Finding] = []
    manifests: list[Manifest] = []
    sources = opts.paths or ["-"]
    # kubeconform (a Go process, the other core) starts now and gets each object as it is read; it
    # checks while this process reads and then evaluates the policy rules
    prepared = schema.Streamed(kubeconform, root, version)
    try:
        for src in sources:
            name = "<stdin>" if src == "-" else src
            try:
                raw = _read_stdin(opts) if src == "-" else Path(src).read_bytes()
            except OSError as e:
                raise CannotRun(f"cannot read {name}: {e.strerror}") from None
            try:
                text = decode(raw)
            except YamlProblem as e:
                findings.append(Finding(e.rule, Severity.ERROR, e.message, name, e.line))
                continue
            # (pipeline.run has the cyclic collector off: the node graphs are read without its passes)
            for chunk in split_stream(text):
                try:
                    for d in load_all(chunk.text, first_line=chunk.first_line):
                        if d.data is None:
                            continue
                        if not isinstance(d.data, dict):
                            findings.append(Finding("schema/not-kubernetes", Severity.ERROR,
                                                    "not a Kubernetes object: the document is not a mapping", name, d.line))
                            continue
                        if no_objects(d.data):   # an empty List: zero objects, as Argo CD and kubectl read it
                            continue
                        manifests.append(Manifest(d.data, name, d.line, yaml=d))
                        prepared.add(manifests[-1])
                except YamlProblem as e:
                    findings.append(Finding(e.rule, Severity.ERROR, e.message, name, e.line))
        prepared.close()
        clusters, _ = discover.load_clusters(opts.repo, opts.config)
        facts = next(iter(clusters.values())) if len(clusters) == 1 else None  # which one is ambiguous otherwise
        from concurrent.futures import ThreadPoolExecutor  # here, not at import: a warm repo run needs no pool
        with ThreadPoolExecutor(max_workers=1) as pool:
            schema_findings = pool.submit(prepared.check, kubeconform, root, version)
            ctx = Context(tuple(manifests), facts, opts.config.allowed_registries)
            policy_findings = policy.evaluate(manifests, ctx, opts.config.severities)
            findings += schema_findings.result()
    except BaseException:
        prepared.abandon()   # kubeconform ends on the stream's end (or was stopped); no thread or file left
        raise
    findings += policy_findings
    return _finish(findings, opts, 0, len(manifests), start)


def _read_stdin(opts: Options) -> bytes:
    """Standard input as bytes (decoded like any file, so non-UTF-8 is a finding). A closed or empty
    stdin is exit 2: `helm template ... | gitops-validate --manifests -` after a failed helm must not pass."""
    if opts.stdin is not None:
        raw = opts.stdin.encode()
    elif sys.stdin is None or sys.stdin.closed:
        raise CannotRun("--manifests -: standard input is closed; pipe the manifests in or name the files")
    else:
        raw = sys.stdin.buffer.read()
    if not raw.strip():
        raise CannotRun("--manifests -: standard input is empty, nothing to check (did the command before the pipe fail?)")
    return raw


def _finish(findings: list[Finding], opts: Options, apps: int, objects: int, start: float, **stats) -> Result:
    out: dict[tuple, Finding] = {}
    for f in findings:
        sev = opts.config.severities.get(f.rule, f.severity) if f.rule in opts.config.severities else f.severity
        if sev is None or suppress.excluded(f, opts.config.exclude, opts.config.rule_exclude):
            continue
        if sev is not f.severity:
            f = replace(f, severity=sev)
        out.setdefault((f.rule, f.file, f.line, f.message, f.app), f)
    return Result(sorted(out.values(), key=Finding.sort_key), apps, objects, time.perf_counter() - start, **stats)


class _App(Record):
    manifest: Manifest
    cluster: str | None
    hint_files: tuple[str, ...]        # the parent's value files, for an app rendered by one
    depth: int                         # 0 for an Application in a file, n for one an app-of-apps rendered n levels down
    paths: set[str]
    manifests: list[Manifest]
    findings: list[Finding]
    value_files: list[str]             # chart defaults first, as helm merges them

    def __init__(self, manifest: Manifest, cluster: str | None, hint_files: tuple[str, ...] = (), depth: int = 0,
                 paths: set[str] | None = None, manifests: list[Manifest] | None = None,
                 findings: list[Finding] | None = None, value_files: list[str] | None = None) -> None:
        self.manifest = manifest
        self.cluster = cluster
        self.hint_files = hint_files
        self.depth = depth
        self.paths = set() if paths is None else paths
        self.manifests = [] if manifests is None else manifests
        self.findings = [] if findings is None else findings
        self.value_files = [] if value_files is None else value_files


def _run_repo(opts: Options, kubeconform: str, root: Path | None, start: float) -> Result:
    repo, config = opts.repo, opts.config
    cache = RenderCache(opts.cache_dir, int(config.limits.cache_max_mb * 2**20)) if opts.cache_dir else None
    changes = _Changes.of(opts)
    disc = discover.discover(repo, config, exclude=opts.cache_dir, changed=changes.narrow())
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
    argocd_dir = argocd_manifests_dir(opts)
    found: dict[str, str] = {}

    def tool(name: str) -> str:
        if name not in found:
            found[name] = find_tool(name)
        return found[name]

    stored = _result_cache(opts, cache, kubeconform, root, {*versions.values(), default_version}) if cache else None
    fresh: dict[int, _Fresh] = {}                         # id(request) -> results to store at the end
    cached_objects: dict[int, resultcache.Object] = {}   # id(object) -> what the result cache knows of it
    origins: dict[int, list] = {}                        # id(object) -> [result key, index] it came from
    rendered_now: set[str | None] = set()                # clusters with a render of this run (helm or kustomize)
    unkeyed: set[str | None] = set()                     # ... one of which no result entry holds

    top: list[Manifest] = []
    generated_apps: list[Manifest] = []   # what ApplicationSets create: checked like Applications in files
    for m in disc.argo:
        m.cluster = _guess_cluster(m, disc.clusters) if m.kind != "AppProject" else discover.cluster_of([m.file or ""], disc.clusters)
        if m.kind == "Application":
            top.append(m)
        elif m.kind == "ApplicationSet":
            try:
                generated, fs = discover.expand_applicationset(m, repo, config)
            except Exception as e:  # noqa: BLE001 - a malformed ApplicationSet is a finding, never a crash
                generated, fs = [], [policy.unreadable(m, "expanding its generators", e)]
            findings += fs
            for g in generated:
                g.cluster = _guess_cluster(g, disc.clusters) or m.cluster
            top += generated
            generated_apps += generated

    apps: dict[tuple, _App] = {}
    pending = [_App(m, m.cluster) for m in top]
    helm_runs = cache_hits = 0
    capped = False  # past limits.maxApplications
    links_out: dict[str, list[str]] = {}  # source path -> symlinks leaving the repo (confine.links_out), once per run
    within = confine.Within(repo)         # repo path -> inside the repo, each folder resolved once per run
    value_scalars: dict[str, list] = {}   # value file -> its scalars (provenance.ValueIndex), read once per run
    facts: dict[str | None, str] = {}     # cluster -> a digest of its facts (_result_context), once per run
    unrendered: dict[str | None, set[tuple[str, str]]] = {}  # cluster -> (app, namespace) that did not render
    # Each cluster's Argo CD install first: its argocd-cm holds kustomize.buildOptions.
    build_options: dict[str | None, tuple[str, ...]] = {}
    argo_files = {m.file for m in disc.argo}
    for name, cf in sorted(disc.clusters.items()):
        if cf.argocd_install:
            a = _install_app(repo, name, cf, opts, argocd_dir, tool("kustomize"))
            apps[(name, None, INSTALL_APP)] = a
            # the install's AppProjects etc. are also repo files, read (and checked) once
            a.manifests = [m for m in a.manifests if not (m.kind in discover.ARGO_KINDS and m.file in argo_files)]
            build_options[name] = _kustomize_build_options(a.manifests)
    early_left = opts.jobs  # renders whose objects kubeconform checks in the render's own job (_render_job)
    with _Pool(opts.jobs) as pool:
        while pending:
            tools.check_deadline()
            jobs: list[tuple[_App, render.RenderRequest, render.RenderRequest]] = []  # app, to render, as written
            renders: list = []  # each job's render, started as the loop reaches it (futures, in jobs' order)
            hits: list[tuple[_App, render.RenderRequest, resultcache.Entry, str]] = []
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
                if len(apps) >= config.limits.max_applications:
                    if not capped:
                        findings.append(_too_many(a.manifest, config.limits.max_applications))
                    capped = True
                    break
                apps[key] = a
                version = version_of(a.cluster)
                target = appsource.Target(a.cluster, version, api_versions[version], revision, a.hint_files,
                                          argocd_dir, build_options.get(a.cluster, ()), links_out, within)
                try:
                    prep = appsource.prepare(a.manifest, repo, config, target)
                except Exception as e:  # noqa: BLE001 - a malformed Application is a finding, never a crash
                    a.findings.append(policy.unreadable(a.manifest, "rendering its sources", e))
                    continue
                a.findings += prep.findings
                a.paths |= prep.paths
                a.manifests += prep.manifests
                kjobs += [(a, k) for k in prep.kustomize]
                # An app outside a path-scoped run is loaded only for cross-app references: its
                # values findings would be dropped, so they are not computed (helm still checks them).
                in_scope = changes.scope({key: a}, disc).keeps(a.manifest.name, None)
                for req in prep.requests:
                    rkey = stored.key(cache.key(repo, req, tool("helm")), _result_context(req, version, disc, facts)) \
                        if stored and cache else None
                    entry = stored.get(rkey) if stored and rkey else None
                    if entry is not None and (entry.rendered or in_scope):
                        a.findings += entry.values if in_scope else []
                        if entry.rendered:
                            hits.append((a, req, entry, rkey))
                        else:
                            unrendered.setdefault(a.cluster, set()).add((req.app, req.namespace))
                        continue
                    # an app of a path-scoped run rendered in full gets kubeconform's verdicts in the
                    # same job; only the first few: a run rendering many apps (a chart changed, a
                    # whole-repo run) is faster with the one kubeconform after the loop
                    early = (kubeconform, root, version_of(req.cluster), stored) \
                        if stored and changes.given and in_scope and early_left > 0 else None
                    # in scope, the render starts before the values check, which nearly every run passes:
                    # helm (and kubeconform) then run while jsonschema loads and checks the values
                    ahead = pool.submit(_render_job, repo, req, tool("helm"), cache, config.limits.render_timeout,
                                        early) if in_scope else None
                    vf, ok = schema.check_values(repo, req, stored) if in_scope else ([], True)
                    a.findings += vf
                    # after a values error, the valid part of the values still renders (partialrender.py)
                    part = req if ok else _partialrender().valid_part(repo, req)
                    if rkey and in_scope and ok:  # only what this run checks in full is stored (a partial render is not)
                        fresh[id(req)] = _Fresh(rkey, vf, ok, cluster=a.cluster)
                    if ahead is not None and not ok:
                        # dropped unused (one already running ends on its own: every cache it fills is keyed by its input)
                        ahead.cancel()
                    if part is not None:
                        jobs.append((a, part, req))
                        if ok and ahead is not None:
                            early_left -= early is not None
                            renders.append(ahead)
                        else:
                            renders.append(pool.submit(_render_job, repo, part, tool("helm"), cache,
                                                       config.limits.render_timeout, None))
                    else:
                        unrendered.setdefault(a.cluster, set()).add((req.app, req.namespace))
            rendered_now.update(a.cluster for a, *_ in jobs + kjobs)
            unkeyed.update([a.cluster for a, _, req in jobs if id(req) not in fresh] + [a.cluster for a, _ in kjobs])
            results = [f.result() for f in renders]
            do_kustomize = partial(kustomize.render, repo, kustomize=tool("kustomize") if kjobs else "",
                                   cache_dir=cache.directory if cache else None)
            kresults = pool.map(do_kustomize, [req for _, req in kjobs])
            pending = []
            for (a, kreq), kr in zip(kjobs, kresults, strict=True):
                a.findings += kr.findings
                a.manifests += kr.manifests
                a.paths |= kr.paths
                cache_hits += kr.cached
                pending += [_App(c, a.cluster) for c in kr.manifests
                            if c.kind == "Application" and c.api_version.startswith("argoproj.io/")]
            done = list(zip(jobs, results, strict=True))
            for a, req, entry, rkey in hits:
                ms = [render.rendered_object(o.doc, o.file, req) for o in entry.objects]
                cached_objects.update((id(m), o) for m, o in zip(ms, entry.objects))
                origins.update((id(m), [rkey, i]) for i, m in enumerate(ms))
                done.append(((a, req, req), render.Rendered(req, ms, list(entry.render), True)))
            for (a, part, req), r in done:
                a.value_files += [posixpath.join(req.chart, "values.yaml"), *req.value_files]
                if any(f.rule == "values/render-failed" for f in r.findings):
                    unrendered.setdefault(a.cluster, set()).add((req.app, req.namespace))
                    if part is not req:
                        continue  # the values error says what to fix first
                if id(req) in fresh:
                    fresh[id(req)].render, fresh[id(req)].manifests = list(r.findings), list(r.manifests)
                index = provenance.ValueIndex.of(repo, req.chart, req.value_files, value_scalars)
                for m in r.manifests:
                    m.values = index
                a.findings += r.findings
                a.manifests += r.manifests
                cache_hits += r.cached
                helm_runs += not r.cached
                for child in r.manifests:
                    if child.kind == "Application" and child.api_version.startswith("argoproj.io/"):
                        if a.depth + 1 > config.limits.max_app_depth:
                            findings.append(_too_deep(child, a.depth + 1, config.limits.max_app_depth))
                        else:
                            pending.append(_App(child, a.cluster, tuple(req.value_files), a.depth + 1))

    file_objects = [m for m in disc.argo if m.file] + generated_apps
    file_ids = {id(m) for m in disc.argo if m.file}   # read from a repository file (not generated)
    all_objects = file_objects + [m for a in apps.values() for m in a.manifests]
    by_cluster: dict[str | None, list[Manifest]] = {}
    for m in all_objects:
        by_cluster.setdefault(m.cluster, []).append(m)
    contexts = {cluster: Context(tuple(objs), disc.clusters.get(cluster) if cluster else None, config.allowed_registries,
                                 values=_LazyValues(repo, {a.manifest.name: a.value_files
                                                           for a in apps.values() if a.cluster == cluster}),
                                 unrendered=frozenset(unrendered.get(cluster, ())))
                for cluster, objs in by_cluster.items()}
    scope = changes.scope(apps, disc)
    scope.widen(apps, contexts, cached_objects)
    checked = [m for m in all_objects if scope.keeps(_app_of(m), m.file)]
    for a in apps.values():
        findings += a.findings
    findings = [f for f in findings if scope.keeps(f.app, f.file)]

    # an object of a kind some CRD of the run defines is checked against that CRD: never from the cache
    crd_kinds = {str(dig(m.doc, "spec", "names", "kind")).lower() for m in all_objects if m.kind == "CustomResourceDefinition"}
    fresh_ids = {id(m) for item in fresh.values() for m in item.manifests}
    schema_of: dict[int, list[Finding]] = {}
    by_version: dict[str, list[Manifest]] = {}
    for m in checked:
        o = cached_objects.get(id(m))
        if o is not None and o.schema is not None and m.kind.lower() not in crd_kinds:
            findings += o.schema
            continue
        by_version.setdefault(version_of(m.cluster), []).append(m)
    for v, batch in sorted(by_version.items()):
        findings += _check_objects(batch, kubeconform, root, v, fresh_ids, schema_of, stored)
    # a cached object re-runs only the rules that read other objects; the others' findings are stored
    only = {k: o.cross for k, o in cached_objects.items()}
    record: dict[int, tuple[list[Finding], list[str]]] | None = {} if fresh_ids else None
    budgets = []
    later: list[tuple[str | None, list[Manifest], Context, list[Finding]]] = []   # keyed once the entries are stored
    for cluster, objs in by_cluster.items():
        ctx = contexts[cluster]
        mine = [m for m in objs if scope.keeps(_app_of(m), m.file)]
        findings += [f for m in mine if id(m) in cached_objects for f in cached_objects[id(m)].local]
        # a whole-repository run whose every object of the cluster is known: its findings were stored
        ckey = _cluster_key(stored, cluster, objs, origins, file_ids, version_of(cluster), disc, ctx, repo, facts) \
            if stored and scope.apps is None and cluster not in rendered_now else None
        found = stored.get_findings(ckey) if stored and ckey else None
        if found is None:
            found = policy.evaluate([m for m in mine if m.app != INSTALL_APP], ctx, config.severities, repo=repo,
                                    only=only, record=record)
            found += policy.evaluate([m for m in mine if m.app == INSTALL_APP], ctx, config.severities, INSTALL_RULES,
                                     repo=repo)
            # a sum over the whole cluster: reported when it points into what this run looks at
            found += [f for f in policy.evaluate_cluster(ctx, config.severities, repo=repo) if scope.keeps(f.app, f.file)]
            if stored and ckey:
                stored.put_findings(ckey, found)
            elif stored and scope.apps is None and cluster in rendered_now and cluster not in unkeyed:
                later.append((cluster, objs, ctx, found))
        findings += found
        b = budget(ctx)
        if b is not None:
            budgets.append(b)
    n_apps = sum(1 for a in apps.values() if scope.keeps(a.manifest.name, None))
    if stored:
        for item in fresh.values():
            objs = [resultcache.Object(m.doc, m.file, None if m.kind.lower() in crd_kinds else schema_of[id(m)], *record[id(m)],
                                       _stored_references(m))
                    for m in item.manifests if record is not None and id(m) in record and id(m) in schema_of]
            # every object checked in full by this run, and stored: the next run finds them there
            if len(objs) == len(item.manifests) and stored.put(item.key, resultcache.Entry(item.values, item.rendered,
                                                                                             item.render, objs)):
                origins.update((id(m), [item.key, i]) for i, m in enumerate(item.manifests))
            else:
                unkeyed.add(item.cluster)
        for cluster, objs, ctx, found in later:
            _store_fresh_cluster(stored, cluster, objs, ctx, found, record or {}, fresh_ids, unkeyed, origins, file_ids,
                                 version_of(cluster), disc, repo, facts)
    if cache:
        cache.save_digests()
        cache.evict()
    return _finish(findings, opts, n_apps, len(checked), start, helm_runs=helm_runs, cache_hits=cache_hits,
                   budgets=sorted(budgets, key=lambda b: b.cluster))


class _Pool:
    """A thread pool for the renders, started on the first map that has work: a run whose renders
    all come from the caches imports no concurrent.futures (nor the logging it imports)."""

    def __init__(self, workers: int):
        self.workers, self._pool = workers, None

    def map(self, fn, items: list) -> list:
        return [f.result() for f in [self.submit(fn, item) for item in items]]

    def submit(self, fn, *args):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(max_workers=self.workers)
        return self._pool.submit(fn, *args)

    def __enter__(self) -> "_Pool":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def _render_job(repo: Path, req: render.RenderRequest, helm: str, cache: RenderCache | None, timeout: float,
                early: tuple | None) -> render.Rendered:
    """``determinism.render_checked``, submitted as the app loop reaches the app, so that helm runs
    while the loop loads the other apps; with ``early`` (kubeconform, schema root, Kubernetes
    version, result cache) kubeconform's verdicts on the objects then go into the result cache in
    the same job (``schema.remember_verdicts``), and ``_check_objects`` finds them instead of
    starting kubeconform after the loop."""
    r = determinism.render_checked(repo, req, helm=helm, cache=cache, timeout=timeout)
    if early is not None and r.manifests:
        try:
            schema.remember_verdicts(r.manifests, *early)
        except Exception:  # noqa: BLE001 - only a warm-up: _check_objects runs kubeconform again and meets the fault
            pass
    return r


def _cluster_key(stored: resultcache.ResultCache, cluster: str | None, objs: list[Manifest], origins: dict[int, list],
                 file_ids: set[int], version: str, disc: discover.Discovery, ctx: Context, repo: Path,
                 facts: dict) -> str | None:
    """The key of a cluster's cross-object and cluster-wide findings: what its Context holds, by
    where each object came from (a result-cache entry, or the bytes of the repository file it was
    read from), its facts, value files and unrendered apps. None (evaluate, store nothing) when an
    object came from anywhere else: a render no result entry holds, kustomize, the Argo CD
    install, an ApplicationSet's generators (and the caller asks for none when the cluster had
    such a render, even one that gave no object). A render of this run counts once its entry is
    stored (``_store_fresh_cluster``)."""
    read: dict[str, str] = {}
    parts: list = []
    for m in objs:
        origin = origins.get(id(m))
        if origin is not None:
            parts.append(origin)
            continue
        if id(m) not in file_ids or not isinstance(m.file, str):
            return None
        if m.file not in read:
            try:
                read[m.file] = hashlib.sha256((repo / m.file).read_bytes()).hexdigest()
            except OSError:
                return None
        parts.append([m.file, m.line, read[m.file], m.kind, m.namespace, m.name])
    if not isinstance(ctx.values, _LazyValues):
        return None
    values = sorted([app, list(files)] for app, files in ctx.values.files.items())  # their bytes: in the result keys
    unrendered = sorted((list(u) for u in ctx.unrendered), key=json.dumps)
    return stored.cluster_key([cluster, version, _facts_digest(cluster, disc, facts), unrendered, values, parts])


def _stored_references(m: Manifest) -> list | None:
    """What the result cache keeps of the object for the widening; None (computed when needed)
    when it cannot be read."""
    try:
        return refs.reference_candidates(m)
    except Exception:  # noqa: BLE001 - the widening then reads the object itself, as it always could
        return None


def _store_fresh_cluster(stored: resultcache.ResultCache, cluster: str | None, objs: list[Manifest], ctx: Context,
                         found: list[Finding], record: dict[int, tuple[list[Finding], list[str]]], fresh_ids: set[int],
                         unkeyed: set[str | None], origins: dict[int, list], file_ids: set[int], version: str,
                         disc: discover.Discovery, repo: Path, facts: dict) -> None:
    """Store a whole-repository run's findings of a cluster that had renders of this run, once
    every render's result entry is stored: under the key the next run makes from those entries
    (``origins`` holds them now), the findings that run would compute from the cache. That is
    ``found`` without the rendered objects' own findings (``record``: the rules that read only the
    object, which their entries hold and the next run reads from there instead of running them)."""
    if cluster in unkeyed:   # a render no entry holds: the next run renders it again, evaluates
        return
    ckey = _cluster_key(stored, cluster, objs, origins, file_ids, version, disc, ctx, repo, facts)
    if ckey is None:
        return
    own = {id(f) for m in objs if id(m) in fresh_ids for f in record[id(m)][0]}
    stored.put_findings(ckey, [f for f in found if id(f) not in own])


class _Fresh(Record):
    """A render of this run (not from the result cache), whose results are stored at the end."""
    key: str
    values: list[Finding]
    rendered: bool
    render: list[Finding]
    manifests: list[Manifest]
    cluster: str | None

    def __init__(self, key: str, values: list[Finding], rendered: bool, render: list[Finding] | None = None,
                 manifests: list[Manifest] | None = None, cluster: str | None = None) -> None:
        self.key = key
        self.values = values
        self.rendered = rendered
        self.render = [] if render is None else render
        self.manifests = [] if manifests is None else manifests
        self.cluster = cluster


def _result_cache(opts: Options, cache: RenderCache, kubeconform: str, root: Path, versions: set[str]) -> resultcache.ResultCache:
    """The result cache, keyed also by what every result depends on: the config, kubeconform and
    the schema tree of each Kubernetes version in play, and jsonschema's installed files."""
    stamp = resultcache.file_stamp
    schemas = {v: [stamp(schemastore.kubernetes_schema_dir(root, v)), stamp(root / schemastore.CRD_DIR),
                   stamp(schemastore.kubernetes_schema_dir(root, v) / schemastore.API_VERSIONS)] for v in sorted(versions)}
    # the entries hold check_values' findings: jsonschema and the packages it decides with count too
    return resultcache.ResultCache(cache, {"config": opts.config, "kubeconform": stamp(Path(kubeconform)), "schemas": schemas,
                                           "jsonschema": schema.jsonschema_stamp()})


def _partialrender():
    from . import partialrender  # only after a values error: not on a clean run's import path
    return partialrender


def _result_context(req: render.RenderRequest, version: str, disc: discover.Discovery, facts: dict) -> list:
    """What a request's results depend on beyond its render key: the findings name its app and
    point at its Application, and rules read its cluster's facts (``facts``: cluster -> a digest
    of them, made once per run: every app of the cluster has the same)."""
    origin = req.origin
    return [req.app, req.cluster, version, _facts_digest(req.cluster, disc, facts),
            [origin.file, origin.line, str(origin.ref), origin.app] if origin else None]


def _facts_digest(cluster: str | None, disc: discover.Discovery, facts: dict) -> str:
    """A digest of the cluster's facts, made once per run (``facts``: cluster -> it)."""
    if cluster not in facts:
        data = resultcache.canonical(disc.clusters.get(cluster) if cluster else None)
        facts[cluster] = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return facts[cluster]


def _check_objects(batch: list[Manifest], kubeconform: str, root: Path, version: str, record_ids: set[int],
                   record: dict[int, list[Finding]], known: resultcache.ResultCache | None = None) -> list[Finding]:
    """schema.check_objects, and for the objects in ``record_ids`` (rendered by this run, for the
    result cache) their own findings in ``record``: they go in as copies whose app is a token that
    names the object, and their findings come back under the real app."""
    sent, owner = [], {}
    for m in batch:
        if id(m) in record_ids:
            token = f"\0{len(owner)}"
            owner[token] = m
            record[id(m)] = []
            m = replace(m, app=token)
        sent.append(m)
    out = []
    for f in schema.check_objects(sent, kubeconform, root, version, known):
        m = owner.get(f.app)
        if m is not None:
            f = replace(f, app=m.app)
            record[id(m)].append(f)
        out.append(f)
    return out


class _LazyValues(Mapping):
    """app -> ``_value_docs`` of its value files, read on first use (Context.values)."""

    def __init__(self, repo: Path, files: dict[str, list[str]]):
        self._repo, self._files, self._docs = repo, files, {}

    @property
    def files(self) -> dict[str, list[str]]:
        """app -> its value files, chart defaults first."""
        return self._files

    def __getitem__(self, app: str) -> tuple:
        if app not in self._docs:
            self._docs[app] = _value_docs(self._repo, self._files[app])
        return self._docs[app]

    def __iter__(self):
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def _value_docs(repo: Path, files: list[str]) -> tuple:
    """(file, first document) of each value file, for findings that point at a value's line."""
    out = []
    for rel in files:
        docs, _ = discover.read_yaml(repo, rel) if (repo / rel).is_file() else ([], [])
        if docs:
            out.append((rel, docs[0]))
    return tuple(out)


def _too_deep(child: Manifest, depth: int, limit: int) -> Finding:
    return Finding("argocd/app-of-apps-too-deep", Severity.ERROR,
                   f"Application {child.name!r} would be level {depth} of an app-of-apps, past the limit of {limit} "
                   "(limits.maxAppDepth); it and what it renders are not checked",
                   child.file, child.line, child.ref, child.app)


def _too_many(m: Manifest, limit: int) -> Finding:
    return Finding("argocd/too-many-applications", Severity.ERROR,
                   f"more than {limit} Applications (limits.maxApplications); {m.name!r} and the rest are not checked",
                   m.file, m.line, m.ref, m.app or m.name)


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


class _Changes(Record):
    """The changed files of a run, and what can be told of them before any app is loaded (once
    per run; ``scope`` then tells which apps they affect)."""
    changed: set[str]
    missing: set[str]      # changed paths that do not exist (deleted, or a typo)
    given: bool            # a path-scoped run

    def __init__(self, changed: set[str], missing: set[str], given: bool) -> None:
        self.changed = changed
        self.missing = missing
        self.given = given

    @classmethod
    def of(cls, opts: Options) -> "_Changes":
        changed = {posixpath.normpath(p) for p in opts.paths}
        return cls(changed, {c for c in changed if not os.path.lexists(opts.repo / c)}, bool(opts.paths))

    def narrow(self) -> set[str] | None:
        """The changed files when the run's scope cannot become the whole repository (every
        changed path exists, none is read by every app), else None: what discovery must parse."""
        if not self.given or self.missing or any(
                c in GLOBAL_FILES or posixpath.basename(c) == "cluster.yaml" for c in self.changed):
            return None
        return self.changed

    def scope(self, apps: dict[tuple, "_App"], disc: discover.Discovery) -> "_Scope":
        if not self.given:
            return _Scope(None, set())
        changed = self.changed
        if changed & set(GLOBAL_FILES) or any(
                cf.directory and p == f"{cf.directory}/cluster.yaml" for p in changed for cf in disc.clusters.values()):
            return _Scope(None, changed)
        affected, accounted = set(), set()
        # a changed AppProject affects the apps in it (and the app-of-apps that renders them)
        projects = {m.name for m in disc.argo if m.kind == "AppProject" and m.file in changed}
        for a in apps.values():
            if projects and str(dig(a.manifest.doc, "spec", "project")) in projects:
                affected |= {a.manifest.name} | ({a.manifest.app} if a.manifest.app else set())
            hit = {c for c in changed if c == a.manifest.file and a.manifest.line is not None}
            # a path an app reads (a file, or a directory: anything below it), present or deleted
            hit |= {c for c in changed for p in a.paths if c == p or p == "." or c.startswith(p.rstrip("/") + "/")}
            if hit:
                affected.add(a.manifest.name)
                # a missing path is accounted for only when the app names it (not just its folder)
                accounted |= {c for c in hit if c in a.paths}
        if self.missing - accounted:
            return _Scope(None, changed)
        return _Scope(affected, changed)


class _Scope(Record):
    """What a run reports on: every app, or (with changed files) the apps those files affect, the
    changed files themselves, and the unchanged apps whose references point into an affected app
    (a URL, a Secret or ConfigMap, a Service selecting its pods): a change is checked from both
    sides. A changed path that does not exist and that no app reads (a deleted Application file,
    a typo) could have affected anything: the whole repository is checked."""
    apps: set[str] | None          # None: everything
    changed: set[str]

    def __init__(self, apps: set[str] | None, changed: set[str]) -> None:
        self.apps = apps
        self.changed = changed

    def widen(self, apps: dict[tuple, _App], contexts: dict[str | None, Context],
              known: Mapping[int, resultcache.Object] | None = None) -> None:
        """Add the unchanged apps that point into an affected one (or, in a namespace an affected
        app renders into, at something no longer there: the change may have removed it).
        ``known``: id(object) -> its result-cache record, whose stored references are read
        instead of walking the object again."""
        if self.apps is None or not self.apps:
            return
        changed = set(self.apps)
        known = known or {}
        into = {(m.cluster, m.namespace) for a in apps.values() if a.manifest.name in changed for m in a.manifests}
        namespaces = {cluster: {ns for c, ns in into if c == cluster and ns} for cluster in contexts}
        for a in apps.values():
            name = a.manifest.name
            if name in changed or a.cluster not in contexts:
                continue
            ctx = contexts[a.cluster]
            for m in a.manifests:
                o = known.get(id(m))
                candidates = o.refs if o is not None and o.refs is not None else refs.reference_candidates(m)
                if _points_into(m, a.cluster, candidates, ctx, changed, into, namespaces[a.cluster]):
                    self.apps.add(name)
                    break

    def keeps(self, app: str | None, file: str | None) -> bool:
        return self.apps is None or app in self.apps or (file is not None and file in self.changed)


def _points_into(m: Manifest, cluster: str | None, candidates: list, ctx: Context, changed: set[str],
                 into: set[tuple], namespaces: set[str]) -> bool:
    """Whether ``m`` (of an app of ``cluster``, whose references are ``candidates``:
    refs.reference_candidates) points into a changed app. Every way it can needs the namespace
    pointed at to be one a changed app renders into (``into``): an object of a changed app found
    in ``ctx`` (the cluster's) is in (cluster, its namespace); a missing one counts in
    (m.cluster, namespace). References elsewhere are not looked up."""
    own = m.namespace
    for kind, ns, name, conditional in candidates:
        if conditional and ns not in namespaces and not (own and ns == own):
            continue  # `svc.ns` with ns no namespace of the cluster: no reference (refs.references)
        if (cluster, ns) not in into and (m.cluster, ns) not in into:
            continue
        target = ctx.find(kind, ns, name)
        if target is not None:
            if target.app in changed:
                return True
        elif (m.cluster, ns) in into and not (kind == "Secret" and secret_keys(ctx, ns, name)[0]):
            return True
    if ((cluster, own) in into or (m.cluster, own) in into) and m.kind == "Service":
        pods = refs.selected(m, ctx)
        if pods is not None:
            if any(w.app in changed for w in pods) or (not pods and (m.cluster, own) in into):
                return True
    return False
