"""From an Argo CD Application to what the renderer needs: one RenderRequest per Helm source,
or the objects of a plain-directory source. Every refusal Argo CD would make is a finding here."""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

from . import confine
from .config import Config
from .discover import is_local_repo, manifests_from_file, misspelt_repo_url
from .findings import Finding, Severity
from .kustomize import KustomizeRequest, kustomization_file
from .model import CLUSTER_SCOPED, Manifest, dig, mapping, sequence
from .record import Record
from .render import RenderRequest, build_env, envsubst
from .yamlio import yaml


class Target(Record):
    """Where an Application renders: cluster facts it is checked against."""
    cluster: str | None
    kube_version: str
    api_versions: tuple[str, ...]
    revision: str
    #: for an Application rendered by a parent chart: the parent's value files, where the
    #: settings it was rendered from are written (findings point there, with a line)
    hint_files: tuple[str, ...]
    #: Argo CD's pinned release manifests (.tools/argocd), for a kustomization that names them
    argocd_dir: Path | None
    #: argocd-cm kustomize.buildOptions (none by default)
    kustomize_build_options: tuple[str, ...]
    #: source path -> the symlinks under it that leave the repo, shared by the run's Targets: apps
    #: that render one chart scan it once
    links_out: dict[str, list[str]]
    #: whether a repo path resolves inside the repo, each folder resolved once: shared like ``links_out``
    within: confine.Within | None

    def __init__(self, cluster: str | None, kube_version: str, api_versions: tuple[str, ...], revision: str,
                 hint_files: tuple[str, ...] = (), argocd_dir: Path | None = None,
                 kustomize_build_options: tuple[str, ...] = (), links_out: dict[str, list[str]] | None = None,
                 within: confine.Within | None = None) -> None:
        self.cluster = cluster
        self.kube_version = kube_version
        self.api_versions = api_versions
        self.revision = revision
        self.hint_files = hint_files
        self.argocd_dir = argocd_dir
        self.kustomize_build_options = kustomize_build_options
        self.links_out = {} if links_out is None else links_out
        self.within = within


class Prepared(Record):
    requests: list[RenderRequest]
    kustomize: list[KustomizeRequest]
    manifests: list[Manifest]          # plain-directory sources
    findings: list[Finding]
    paths: set[str]                    # repo paths the app reads

    def __init__(self, requests: list[RenderRequest] | None = None, kustomize: list[KustomizeRequest] | None = None,
                 manifests: list[Manifest] | None = None, findings: list[Finding] | None = None,
                 paths: set[str] | None = None) -> None:
        self.requests = [] if requests is None else requests
        self.kustomize = [] if kustomize is None else kustomize
        self.manifests = [] if manifests is None else manifests
        self.findings = [] if findings is None else findings
        self.paths = set() if paths is None else paths


def _sources(spec: dict) -> list[tuple[tuple, dict]]:
    if isinstance(spec.get("sources"), list):
        return [(("spec", "sources", i), s) for i, s in enumerate(spec["sources"]) if isinstance(s, dict)]
    if isinstance(spec.get("source"), dict):
        return [(("spec", "source"), spec["source"])]
    return []



def _locate_in_hints(repo: Path, files: tuple[str, ...], value: object) -> tuple[str, int] | None:
    """The first line of ``files`` that spells ``value`` (a path, a value file name)."""
    if not isinstance(value, str) or not value:
        return None
    for rel in files:
        try:
            for n, text in enumerate((repo / rel).read_text(encoding="utf-8").splitlines(), 1):
                if value in text:
                    return rel, n
        except (OSError, UnicodeDecodeError):
            continue
    return None


def find_setting(repo: Path, files: tuple[str, ...], key: object, value: object) -> tuple[str, int] | None:
    """The line ``key: value`` in ``files`` (the last file first: it wins in helm), where a rendered
    object's field was most likely set."""
    if not isinstance(key, str) or isinstance(value, (dict, list)) or value is None:
        return None
    pattern = re.compile(rf"^\s*(-\s+)?{re.escape(key)}\s*:\s*([\"']?){re.escape(str(value))}\2\s*(#.*)?$")
    for rel in reversed(files):
        try:
            for n, text in enumerate((repo / rel).read_text(encoding="utf-8").splitlines(), 1):
                if pattern.match(text):
                    return rel, n
        except (OSError, UnicodeDecodeError):
            continue
    return None


