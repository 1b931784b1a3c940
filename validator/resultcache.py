"""Per-app results on disk: what a helm app rendered and what was found in it, keyed by its inputs.

The render cache (rendercache.py) saves helm's run; a warm run would still re-parse every render,
re-check every object with kubeconform and every policy rule. This cache keeps, per rendered
source, what depends on that source alone:

- its values findings (``schema.check_values``) and whether it was rendered;
- the parsed objects as JSON (no YAML re-parse) and the render's findings (determinism included);
- the schema findings of its objects (kubeconform + API server limits), unless a CRD of the run
  defines one of its kinds (then that depends on another app: re-checked every run);
- the findings of every (rule, object) pair where the rule read nothing of the Context but the
  config's facts (``policy.Watched``); the other rules' ids per object, which re-run every time
  through the Context indexes (cross-object rules see the other apps' current objects).

Beside the entries, kubeconform's verdict on each object it checked (``verdict_key``: the object's
JSON, the Kubernetes version, the CRDs of the run that define its kind), so that a run whose objects
all have one starts no kubeconform (the Argo CD install and the Argo CD objects, re-checked every
run before).

Beside them, per cluster of a whole-repository run: the findings of the rules that read other
objects (the cross-object rules of every object, the install's rules, the cluster-wide sums), under
a key made of every result key the cluster's objects came from and the bytes of the files its Argo
CD objects were read from (``cluster_key``): a warm run whose every app hit runs no policy rule. A
run with renders of its own (the cold run) stores them too, once its entries are stored, without
the rendered objects' own findings (those are in the entries): the first warm run hits.

Beside them too, for ``schema.check_values``: that a chart's values.schema.json passed jsonschema's
metaschema and ``$ref`` checks (by the chart's files), and the errors of merged values against it
(by those and the values' JSON), so a run whose values' data did not change imports no jsonschema.

The key is the render key (helm, chart files, value files, request, validator version) plus a
digest of the validator's own source files (a code change without a version bump invalidates
everything), the config, the cluster's facts, the Kubernetes version, the schema tree's identity
and kubeconform's. An entry that cannot be read or does not have the expected shape is a miss,
never trusted; writes are atomic and share the render cache's folder, size bound and LRU eviction.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from . import findings as findings_module
from .findings import Finding
from .record import Record, is_record
from .rendercache import RACY_NS, RenderCache

SUFFIX = ".result.json"
VERDICT_SUFFIX = ".kubeconform.json"
VALUES_SUFFIX = ".values.json"
SCHEMA_OK_SUFFIX = ".values-schema.ok"
CODE_SUFFIX = ".code-digest"
CLUSTER_SUFFIX = ".cluster.json"
FORMAT = 1
_TEXT = {str}


@functools.lru_cache(maxsize=4)
def code_digest(memo: RenderCache | None = None) -> str:
    """``source_digest`` of this validator package, once per process. With ``memo`` (the cache),
    remembered there by its files' stamps (name, size, mtime, ctime, inode: an edited or replaced
    file changes them), so that a run reads the package's 700 KB only after one of them changed.
    Under git's racy-clean rule, as ``RenderCache.digest``: not remembered while a file is too
    young for its stamp to tell a second edit in the same tick."""
    return stamped_digest(Path(__file__).resolve().parent, memo)


def stamped_digest(root: Path, memo: RenderCache | None) -> str:
    """``source_digest(root)``, remembered in ``memo`` by the files' stamps (``code_digest``)."""
    if memo is None or not memo.enabled:
        return source_digest(root)
    now = time.time_ns()
    stamps, racy = [], False
    for p in _package_files(root):
        st = os.stat(p)
        stamps.append([str(p.relative_to(root)), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
        racy = racy or max(st.st_mtime_ns, st.st_ctime_ns) + RACY_NS >= now
    key = hashlib.sha256(json.dumps(["code", str(root), stamps]).encode()).hexdigest()
    path = os.path.join(memo.directory, key + CODE_SUFFIX)
    known = memo.get_file(path)
    if known is not None and len(known) == 64 and all(c in "0123456789abcdef" for c in known):
        return known
    digest = source_digest(root)
    if not racy:
        memo.put_file(path, digest)
    return digest


def _package_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        out += [Path(dirpath) / name for name in sorted(filenames) if not name.endswith((".pyc", ".pyo"))]
    return out


def source_digest(root: Path) -> str:
    """SHA-256 over the files of a package folder (source and data, not bytecode)."""
    h = hashlib.sha256()
    for p in _package_files(root):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def canonical(value: Any) -> Any:
    """``value`` as JSON data that is the same in every process: sets sorted (their order
    follows the string hash seed), records (record.py) and mappings by field or key."""
    if value is None or type(value) in (str, int, float, bool):  # most of it: asked first
        return value
    if is_record(value):
        return {f: canonical(getattr(value, f)) for f in value._fields}
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, dict):
        return sorted(([canonical(k), canonical(v)] for k, v in value.items()), key=json.dumps)
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=json.dumps)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def file_stamp(path: Path) -> list:
    """Real path, size, mtime, ctime and inode: a changed or replaced file or folder changes it."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return [real, "missing"]
    return [real, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


# --- findings as JSON, field by field (a field added to Finding needs no change here) ---------

def encode(value: Any) -> Any:
    if is_record(value):
        return {"@": type(value).__name__, **{f: encode(getattr(value, f)) for f in value._fields}}
    if isinstance(value, enum.Enum):
        return {"@enum": type(value).__name__, "value": value.value}
    if isinstance(value, tuple):
        return {"@tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot cache a {type(value).__name__}")


def _findings_class(name: Any, kind: type) -> Any:
    """A record or enum of findings.py, by name: nothing else is ever built from an entry."""
    cls = getattr(findings_module, name, None) if isinstance(name, str) else None
    if not isinstance(cls, type) or cls.__module__ != findings_module.__name__:
        raise ValueError(f"unknown class {name!r}")
    if kind is enum.Enum and not issubclass(cls, enum.Enum) or kind is object and not issubclass(cls, Record):
        raise ValueError(f"{name!r} is not what the entry says")
    return cls


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "@enum" in value:
            return _findings_class(value["@enum"], enum.Enum)(value["value"])
        if "@tuple" in value:
            return tuple(decode(v) for v in value["@tuple"])
        cls = _findings_class(value.get("@"), object)
        return cls(**{k: decode(v) for k, v in value.items() if k != "@"})
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def decode_findings(value: Any) -> list[Finding]:
    if type(value) is list and not value:  # most objects have none
        return []
    out = decode(value)
    if not isinstance(out, list) or not all(isinstance(f, Finding) for f in out):
        raise ValueError("not a list of findings")
    return out


class Object(Record):
    """One rendered object and what was found in it alone."""
    doc: dict
    file: str | None                 # the chart template
    schema: list[Finding] | None     # None: re-check with kubeconform (a CRD of the run defines its kind)
    local: list[Finding]             # findings of the rules that read only the object (and config facts)
    cross: list[str]                 # the rules that read other objects: they re-run every time
    #: refs.reference_candidates of the object (what a path-scoped run's widening asks of it);
    #: None: not stored, computed when needed
    refs: list[list] | None

    def __init__(self, doc: dict, file: str | None, schema: list[Finding] | None, local: list[Finding],
                 cross: list[str], refs: list[list] | None = None) -> None:
        self.doc = doc
        self.file = file
        self.schema = schema
        self.local = local
        self.cross = cross
        self.refs = refs


class Entry(Record):
    """One rendered source's results."""
    values: list[Finding]            # schema.check_values
    rendered: bool                   # False: its values kept it from rendering
    render: list[Finding]            # parsing helm's output, the determinism check, a failed render
    objects: list[Object]

    def __init__(self, values: list[Finding], rendered: bool, render: list[Finding], objects: list[Object]) -> None:
        self.values = values
        self.rendered = rendered
        self.render = render
        self.objects = objects

    def dump(self) -> str:
        return json.dumps({"format": FORMAT, "values": encode(self.values), "rendered": self.rendered,
                           "render": encode(self.render),
                           "objects": [{"doc": o.doc, "file": o.file,
                                        "schema": None if o.schema is None else encode(o.schema),
                                        "local": encode(o.local), "cross": o.cross, "refs": o.refs}
                                       for o in self.objects]})

    @classmethod
    def load(cls, text: str) -> "Entry":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data["rendered"], bool) \
                or not isinstance(data["objects"], list):
            raise ValueError("not an entry of this format")
        objects = []
        for o in data["objects"]:
            if not (isinstance(o["doc"], dict) and isinstance(o["file"], (str, type(None))) and isinstance(o["cross"], list)
                    and {*map(type, o["cross"])} <= _TEXT):
                raise ValueError("not an object of this format")
            refs = o.get("refs")
            if refs is not None and not (isinstance(refs, list) and all(_is_reference(r) for r in refs)):
                raise ValueError("not an object of this format")
            objects.append(Object(o["doc"], o["file"], None if o["schema"] is None else decode_findings(o["schema"]),
                                  decode_findings(o["local"]), o["cross"], refs))
        return cls(decode_findings(data["values"]), data["rendered"], decode_findings(data["render"]), objects)


