"""Offline JSON schemas in the layout kubeconform reads.

Two sources. This repository prepares both once with ``make setup`` (``python -m gitops_validate.schemastore
build`` into ``.tools/schemas``); an installed gitops-validate builds the same tree on first use into the
user's cache (``user_schemas``): Kubernetes from the installed ``kubernetes-validate`` dependency, Argo
CD's CRDs from the package data ``data/crds`` (generated from the pinned Argo CD's CRDs, see NOTICE).

* Kubernetes: the strict schemas shipped by the pinned ``kubernetes-validate`` wheel. They keep
  shared definitions in one ``_definitions.json`` addressed as ``/api/_definitions.json``, which
  kubeconform cannot resolve from a local file, so each kind is written out standalone with only
  the definitions it reaches.
* CRDs: each served version's ``openAPIV3Schema``, made strict (unknown fields rejected unless the
  CRD preserves them), at ``crds/<group>/<kind>_<version>.json``. The schema stage also converts
  CRDs that a chart renders, so objects of those kinds are checked rather than skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

KUBERNETES_DIR = "kubernetes"
CRD_DIR = "crds"
API_VERSIONS = "api-versions.txt"
# Kinds point into the shared file; definitions point at each other locally.
_REF_PREFIXES = ("/api/_definitions.json#/$defs/", "#/$defs/")


_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def normalize_version(version: object) -> str:
    """One spelling of a Kubernetes version: '1.35' / 'v1.35' / '1.35.1' -> 'v1.35.0' / 'v1.35.0' /
    'v1.35.1', as Argo CD passes it to helm (kubeconform wants it without the 'v', and refuses 'X.Y')."""
    m = _VERSION.fullmatch(str(version).strip())
    if not m:
        raise ValueError(f"not a Kubernetes version: {version!r} (expected X.Y, vX.Y or X.Y.Z, e.g. 1.35)")
    return f"v{int(m.group(1))}.{int(m.group(2))}.{int(m.group(3) or 0)}"


def kubernetes_minor(version: str) -> str:
    """'v1.35.1' / '1.35' -> 'v1.35'."""
    m = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    if not m:
        raise ValueError(f"not a Kubernetes version: {version!r} (expected X.Y or X.Y.Z)")
    return f"v{m.group(1)}.{m.group(2)}"


def kubernetes_schema_dir(root: Path, version: str) -> Path:
    return root / KUBERNETES_DIR / kubernetes_minor(version)


def schema_locations(root: Path, version: str, extra_crd_root: Path | None = None) -> list[str]:
    """kubeconform ``-schema-location`` templates, most specific first."""
    locs = [str(kubernetes_schema_dir(root, version)) + "/{{.ResourceKind}}{{.KindSuffix}}.json"]
    for base in (root / CRD_DIR, extra_crd_root):
        if base is not None:
            locs.append(str(base) + "/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json")
    return locs


# --- Kubernetes -------------------------------------------------------------------------------

def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            for prefix in _REF_PREFIXES:
                if ref.startswith(prefix):
                    yield ref[len(prefix):]
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite_refs(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIXES[0]):
            out["$ref"] = "#/$defs/" + ref[len(_REF_PREFIXES[0]):]
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def standalone(schema: dict, definitions: dict) -> dict:
    """A kind's schema with the definitions it reaches inlined under ``$defs``."""
    needed: dict[str, Any] = {}
    todo = list(_refs(schema))
    while todo:
        name = todo.pop()
        if name in needed or name not in definitions:
            continue
        needed[name] = definitions[name]
        todo.extend(_refs(definitions[name]))
    out = _rewrite_refs({k: v for k, v in schema.items() if k != "$id"})
    if needed:
        out["$defs"] = {k: _rewrite_refs(v) for k, v in sorted(needed.items())}
    return out


def _strict_schema_files(wheel: Path | None, minor: str) -> dict[str, Callable[[], bytes]]:
    """The strict schema files for ``minor``: from a kubernetes-validate wheel, or (None) from the
    installed package."""
    sub = f"kubernetes-json-schema/{minor}.0-local-strict/"
    if wheel is None:
        try:
            import importlib.resources  # here: a run with its schemas built needs neither these nor importlib.metadata
            base = importlib.resources.files("kubernetes_validate") / sub
        except ModuleNotFoundError:
            raise SystemExit("the kubernetes-validate package is not installed (pip install gitops-validate "
                             "installs it), or pass --schema-dir") from None
        return {p.name: p.read_bytes for p in base.iterdir()} if base.is_dir() else {}
    import zipfile  # only when the schemas are built: not on a run's imports
    zf = zipfile.ZipFile(wheel)
    prefix = "kubernetes_validate/" + sub
    return {n[len(prefix):]: (lambda n=n: zf.read(n)) for n in zf.namelist() if n.startswith(prefix)}


def shipped_minors() -> list[str]:
    """The Kubernetes minors the installed kubernetes-validate ships strict schemas for."""
    try:
        import importlib.resources
        base = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    except ModuleNotFoundError:
        return []
    return sorted((m.group(1) for p in base.iterdir() if (m := re.match(r"^(v\d+\.\d+)\.0-local-strict$", p.name))),
                  key=lambda v: tuple(int(x) for x in v[1:].split(".")))


