"""Stage 2, render: turn an Application into Kubernetes objects exactly as Argo CD's repo server does.

Argo CD (reposerver/repository.go, helmTemplate) runs
``helm template <path> --name-template <releaseName|app> --namespace <helm.namespace|destination>
--kube-version <cluster> --set/--set-string <parameters> --values <valueFiles...> --values <values|valuesObject>
--api-versions <cluster APIs> --include-crds``, with ``$ARGOCD_APP_*`` substituted in parameters
and value-file paths, value files resolved against the app path and kept inside the repo, and
``$ref/...`` value files taken from another source. Precedence: parameters > valuesObject
(or values) > valueFiles, later files over earlier ones.

Renders are cached on disk by a hash of everything that feeds helm, so an unchanged app costs a
file read, and a pre-commit run renders only what the commit changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .findings import Finding, Severity
from .model import CLUSTER_SCOPED, Manifest
from .yamlio import YamlProblem, load_all, split_stream

HELM_TIMEOUT = 60


@dataclass
class RenderRequest:
    app: str
    chart: str                      # repo-relative chart directory
    release: str
    namespace: str
    kube_version: str
    api_versions: tuple[str, ...]
    value_files: list[str]          # repo-relative, in order
    values_yaml: str | None         # helm.values / helm.valuesObject
    set: dict[str, str] = field(default_factory=dict)
    set_string: dict[str, str] = field(default_factory=dict)
    skip_crds: bool = False
    skip_tests: bool = False
    skip_schema_validation: bool = False
    cluster: str | None = None
    origin: Manifest | None = None  # the Application, for locations

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
    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(2)
        return env.get(name, m.group(0))
    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", repl, value)


def build_env(app: Manifest, source: dict, namespace: str, kube_version: str, revision: str) -> dict[str, str]:
    spec = app.doc.get("spec") or {}
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

def _chart_digest(repo: Path, chart: str) -> str:
    h = hashlib.sha256()
    base = repo / chart
    for p in sorted(base.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(base)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def cache_key(repo: Path, req: RenderRequest, helm: str) -> str:
    st = os.stat(helm)
    parts = {
        "helm": [helm, st.st_size, st.st_mtime_ns],
        "chart": _chart_digest(repo, req.chart),
        "values": [hashlib.sha256((repo / f).read_bytes()).hexdigest() for f in req.value_files],
        "req": [req.release, req.namespace, req.kube_version, list(req.api_versions), req.values_yaml,
                sorted(req.set.items()), sorted(req.set_string.items()), req.value_files,
                req.skip_crds, req.skip_tests, req.skip_schema_validation],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass
class Rendered:
    request: RenderRequest
    manifests: list[Manifest]
    findings: list[Finding]
    cached: bool


def run_helm(repo: Path, req: RenderRequest, helm: str, cache_dir: Path | None) -> tuple[str | None, str | None, bool]:
    """(stdout, error, came from cache)."""
    key = cache_key(repo, req, helm) if cache_dir else None
    if key:
        hit = cache_dir / f"{key}.yaml"
        if hit.is_file():
            return hit.read_text(encoding="utf-8"), None, True
    tmp = None
    try:
        if req.values_yaml:
            fd, tmp = tempfile.mkstemp(suffix=".yaml", prefix="gitops-validate-values-")
            with os.fdopen(fd, "w") as fh:
                fh.write(req.values_yaml)
        proc = subprocess.run([helm, *req.args(repo, tmp)], capture_output=True, text=True,
                              timeout=HELM_TIMEOUT, cwd=repo, env={**os.environ, "HELM_NO_PLUGINS": "1"})
    except subprocess.TimeoutExpired:
        return None, f"helm template did not finish within {HELM_TIMEOUT}s", False
    finally:
        if tmp:
            os.unlink(tmp)
    if proc.returncode != 0:
        msg = proc.stderr.strip().replace(str(repo) + "/", "")
        msg = re.sub(r"(--api-versions \S+ )+", "", msg)
        return None, msg or f"helm exited {proc.returncode}", False
    if key:
        cache_dir.mkdir(parents=True, exist_ok=True)
        part = cache_dir / f"{key}.{os.getpid()}.tmp"
        part.write_text(proc.stdout, encoding="utf-8")
        part.replace(cache_dir / f"{key}.yaml")
    return proc.stdout, None, False


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
            meta = doc.get("metadata")
            if isinstance(meta, dict) and not meta.get("namespace") and doc.get("kind") not in CLUSTER_SCOPED:
                meta["namespace"] = req.namespace  # Argo CD applies it in the destination namespace
            manifests.append(Manifest(doc, file, None, app=req.app, cluster=req.cluster, hints=(f"{req.chart}/values.yaml", *req.value_files)))
    return manifests, findings


def render(repo: Path, req: RenderRequest, helm: str, cache_dir: Path | None) -> Rendered:
    out, err, cached = run_helm(repo, req, helm, cache_dir)
    if err is not None:
        origin = req.origin
        return Rendered(req, [], [Finding("values/render-failed", Severity.ERROR, f"helm template failed: {err}",
                                          origin.file if origin else req.chart,
                                          origin.line if origin else None,
                                          origin.ref if origin else None, req.app)], False)
    manifests, findings = parse_rendered(out or "", req)
    return Rendered(req, manifests, findings, cached)