def _is_reference(r: Any) -> bool:
    """[kind, namespace or None, name, conditional]: one of refs.reference_candidates."""
    return (isinstance(r, list) and len(r) == 4 and isinstance(r[0], str) and isinstance(r[1], (str, type(None)))
            and isinstance(r[2], str) and isinstance(r[3], bool))


class ResultCache:
    """Entries next to the render cache's, under keys that extend its render keys by ``context``
    (config, schemas, kubeconform, per cluster its facts and Kubernetes version)."""

    def __init__(self, renders: RenderCache, context: Any):
        self.renders = renders
        self._base = hashlib.sha256(json.dumps(["results", FORMAT, code_digest(renders), canonical(context)],
                                               sort_keys=True).encode()).hexdigest()

    def key(self, render_key: str, cluster_context: Any) -> str:
        return hashlib.sha256(json.dumps([self._base, render_key, canonical(cluster_context)],
                                         sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> Entry | None:
        text = self.renders.get_file(os.path.join(self.renders.directory, key + SUFFIX))
        if text is None:
            return None
        try:
            return Entry.load(text)  # inside pipeline.run, whose cycle collector is off for the run
        except Exception:  # noqa: BLE001 - a damaged or foreign entry is a miss, recomputed and replaced
            return None

    def put(self, key: str, entry: Entry) -> bool:
        """Store ``entry`` under ``key``; whether it was (a run keys its clusters' findings by the
        entries it stored: pipeline._cluster_key)."""
        try:
            text = entry.dump()
            # what does not come back as it went in (a type JSON does not keep, a NaN) is not cached
            if [o.doc for o in Entry.load(text).objects] != [o.doc for o in entry.objects]:
                return False
        except (TypeError, ValueError, KeyError, RecursionError):
            return False
        return self.renders.put_file(self.renders.directory / f"{key}{SUFFIX}", text)

    # --- kubeconform's verdict on one object (schema.check_objects) --------------------------

    def verdict_key(self, text: str, kube_version: str, crds: str) -> str:
        """By the object's text as kubeconform reads it, the Kubernetes version and the digest of
        the run's CRDs when one defines its kind (the context holds kubeconform and the schemas)."""
        # the text hashed as it is, after the rest as JSON: JSON-quoting a large object's text (a
        # CRD's, 200 KB) cost more than the hash
        h = hashlib.sha256(json.dumps([self._base, "kubeconform", kube_version, crds]).encode() + b"\0")
        h.update(text.encode())
        return h.hexdigest()

    def get_verdict(self, key: str) -> dict | None:
        text = self.renders.get_file(self.renders.directory / f"{key}{VERDICT_SUFFIX}")
        try:
            data = json.loads(text) if text is not None else None
        except ValueError:
            return None
        if not (isinstance(data, dict) and data.get("status") in ("statusValid", "statusInvalid", "statusError")
                and isinstance(data.get("msg"), str)):
            return None  # absent, damaged or foreign: a miss, checked again and replaced
        return data

    def put_verdict(self, key: str, verdict: dict) -> None:
        self.renders.put_file(self.renders.directory / f"{key}{VERDICT_SUFFIX}", json.dumps(verdict))

    # --- a chart's values.schema.json and the values checked against it (schema.check_values) ---

    def schema_checked_key(self, chart_digest: str, engine: Any) -> str:
        """By the chart's files (the schema and every file a ``$ref`` can reach) and jsonschema's
        identity (``engine``): its metaschema check and ``$ref`` check passed once, need not again."""
        return hashlib.sha256(json.dumps([self._base, "values-schema", chart_digest, engine]).encode()).hexdigest()

    def values_key(self, schema_key: str, instance_text: str) -> str:
        """By the above and the merged values as JSON text (key order kept: messages follow it)."""
        return hashlib.sha256(json.dumps([schema_key, "values", instance_text]).encode()).hexdigest()

    def schema_checked(self, key: str) -> bool:
        return self.renders.get_file(self.renders.directory / f"{key}{SCHEMA_OK_SUFFIX}") == "ok"

    def put_schema_checked(self, key: str) -> None:
        self.renders.put_file(self.renders.directory / f"{key}{SCHEMA_OK_SUFFIX}", "ok")

    def get_values_errors(self, key: str) -> list[tuple[tuple, str, str]] | None:
        """(path, message, keyword) of each jsonschema error, as stored; None when absent or damaged."""
        text = self.renders.get_file(self.renders.directory / f"{key}{VALUES_SUFFIX}")
        try:
            data = json.loads(text) if text is not None else None
        except ValueError:
            return None
        if not isinstance(data, list) or not all(
                isinstance(e, list) and len(e) == 3 and isinstance(e[0], list) and isinstance(e[1], str)
                and isinstance(e[2], str) and all(isinstance(p, (str, int)) and not isinstance(p, bool) for p in e[0])
                for e in data):
            return None
        return [(tuple(path), message, keyword) for path, message, keyword in data]

    def put_values_errors(self, key: str, errors: list[tuple[tuple, str, str]]) -> None:
        self.renders.put_file(self.renders.directory / f"{key}{VALUES_SUFFIX}",
                              json.dumps([[list(path), message, keyword] for path, message, keyword in errors]))

    # --- a cluster's cross-object and cluster-wide findings (pipeline._cluster_key) ----------

    def cluster_key(self, parts: Any) -> str:
        """By ``parts`` (the cluster, its facts, every object's origin: a result key or a file's
        bytes) and what every result depends on (this cache's context)."""
        return hashlib.sha256(json.dumps([self._base, "cluster", parts]).encode()).hexdigest()

    def get_findings(self, key: str) -> list[Finding] | None:
        """The findings stored under ``key``; None when absent, damaged or foreign (recomputed).
        The file names its key and the digest of its findings: one copied under another name or
        changed inside (still JSON) is not trusted."""
        text = self.renders.get_file(self.renders.directory / f"{key}{CLUSTER_SUFFIX}")
        if text is None:
            return None
        try:
            data = json.loads(text)
            if not (isinstance(data, dict) and data.get("format") == FORMAT and data.get("key") == key
                    and isinstance(data.get("findings"), str)
                    and data.get("digest") == hashlib.sha256(data["findings"].encode()).hexdigest()):
                return None
            return decode_findings(json.loads(data["findings"]))
        except Exception:  # noqa: BLE001 - a damaged or foreign file is a miss, recomputed and replaced
            return None

    def put_findings(self, key: str, found: list[Finding]) -> None:
        try:
            text = json.dumps(encode(found))
            if decode_findings(json.loads(text)) != found:
                return  # what does not come back as it went in is not stored
        except (TypeError, ValueError, RecursionError):
            return
        digest = hashlib.sha256(text.encode()).hexdigest()
        self.renders.put_file(self.renders.directory / f"{key}{CLUSTER_SUFFIX}",
                              json.dumps({"format": FORMAT, "key": key, "digest": digest, "findings": text}))
