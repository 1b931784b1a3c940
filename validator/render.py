"""Stage 2, render: turn an Application into Kubernetes objects exactly as Argo CD's repo server does.

Argo CD (reposerver/repository.go, helmTemplate) runs
``helm template <path> --name-template <releaseName|app> --namespace <helm.namespace|destination>
--kube-version <cluster> --set/--set-string <parameters> --values <valueFiles...> --values <values|valuesObject>
--api-versions <cluster APIs> --include-crds``, with ``$ARGOCD_APP_*`` substituted in parameters
and value-file paths, value files resolved against the app path and kept inside the repo, and
``$ref/...`` value files taken from another source. Precedence: parameters > valuesObject
(or values) > valueFiles, later files over earlier ones.

Renders are cached on disk (rendercache.py) by a hash of everything that feeds helm, so an unchanged
app costs a file read, and a pre-commit run renders only what the commit changed. helm runs in
helm-renderer's long-lived processes when it is built (helmrenderer.py), else through tools.run:
a crash, a signal, a timeout or unparsable output is exit 2, a chart error a finding.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from . import helmrenderer, tools
from .findings import Finding, Severity
from .model import CLUSTER_SCOPED, Manifest, no_objects
from .record import Record
from .rendercache import RenderCache
from .yamlio import YamlProblem, load_all, split_stream


class RenderRequest(Record):
    app: str
    chart: str                      # repo-relative chart directory
    release: str
    namespace: str
    kube_version: str
    api_versions: tuple[str, ...]
    value_files: list[str]          # repo-relative, in order
    values_yaml: str | None         # helm.values / helm.valuesObject
    set: dict[str, str]
    set_string: dict[str, str]
    skip_crds: bool
    skip_tests: bool
    skip_schema_validation: bool
    cluster: str | None
    origin: Manifest | None         # the Application, for locations

    def __init__(self, app: str, chart: str, release: str, namespace: str, kube_version: str,
                 api_versions: tuple[str, ...], value_files: list[str], values_yaml: str | None,
                 set: dict[str, str] | None = None, set_string: dict[str, str] | None = None,
                 skip_crds: bool = False, skip_tests: bool = False, skip_schema_validation: bool = False,
                 cluster: str | None = None, origin: Manifest | None = None) -> None:
        self.app = app
        self.chart = chart
        self.release = release
        self.namespace = namespace
        self.kube_version = kube_version
        self.api_versions = api_versions
        self.value_files = value_files
        self.values_yaml = values_yaml
        self.set = {} if set is None else set
        self.set_string = {} if set_string is None else set_string
        self.skip_crds = skip_crds
        self.skip_tests = skip_tests
        self.skip_schema_validation = skip_schema_validation
        self.cluster = cluster
        self.origin = origin

    def args(self, repo: Path, values_file: str | None) -> list[str]:
        a = ["template", str(repo / self.chart), "--name-template", self.release]
        if self.namespace:
            a += ["--namespace", self.namespace]
        a += ["--kube-version", self.kube_version]
        for k, v in self.set.items():
            a += ["--set", f"{k}={v}"]
        for k, v in self.set_string.items():
            a += ["--set-string", f"{k}={v}"]
        for f in self.value_files:
            a += ["--values", str(repo / f)]
        if values_file:
            a += ["--values", values_file]
        for v in self.api_versions:
            a += ["--api-versions", v]
        if not self.skip_crds:
            a.append("--include-crds")
        if self.skip_schema_validation:
            a.append("--skip-schema-validation")
        if self.skip_tests:
            a.append("--skip-tests")
        return a


def envsubst(value: str, env: dict[str, str]) -> str:
    """Argo CD's substitution: ``$VAR`` and ``${VAR}`` for known variables, ``$$`` for a dollar."""
    if "$" not in value:  # most value files and parameters: no regex per app
        return value
    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(2)
        return env.get(name, m.group(0))
    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", repl, value)


def build_env(app: Manifest, source: dict, namespace: str, kube_version: str, revision: str) -> dict[str, str]:
    spec = app.spec
    return {
        "ARGOCD_APP_NAME": app.name,
        "ARGOCD_APP_NAMESPACE": namespace,
        "ARGOCD_APP_PROJECT_NAME": str(spec.get("project", "")),
        "ARGOCD_APP_REVISION": revision,
        "ARGOCD_APP_REVISION_SHORT": revision[:7],
        "ARGOCD_APP_REVISION_SHORT_8": revision[:8],
        "ARGOCD_APP_SOURCE_PATH": str(source.get("path", "")),
        "ARGOCD_APP_SOURCE_REPO_URL": str(source.get("repoURL", "")),
        "ARGOCD_APP_SOURCE_TARGET_REVISION": str(source.get("targetRevision", "")),
        "KUBE_VERSION": kube_version.lstrip("v"),
    }


def inside(repo: Path, candidate: Path) -> bool:
    try:
        candidate.resolve().relative_to(repo.resolve())
        return True
    except ValueError:
        return False


# --- running helm ---------------------------------------------------------------------------

class Rendered(Record):
    request: RenderRequest
    manifests: list[Manifest]
    findings: list[Finding]
    cached: bool

    def __init__(self, request: RenderRequest, manifests: list[Manifest], findings: list[Finding],
                 cached: bool) -> None:
        self.request = request
        self.manifests = manifests
        self.findings = findings
        self.cached = cached


