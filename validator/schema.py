"""Stage 3, schema: objects against the cluster's API (kubeconform, one process, offline, strict)
and value files against their chart (jsonschema against values.schema.json, keys against
values.yaml)."""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jsonschema

from . import schemastore
from .findings import Finding, Severity
from .model import Manifest, walk
from .render import RenderRequest
from .rules.secrets import looks_secret
from .yamlio import Document, YamlProblem, decode, load_all

KUBECONFORM_TIMEOUT = 120
_AT = re.compile(r"- at '([^']*)': (.*?)(?=\s+- at '|$)", re.S)


def is_builtin_group(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return group == "" or "." not in group or group.endswith(".k8s.io")


def _pointer(path: str) -> tuple:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.strip("/").split("/") if p != ""]
    return tuple(int(p) if p.isdigit() else p for p in parts)


def check_objects(manifests: list[Manifest], kubeconform: str, schema_root: Path, kube_version: str) -> list[Finding]:
    """Every object through one kubeconform process; its JSON mapped back to findings."""
    findings: list[Finding] = []
    checkable: list[Manifest] = []
    for m in manifests:
        if not m.api_version or not m.kind or not m.name:
            missing = [k for k, v in (("apiVersion", m.api_version), ("kind", m.kind), ("metadata.name", m.name)) if not v]
            findings.append(Finding("schema/not-kubernetes", Severity.ERROR,
                                    f"not a Kubernetes object: no {', '.join(missing)}", m.file, m.line, None, m.app))
        else:
            checkable.append(m)
    if not checkable:
        return findings
    with tempfile.TemporaryDirectory(prefix="gitops-validate-") as tmp:
        tmpdir = Path(tmp)
        crds = [m.doc for m in checkable if m.kind == "CustomResourceDefinition"]
        crd_root = tmpdir / "crds" if crds and schemastore.write_crd_schemas(crds, tmpdir / "crds") else None
        files = []
        for i, m in enumerate(checkable):
            f = tmpdir / f"{i}.json"
            f.write_text(json.dumps(m.doc, default=str))
            files.append(str(f))
        cmd = [kubeconform, "-strict", "-output", "json", "-kubernetes-version", kube_version.lstrip("v")]
        for loc in schemastore.schema_locations(schema_root, kube_version, crd_root):
            cmd += ["-schema-location", loc]
        try:
            proc = subprocess.run(cmd + files, capture_output=True, text=True, timeout=KUBECONFORM_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"kubeconform did not finish within {KUBECONFORM_TIMEOUT}s") from None
        try:
            results = json.loads(proc.stdout or "{}").get("resources") or []
        except json.JSONDecodeError:
            raise RuntimeError(f"kubeconform failed: {(proc.stderr or proc.stdout).strip()[:500]}") from None
    minor = schemastore.kubernetes_minor(kube_version)
    for r in results:
        try:
            m = checkable[int(Path(r.get("filename", "")).stem)]
        except (ValueError, IndexError):
            continue
        status, msg = r.get("status"), r.get("msg", "")
        if status == "statusInvalid":
            pairs = [(p, e.strip()) for p, e in _AT.findall(msg) if e.strip() != "validation failed"]
            for path, err in pairs or [("", msg)]:
                where = f" at {path}" if path else ""
                # an unknown field is on its own line (in a Kustomize patch too): point there
                extra = re.match(r"additional properties? '([^']+)'", err)
                pointer = _pointer(path) + ((extra.group(1),) if extra else ())
                findings.append(Finding("schema/invalid", Severity.ERROR, f"{m.kind}{where}: {err}",
                                        m.file, m.line_of(pointer), m.ref, m.app))
        elif status == "statusError":
            if msg.startswith("could not find schema"):
                if is_builtin_group(m.api_version):
                    rule, text = "schema/removed-api", (f"{m.api_version} {m.kind} is not served by Kubernetes {minor} "
                                                        "(removed or never existed); use the current apiVersion")
                else:
                    rule, text = "schema/unknown-kind", (f"no schema for {m.api_version} {m.kind}: neither Kubernetes "
                                                         "nor any CRD in play defines it")
                findings.append(Finding(rule, Severity.ERROR, text, m.file, m.line_of(("apiVersion",)), m.ref, m.app))
            else:
                findings.append(Finding("schema/invalid", Severity.ERROR, msg, m.file, m.line, m.ref, m.app))
    return findings


# --- values ---------------------------------------------------------------------------------