def build_kubernetes(wheel: Path | None, version: str, out: Path) -> int:
    minor = kubernetes_minor(version)
    files = {n: read for n, read in _strict_schema_files(wheel, minor).items() if n.endswith(".json")}
    if not files:
        where = wheel.name if wheel else "the installed kubernetes-validate"
        raise SystemExit(f"{where} has no strict schemas for Kubernetes {minor} (it ships {', '.join(shipped_minors()) or 'none'})")
    target = out / KUBERNETES_DIR / minor
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    gvks: set[str] = set()
    definitions = json.loads(files["_definitions.json"]())["$defs"]
    for base, read in sorted(files.items()):
        if base.startswith("_") or base == "all.json":
            continue
        schema = json.loads(read())
        if "x-kubernetes-group-version-kind" not in schema:
            continue  # a sub-object, never a top-level document
        (target / base).write_text(json.dumps(standalone(schema, definitions)))
        for gvk in schema["x-kubernetes-group-version-kind"]:
            gv = f"{gvk['group']}/{gvk['version']}" if gvk.get("group") else gvk["version"]
            gvks |= {gv, f"{gv}/{gvk['kind']}"}
        count += 1
    (target / API_VERSIONS).write_text("\n".join(sorted(gvks)) + "\n")
    return count


# --- CRDs -------------------------------------------------------------------------------------

def _strict(node: Any) -> Any:
    """Reject unknown fields wherever the CRD lists properties and does not preserve unknowns."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) if k in ("properties", "items", "additionalProperties", "allOf",
                                  "anyOf", "oneOf", "not") else v
           for k, v in node.items()}
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _strict(v) for k, v in node["properties"].items()}
    if ("properties" in out and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def crd_schemas(crd: dict) -> dict[str, dict]:
    """Map ``<group>/<kind>_<version>.json`` to a strict schema for each version of a CRD."""
    spec = crd.get("spec") or {}
    group = spec.get("group", "")
    kind = ((spec.get("names") or {}).get("kind") or "").lower()
    out: dict[str, dict] = {}
    for ver in spec.get("versions") or []:
        schema = ((ver.get("schema") or {}).get("openAPIV3Schema"))
        if not (group and kind and isinstance(schema, dict)):
            continue
        schema = _strict(schema)   # new dicts along every path it or the lines below change: the CRD is not modified
        props = schema.setdefault("properties", {})
        # Every object carries these, whether or not the CRD spells them out.
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = {"type": "object"}
        out[f"{group}/{kind}_{ver['name']}.json"] = schema
    return out


def write_crd_schemas(crds: Iterable[dict], root: Path) -> int:
    count = 0
    served: set[str] = set()
    for crd in crds:
        spec = crd.get("spec") or {}
        for rel, schema in crd_schemas(crd).items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(schema))
            version = path.stem.rsplit("_", 1)[1]
            served |= {f"{spec['group']}/{version}", f"{spec['group']}/{version}/{spec['names']['kind']}"}
            count += 1
    if served:
        (root / API_VERSIONS).write_text("\n".join(sorted(served)) + "\n")
    return count


def api_versions(root: Path, version: str) -> tuple[str, ...]:
    """What ``helm template --api-versions`` gets: the cluster's group/versions and group/version/kinds,
    as Argo CD passes them from the live cluster."""
    out: list[str] = []
    for f in (kubernetes_schema_dir(root, version) / API_VERSIONS, root / CRD_DIR / API_VERSIONS):
        if f.is_file():
            out += f.read_text().split()
    return tuple(out)


# --- the user's schema tree (an installed gitops-validate) ------------------------------------

PACKAGED_CRDS = Path(__file__).resolve().parent / "data" / CRD_DIR
_STAMP = ".built-from"


def user_schemas(root: Path, version: str) -> Path:
    """``root`` as a complete schema tree for ``version``, built on first use: Kubernetes from the
    installed kubernetes-validate, CRDs from the package data. Rebuilt when either package changes.
    Each part is built in a temporary directory and renamed into place, so a run that is killed
    half-way leaves nothing half-built behind."""
    import importlib.metadata
    from . import __version__
    try:
        kv = importlib.metadata.version("kubernetes-validate")
    except importlib.metadata.PackageNotFoundError:
        kv = "missing"
    stamp = f"gitops-validate {__version__}, kubernetes-validate {kv}\n"
    root.mkdir(parents=True, exist_ok=True)
    if (root / _STAMP).is_file() and (root / _STAMP).read_text() != stamp:
        for child in (root / KUBERNETES_DIR, root / CRD_DIR):
            shutil.rmtree(child, ignore_errors=True)
    if not (root / CRD_DIR).is_dir():
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            shutil.copytree(PACKAGED_CRDS, Path(tmp) / CRD_DIR)
            os.replace(Path(tmp) / CRD_DIR, root / CRD_DIR)
    target = kubernetes_schema_dir(root, version)
    if not target.is_dir():
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            build_kubernetes(None, version, Path(tmp))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(Path(tmp) / KUBERNETES_DIR / target.name, target)
            except OSError:  # another run built it meanwhile
                if not target.is_dir():
                    raise
    (root / _STAMP).write_text(stamp)
    return root


def _load_crds(paths: Iterable[Path]) -> Iterable[dict]:
    for p in paths:
        for doc in yaml.safe_load_all(p.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                yield doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gitops_validate.schemastore")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write the offline schema tree")
    b.add_argument("--kubernetes-wheel", type=Path, help="a kubernetes-validate wheel (default: the installed package)")
    b.add_argument("--kubernetes-version", required=True)
    b.add_argument("--crds", type=Path, nargs="*", default=[])
    b.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("crds", help="write strict schemas for CRDs only (the package data: data/crds)")
    c.add_argument("crds", type=Path, nargs="+")
    c.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "crds":
        m = write_crd_schemas(_load_crds(args.crds), args.out)
        print(f"schemastore: {m} CRD versions -> {args.out}")
        return 0
    n = build_kubernetes(args.kubernetes_wheel, args.kubernetes_version, args.out)
    m = write_crd_schemas(_load_crds(args.crds), args.out / CRD_DIR)
    print(f"schemastore: {n} Kubernetes kinds, {m} CRD versions -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