#: helm's exit status and stderr when the chart, not helm, is at fault (a template error, a
#: values schema failure, YAML a template rendered wrong): a finding. Anything else (a crash, a
#: signal, a timeout, other statuses) means helm could not do its job: exit 2.
_USER_ERROR = re.compile(r"^Error: ", re.M)


def run_helm(repo: Path, req: RenderRequest, helm: str, timeout: float,
             cache: RenderCache | None = None) -> tuple[str | None, str | None]:
    """(stdout, None) or (None, the chart's error as helm put it); ``ToolFailed`` when helm fails.
    ``cache`` remembers that helm-renderer and helm agree, for the next run."""
    tmp = None
    try:
        if req.values_yaml:
            fd, tmp = tempfile.mkstemp(suffix=".yaml", prefix="gitops-validate-values-")
            with os.fdopen(fd, "w") as fh:
                fh.write(req.values_yaml)
        argv, env = [helm, *req.args(repo, tmp)], helmrenderer.helm_env()
        renderer = helmrenderer.pool_for(helm, env, memo=cache)
        proc = renderer.run(argv, repo, env, timeout) if renderer else None
        if proc is None or proc.returncode != 0:  # the CLI has the last word on a failure
            proc = tools.run("helm", argv, timeout, cwd=repo, env=env)
    finally:
        if tmp:
            os.unlink(tmp)
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode == 1 and _USER_ERROR.search(stderr):
        msg = stderr.strip().replace(str(repo) + "/", "")
        return None, re.sub(r"(--api-versions \S+ )+", "", msg)
    if proc.returncode != 0:
        raise tools.ToolFailed("helm", f"{tools.describe_exit(proc.returncode)} rendering {req.chart}", proc.stderr)
    try:
        return proc.stdout.decode("utf-8"), None
    except UnicodeDecodeError:
        raise tools.ToolFailed("helm", f"exited 0 rendering {req.chart} but printed what is not UTF-8 text",
                               proc.stderr) from None


def source_file(chart: str, source: str | None) -> str | None:
    """Helm's ``# Source: <chart name>/templates/x.yaml`` -> ``<chart dir>/templates/x.yaml``."""
    if not source:
        return None
    rest = source.split("/", 1)[1] if "/" in source else source
    return f"{chart}/{rest}"


def parse_rendered(text: str, req: RenderRequest) -> tuple[list[Manifest], list[Finding]]:
    manifests: list[Manifest] = []
    findings: list[Finding] = []
    for chunk in split_stream(text):
        file = source_file(req.chart, chunk.source)
        try:
            docs = list(load_all(chunk.text))
        except YamlProblem as e:
            findings.append(Finding(e.rule, Severity.ERROR, f"rendered output: {e.message}", file, None, app=req.app))
            continue
        for d in docs:
            if d.data is None:
                continue
            if not isinstance(d.data, dict):
                findings.append(Finding("schema/not-kubernetes", Severity.ERROR,
                                        "rendered a document that is not a mapping", file, None, app=req.app))
                continue
            doc = d.data
            if no_objects(doc):   # an empty List: zero objects, as Argo CD reads it
                continue
            meta = doc.get("metadata")
            if isinstance(meta, dict) and not meta.get("namespace") and doc.get("kind") not in CLUSTER_SCOPED:
                meta["namespace"] = req.namespace  # Argo CD applies it in the destination namespace
            manifests.append(rendered_object(doc, file, req))
    return manifests, findings


def rendered_object(doc: dict, file: str | None, req: RenderRequest) -> Manifest:
    """An object ``req`` rendered from the template ``file`` (parsed now, or from the result cache)."""
    return Manifest(doc, file, None, app=req.app, cluster=req.cluster, hints=(f"{req.chart}/values.yaml", *req.value_files))


#: What helm itself refuses to print (it parses every document its templates render): seen in
#: its output, helm is broken, not the chart. Duplicate keys and the like pass helm and stay
#: findings, and so does anything in a chart's crds/ folder, which helm prints unparsed.
_NOT_FROM_HELM = ("yaml/syntax", "yaml/encoding", "schema/not-kubernetes")


def _helm_broken(f: Finding) -> bool:
    path = f"/{f.file or ''}"
    return f.rule in _NOT_FROM_HELM and not ("/crds/" in path and "/templates/" not in path)


def render(repo: Path, req: RenderRequest, helm: str, cache: RenderCache | None, timeout: float) -> Rendered:
    key = cache.key(repo, req, helm) if cache else None
    out = cache.get(key) if cache and key else None
    cached = out is not None
    if out is None:
        out, err = run_helm(repo, req, helm, timeout, cache)
        if err is not None:
            origin = req.origin
            return Rendered(req, [], [Finding("values/render-failed", Severity.ERROR, f"helm template failed: {err}",
                                              origin.file if origin else req.chart,
                                              origin.line if origin else None,
                                              origin.ref if origin else None, req.app)], False)
    manifests, findings = parse_rendered(out, req)
    broken = next(filter(_helm_broken, findings), None)
    if broken:
        raise tools.ToolFailed("helm", f"exited 0 rendering {req.chart} but its output does not parse "
                               f"({broken.file}: {broken.message})")
    if cache and key and not cached:
        cache.put(key, out)
    return Rendered(req, manifests, findings, cached)