def _inside(repo: Path, rel: str, target: Target) -> bool:
    """``inside`` of a repo path, through the run's ``confine.Within``: every app of a chart reads its folder."""
    if target.within is None:
        target.within = confine.Within(repo)
    return target.within(rel)


def _repo_path(base: str, rel: str) -> str:
    """Join like Argo CD: absolute paths are relative to the repo root."""
    joined = rel.lstrip("/") if rel.startswith("/") else posixpath.join(base, rel)
    return posixpath.normpath(joined)


def prepare(app: Manifest, repo: Path, config: Config, target: Target) -> Prepared:
    out = Prepared()
    spec = app.spec
    dest = mapping(spec.get("destination"))
    sources = _sources(spec)
    refs = {str(s["ref"]): s for _, s in sources if s.get("ref")}

    def finding(rule: str, msg: str, where: tuple, sev: Severity = Severity.ERROR) -> None:
        file, line = app.file, app.line_of(where)
        if line is None:
            file, line = _locate_in_hints(repo, target.hint_files, dig(app.doc, *where)) or (file, line)
        out.findings.append(Finding(rule, sev, msg, file, line, app.ref, app.name))

    if not sources:
        finding("schema/invalid", "Application has neither spec.source nor spec.sources", ("spec",))
    for where, src in sources:
        if src.get("ref") and not src.get("path"):
            continue  # a values-only source, read through $ref
        typo = misspelt_repo_url(src.get("repoURL"), config)
        if typo:
            finding("argocd/misspelt-repo-url", f"source repoURL {src.get('repoURL')!r} is not a repository "
                    f"Argo CD knows (did you mean {typo!r}?); nothing of this app would sync", where + ("repoURL",))
            continue
        if not is_local_repo(src.get("repoURL"), config) or src.get("chart"):
            finding("argocd/external-source",
                    f"source {src.get('repoURL')!r} is not this repository (repoURLs in the config); not rendered",
                    where + ("repoURL",), Severity.WARNING)
            continue
        path = posixpath.normpath(str(src.get("path", ".")))
        if path.startswith("..") or path.startswith("/") or not _inside(repo, path, target):
            finding("argocd/outside-repo", f"source path {path!r} leaves the repository", where + ("path",))
            continue
        if not os.path.isdir(os.path.join(repo, path)):  # str paths: every app of the repo, every run
            finding("argocd/missing-path", f"source path {path!r} does not exist in the repository", where + ("path",))
            out.paths.add(path)  # read, though missing: deleting it is a change to this app
            continue
        out.paths.add(path)
        namespace = str(dest.get("namespace") or "")
        # helm and the directory reader follow symlinks: look before anything is read
        if path not in target.links_out:
            target.links_out[path] = confine.links_out(repo, path)
        leaving = target.links_out[path]
        if leaving:
            for rel in leaving:
                out.findings.append(confine.symlink_finding(rel, "file", app=app.name, obj=app.ref))
            finding(confine.RULE, f"source path {path!r} holds {len(leaving)} symlink(s) leaving the repository "
                    f"({', '.join(leaving[:3])}{', …' if len(leaving) > 3 else ''}); not rendered", where + ("path",))
            continue
        if src.get("plugin"):
            finding("argocd/unsupported-source", f"source {path!r} is a config management plugin; it is not rendered",
                    where, Severity.WARNING)
        elif os.path.isfile(os.path.join(repo, path, "Chart.yaml")) and src.get("kustomize") is None:
            req = _helm_request(app, src, where, path, namespace, repo, refs, config, target, finding, out)
            if req:
                out.requests.append(req)
        elif src.get("kustomize") is not None or kustomization_file(repo / path):
            opts = src.get("kustomize") if isinstance(src.get("kustomize"), dict) else {}
            out.kustomize.append(KustomizeRequest(
                app=app.name, path=path, namespace=namespace, options=opts,
                env=build_env(app, src, namespace, target.kube_version, target.revision),
                build_options=target.kustomize_build_options, cluster=target.cluster, origin=app,
                where=where, argocd_dir=target.argocd_dir))
        else:
            _directory(app, src, path, namespace, repo, target, out)
    return out