def _merge(base: Any, over: Any) -> Any:
    """Helm's coalescing: maps merge key by key, anything else is replaced; null deletes."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _merge(base.get(k), v)
        return out
    return over


def _layer(repo: Path, rel: str) -> tuple[Document | None, list[Finding]]:
    try:
        docs = list(load_all(decode((repo / rel).read_bytes())))
    except YamlProblem as e:
        return None, [Finding(e.rule, Severity.ERROR, e.message, rel, e.line)]
    return (docs[0] if docs else None), []


def _known_paths(values: Any, prefix: tuple = ()) -> set[tuple]:
    out = {prefix}
    if isinstance(values, dict) and values:
        for k, v in values.items():
            out |= _known_paths(v, prefix + (str(k),))
    return out


def _unknown_keys(override: Any, chart: Any, rel: str, doc: Document, app: str) -> list[Finding]:
    found: list[Finding] = []

    def walk(o: Any, c: Any, path: tuple) -> None:
        if not isinstance(o, dict) or not isinstance(c, dict) or not c:
            return  # an empty or non-map chart default accepts anything below it
        for k, v in o.items():
            if path == () and k == "global":
                continue
            if k not in c:
                hint = difflib.get_close_matches(str(k), [str(x) for x in c], 1)
                dotted = ".".join(map(str, path + (k,)))
                found.append(Finding("values/unknown-key", Severity.ERROR,
                                     f"{dotted!r} is not a value of the chart" + (f" (did you mean {hint[0]!r}?)" if hint else ""),
                                     rel, doc.line_of(path + (k,)), None, app))
            else:
                walk(v, c[k], path + (k,))
    walk(override, chart, ())
    return found


def _literal_secrets(data: Any, rel: str, doc: Document, app: str) -> list[Finding]:
    return [Finding("secrets/literal-value", Severity.ERROR,
                    f"{'.'.join(map(str, path))!r} holds a literal secret; reference an existing Secret instead",
                    rel, doc.line_of(path), None, app)
            for path, value in walk(data) if path and isinstance(path[-1], str) and looks_secret(path[-1], value)]


def check_values(repo: Path, req: RenderRequest) -> tuple[list[Finding], bool]:
    """Findings for the app's value files, and whether helm may still be run."""
    findings: list[Finding] = []
    chart_doc, fs = _layer(repo, f"{req.chart}/values.yaml") if (repo / req.chart / "values.yaml").is_file() else (None, [])
    findings += fs
    chart_values = chart_doc.data if chart_doc and isinstance(chart_doc.data, dict) else {}
    layers: list[tuple[str, Document]] = []
    for rel in req.value_files:
        doc, fs = _layer(repo, rel)
        findings += fs
        if doc is not None and doc.data is not None:
            if not isinstance(doc.data, dict):
                findings.append(Finding("values/schema", Severity.ERROR, "a value file must be a mapping",
                                        rel, doc.line, None, req.app))
                continue
            layers.append((rel, doc))
            findings += _unknown_keys(doc.data, chart_values, rel, doc, req.app)
            findings += _literal_secrets(doc.data, rel, doc, req.app)
    if any(f.rule.startswith("yaml/") for f in findings):
        return findings, False
    schema_file = repo / req.chart / "values.schema.json"
    if not schema_file.is_file():
        return findings, not any(f.rule == "values/unknown-key" for f in findings)
    try:
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        rel = f"{req.chart}/values.schema.json"
        return [Finding("values/schema", Severity.ERROR, f"values.schema.json is not valid JSON: {e}", rel, getattr(e, "lineno", None), None, req.app)], False
    merged: Any = chart_values
    for _, doc in layers:
        merged = _merge(merged, doc.data)
    if req.values_yaml:
        try:
            extra = next(iter(load_all(req.values_yaml)), None)
            merged = _merge(merged, extra.data if extra else None)
        except YamlProblem as e:
            origin = req.origin
            return [Finding(e.rule, Severity.ERROR, f"helm.values: {e.message}", origin.file if origin else None,
                            origin.line if origin else None, origin.ref if origin else None, req.app)], False
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    unknown_reported = any(f.rule == "values/unknown-key" for f in findings)
    for err in sorted(validator_cls(schema).iter_errors(merged or {}), key=lambda e: list(e.absolute_path)):
        if unknown_reported and err.validator == "additionalProperties":
            continue  # already said, with a line and a "did you mean"
        path = tuple(err.absolute_path)
        rel, line = f"{req.chart}/values.yaml", chart_doc.line_of(path) if chart_doc else None
        for layer_rel, doc in reversed(layers):  # the last layer that sets the value is to blame
            if _has_path(doc.data, path):
                rel, line = layer_rel, doc.line_of(path)
                break
        dotted = ".".join(map(str, path)) or "(top level)"
        findings.append(Finding("values/schema", Severity.ERROR, f"{dotted}: {err.message}", rel, line, None, req.app))
    # Helm would refuse these values too (or silently drop an unknown key): the findings above say it better.
    blocking = ("values/schema", "values/unknown-key")
    return findings, not any(f.rule in blocking for f in findings)


def _has_path(data: Any, path: tuple) -> bool:
    for p in path:
        if isinstance(data, dict) and p in data:
            data = data[p]
        elif isinstance(data, list) and isinstance(p, int) and p < len(data):
            data = data[p]
        else:
            return False
    return True