def _helm_request(app, src, where, path, namespace, repo, refs, config, target, finding, out) -> RenderRequest | None:
    helm = mapping(src.get("helm"))
    env = build_env(app, src, namespace, target.kube_version, target.revision)
    value_files: list[str] = []
    ok = True
    for i, vf in enumerate(sequence(helm.get("valueFiles"))):
        vf_where = where + ("helm", "valueFiles", i)
        vf = envsubst(str(vf), env)
        if "://" in vf:
            finding("argocd/external-source", f"value file {vf!r} is a URL; not read", vf_where, Severity.WARNING)
            continue
        if vf.startswith("$"):
            name, _, rest = vf[1:].partition("/")
            ref = refs.get(name)
            if ref is None:
                finding("argocd/missing-value-file", f"value file {vf!r} names no source with ref {name!r}", vf_where)
                ok = False
                continue
            typo = misspelt_repo_url(ref.get("repoURL"), config)
            if typo:
                finding("argocd/misspelt-repo-url", f"the source with ref {name!r} has repoURL "
                        f"{ref.get('repoURL')!r} (did you mean {typo!r}?)", vf_where)
                ok = False
                continue
            if not is_local_repo(ref.get("repoURL"), config):
                finding("argocd/external-source", f"value file {vf!r} comes from another repository; not read",
                        vf_where, Severity.WARNING)
                continue
            rel = posixpath.normpath(rest)
        else:
            rel = _repo_path(path, vf)
        if rel.startswith("..") or rel.startswith("/"):
            finding("argocd/outside-repo", f"value file {vf!r} resolves outside the repository", vf_where)
            ok = False
        elif not _inside(repo, rel, target):
            finding(confine.RULE, f"value file {vf!r} ({rel}) is a symlink that leaves the repository; not read "
                    "(Argo CD refuses it too)", vf_where)
            ok = False
            out.paths.add(rel)
        elif not os.path.isfile(os.path.join(repo, rel)):
            out.paths.add(rel)  # read, though missing: deleting it is a change to this app
            if not helm.get("ignoreMissingValueFiles"):
                finding("argocd/missing-value-file", f"value file {vf!r} ({rel}) does not exist", vf_where)
                ok = False
        else:
            value_files.append(rel)
            out.paths.add(rel)
    if not ok:
        return None
    values_yaml = None
    if isinstance(helm.get("valuesObject"), dict):
        values_yaml = yaml.safe_dump(helm["valuesObject"], sort_keys=False)
    elif isinstance(helm.get("values"), str) and helm["values"].strip():
        values_yaml = helm["values"]
    sets, set_strings = {}, {}
    for p in sequence(helm.get("parameters")):
        if isinstance(p, dict) and p.get("name"):
            (set_strings if p.get("forceString") else sets)[str(p["name"])] = envsubst(str(p.get("value", "")), env)
    return RenderRequest(
        app=app.name, chart=path,
        release=str(helm.get("releaseName") or app.name),
        namespace=str(helm.get("namespace") or namespace),
        kube_version=str(helm.get("kubeVersion") or target.kube_version),
        api_versions=tuple(map(str, sequence(helm.get("apiVersions")))) or target.api_versions,
        value_files=value_files, values_yaml=values_yaml, set=sets, set_string=set_strings,
        skip_crds=bool(helm.get("skipCrds")), skip_tests=bool(helm.get("skipTests")),
        skip_schema_validation=bool(helm.get("skipSchemaValidation")),
        cluster=target.cluster, origin=app,
    )


def _directory(app: Manifest, src: dict, path: str, namespace: str, repo: Path, target: Target, out: Prepared) -> None:
    recurse = bool(mapping(src.get("directory")).get("recurse"))
    pattern = "**/*" if recurse else "*"
    for p in sorted((repo / path).glob(pattern)):
        if p.suffix in (".yaml", ".yml", ".json") and p.is_file():
            rel = str(p.relative_to(repo))
            ms, fs = manifests_from_file(repo, rel)
            out.findings += fs
            out.paths.add(rel)
            for m in ms:
                if not m.metadata.get("namespace") and m.kind not in CLUSTER_SCOPED and isinstance(m.doc.get("metadata"), dict):
                    m.doc["metadata"]["namespace"] = namespace
                m.app, m.cluster = app.name, target.cluster
                out.manifests.append(m)
