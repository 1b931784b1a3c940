"""Stage 3, schema: objects against the cluster's API (kubeconform, one process, offline, strict)
and value files against their chart (jsonschema against values.schema.json, keys against
values.yaml)."""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import json
import math
import os
import queue
import re
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import confine, schemastore, tools
from .findings import Finding, Severity
from .model import Manifest, dig, walk
from .record import Record
from .render import RenderRequest
from .rules.secrets import looks_secret
from .yamlio import Document, YamlProblem, decode, load_all

if TYPE_CHECKING:
    from .resultcache import ResultCache

KUBECONFORM_TIMEOUT = 120
#: Go's collector in kubeconform: its heap stays small (about 50 MB while checking 5,000 objects),
#: so at Go's default (GOGC=100) it collects all the time, a fifth of its CPU; at 400 that CPU is
#: about 15 % lower for about 40 MB more (docs/performance.md, change 28). A GOGC the user set wins.
KUBECONFORM_GOGC = "400"
_AT = re.compile(r"- at '([^']*)': (.*?)(?=\s+- at '|$)", re.S)


def is_builtin_group(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return group == "" or "." not in group or group.endswith(".k8s.io")


def _pointer(path: str) -> tuple:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.strip("/").split("/") if p != ""]
    return tuple(int(p) if p.isdigit() else p for p in parts)


# The API server's own limits, which no JSON schema states (k8s.io/apimachinery and
# pkg/apis/core/validation): annotations at most 256 KiB in total (keys + values), the data of a
# ConfigMap or Secret at most 1 MiB (core.MaxSecretSize; values only, Secret data decoded).
TOTAL_ANNOTATION_SIZE = 256 * 1024
MAX_DATA_SIZE = 1024 * 1024


def _decoded_size(value: str) -> int:
    try:
        return len(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error):
        return len(value) * 3 // 4  # not base64: schema/invalid says so; the size is an estimate


def _has_non_finite(doc: Any) -> bool:
    return any(isinstance(value, float) and not math.isfinite(value) for _, value in walk(doc))


try:  # what json.dumps(doc, default=str, allow_nan=False) runs for a dict, and the same text
    from json.encoder import c_make_encoder as _encoder, encode_basestring_ascii as _ascii
except ImportError:  # pragma: no cover - a Python without json's C accelerator
    _encoder = None


def as_json(doc: Any) -> str | None:
    """The object as JSON for kubeconform, or None when it holds a non-finite number (which JSON,
    and so the API server, cannot represent). One pass in C answers both; the walk in Python only
    runs when it fails."""
    try:
        if _encoder is not None and type(doc) is dict:   # json.dumps' own C encoder, without its Python set-up per call
            return "".join(_encoder({}, str, _ascii, None, ": ", ", ", False, False, False)(doc, 0))
        return json.dumps(doc, default=str, allow_nan=False)
    except ValueError:
        if _has_non_finite(doc):
            return None
        return json.dumps(doc, default=str)


def api_server_limits(m: Manifest, finite: bool | None = None) -> list[Finding]:
    """Findings for what the API server refuses although the schema allows it. ``finite``: whether
    the caller already knows the object holds no non-finite number (``as_json`` told it)."""
    out: list[Finding] = []

    def add(rule: str, msg: str, path: tuple) -> None:
        out.append(Finding(rule, Severity.ERROR, f"{m.kind} {m.name}: {msg}", m.file, m.line_of(path), m.ref, m.app))

    if finite is None:
        finite = not _has_non_finite(m.doc)
    for path, value in () if finite else walk(m.doc):
        if isinstance(value, float) and not math.isfinite(value):
            add("schema/non-finite-number", f"{'.'.join(map(str, path)) or '(document)'} is {value}, "
                "which JSON (and so the API server) cannot represent", path)
    annotations = m.annotations
    if isinstance(annotations, dict):
        total = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
        if total > TOTAL_ANNOTATION_SIZE:
            add("schema/annotations-too-large", f"annotations take {total} bytes, more than the API server's "
                f"{TOTAL_ANNOTATION_SIZE} (256 KiB) for all of them", ("metadata", "annotations"))
    if m.api_version == "v1" and m.kind in ("ConfigMap", "Secret"):
        sizes: dict[tuple, int] = {}
        for field in ("data", "binaryData", "stringData"):
            block = m.doc.get(field)
            if not isinstance(block, dict):
                continue
            for k, v in block.items():
                if isinstance(v, str):
                    decoded = field == "binaryData" or (m.kind == "Secret" and field == "data")
                    # stringData is written over data, key by key, before the server checks
                    sizes[("data" if field == "stringData" else field, k)] = _decoded_size(v) if decoded else len(v.encode())
        total = sum(sizes.values())
        if total > MAX_DATA_SIZE:
            add("schema/object-too-large", f"its data holds {total} bytes, more than the API server's "
                f"{MAX_DATA_SIZE} (1 MiB) for a {m.kind}", ("data",) if "data" in m.doc else ())
    return out


def check_objects(manifests: list[Manifest], kubeconform: str, schema_root: Path, kube_version: str,
                  known: "ResultCache | None" = None) -> list[Finding]:
    """Every object through one kubeconform process (but those whose verdict ``known`` holds); its
    JSON mapped back to findings."""
    return prepare_objects(manifests).check(kubeconform, schema_root, kube_version, known)


class Prepared(Record):
    """Objects read for kubeconform (the Python half of ``check_objects``): a caller that has other
    work for this process can do this half first, then run ``check`` in a thread while kubeconform,
    a Go process, uses the other core."""
    findings: list[Finding]
    checkable: list[Manifest]
    texts: list[str]                   # each checkable object as JSON

    def __init__(self, findings: list[Finding] | None = None, checkable: list[Manifest] | None = None,
                 texts: list[str] | None = None) -> None:
        self.findings = [] if findings is None else findings
        self.checkable = [] if checkable is None else checkable
        self.texts = [] if texts is None else texts

    def add(self, m: Manifest) -> None:
        if not m.api_version or not m.kind or not m.name:
            missing = [k for k, v in (("apiVersion", m.api_version), ("kind", m.kind), ("metadata.name", m.name)) if not v]
            self.findings.append(Finding("schema/not-kubernetes", Severity.ERROR,
                                         f"not a Kubernetes object: no {', '.join(missing)}", m.file, m.line, None, m.app))
            return
        text = m.json_text if m.json_text is not None else as_json(m.doc)
        self.findings += api_server_limits(m, finite=text is not None)
        if text is not None:  # not JSON otherwise: kubeconform cannot read it
            self.checkable.append(m)
            self.texts.append(text)

    def check(self, kubeconform: str, schema_root: Path, kube_version: str,
              known: "ResultCache | None" = None) -> list[Finding]:
        return self.findings + _kubeconform(self.checkable, self.texts, kubeconform, schema_root, kube_version, known)


def prepare_objects(manifests: list[Manifest]) -> Prepared:
    out = Prepared()
    for m in manifests:
        out.add(m)
    return out


#: FIFOs of a ``--manifests`` run at most, read by one kubeconform in turn, each a segment of the
#: stream: a file's report cannot tell two objects of one (kind, apiVersion, name) apart, so the
#: second one (the same name in another namespace or cluster) starts the next segment
#: (docs/performance.md, changes 30 and 32)
SEGMENTS = 16
_NEXT = object()   # in the queue: the segment ends here


class Streamed(Prepared):
    """``Prepared``, with one kubeconform started at once on ``SEGMENTS`` FIFOs that a thread of
    this process writes each object to as it is added (``--manifests``: kubeconform compiles its
    schemas and checks while this process still reads YAML). kubeconform reads the files it is
    named one after the other (pkg/resource/files.go), so the FIFOs are the stream's segments, in
    order: an object goes to the current one unless its (kind, apiVersion, name) is there already
    (one file's report cannot tell the two apart); then the writer ends that FIFO and goes on in the
    next, which kubeconform opens once it has read the one before. Objects that no segment can
    take (their name twice in the last), Lists, names that are not text, and every object whose
    kind a CRD of the run defines (known only at the end) go through ``_kubeconform`` afterwards,
    as before. The verdict of an object depends on its JSON text and the schemas alone, so every
    way agrees. Every object sent must get exactly one result, and every FIFO left empty its
    empty-file result (``_kubeconform_results``), else exit 2."""

    def __init__(self, kubeconform: str, schema_root: Path, kube_version: str):
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="gitops-validate-")
        # .json names: kubeconform reads only .json/.yaml names; all there before it looks for them
        self._fifos = [str(Path(self._tmp.name) / f"{k}.json") for k in range(SEGMENTS)]
        for fifo in self._fifos:
            os.mkfifo(fifo, 0o600)
        self._keys: dict[tuple, int] = {}      # (FIFO, kind, apiVersion, name) -> index in checkable
        self._segment = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._done = threading.Event()         # kubeconform has exited (or could not start)
        self._proc: tools.Completed | BaseException | None = None
        # kubeconform gets the cores this process leaves it: it reads YAML and then evaluates the rules on one
        cmd = _kubeconform_cmd(kubeconform, schema_root, kube_version, None, workers=max(1, _cores() - 1))
        self._runner = threading.Thread(target=self._run, args=(cmd + self._fifos,), daemon=True)
        self._writer = threading.Thread(target=self._write, daemon=True)
        self._runner.start()
        self._writer.start()

    def add(self, m: Manifest) -> None:
        before = len(self.checkable)
        super().add(m)
        if len(self.checkable) == before:
            return
        name, kind, version = m.metadata.get("name"), m.doc.get("kind"), m.doc.get("apiVersion")
        if all(isinstance(v, str) for v in (name, kind, version)) and not kind.endswith("List"):
            key = (self._fifos[self._segment], kind, version, name)
            if key in self._keys:   # in the current segment already: the next one
                if self._segment == SEGMENTS - 1:
                    return
                self._segment += 1
                self._queue.put(_NEXT)
                key = (self._fifos[self._segment], kind, version, name)
            self._keys[key] = before
            self._queue.put(self.texts[before])

    def _run(self, cmd: list[str]) -> None:
        try:
            self._proc = _run_tool(cmd)
        except BaseException as e:  # noqa: BLE001 - check() raises it in the caller's thread
            self._proc = e
        finally:
            self._done.set()

    def _open(self, fifo: str) -> int | None:
        """The FIFO opened for writing once kubeconform has opened it, or None if it is gone first."""
        wait = 0.0001
        while True:
            try:  # non-blocking: an open for writing would wait for ever on a reader that never comes
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO or self._done.wait(wait):
                    return None
                wait = min(2 * wait, 0.002)
            else:
                os.set_blocking(fd, True)
                return fd

    def _write(self) -> None:
        """Objects from the queue into the FIFOs, a segment each, until None; then every FIFO left
        is opened and closed, so that kubeconform reads to the end. A kubeconform that never opened
        one or went away leaves the rest unwritten: their missing results are exit 2 in check()."""
        ended = False
        for fifo in self._fifos:
            fd = self._open(fifo)
            if fd is None:
                return
            try:
                first = True
                while not ended:
                    texts = [self._queue.get()]
                    while texts[-1] is not None and texts[-1] is not _NEXT and not self._queue.empty():
                        texts.append(self._queue.get())
                    ended = texts[-1] is None
                    segment_ends = ended or texts[-1] is _NEXT
                    if segment_ends:
                        texts.pop()
                    if texts:
                        data = ("" if first else "\n---\n") + "\n---\n".join(texts)
                        first = False
                        view = memoryview(data.encode())
                        while view:
                            view = view[os.write(fd, view):]
                    if segment_ends:
                        break
            except OSError:   # EPIPE: kubeconform is gone
                return
            finally:
                os.close(fd)

    def close(self) -> None:
        """End the stream; kubeconform then finishes its report."""
        self._queue.put(None)

    def _end(self) -> None:
        self.close()
        self._writer.join()
        self._runner.join()
        self._tmp.cleanup()

    def abandon(self) -> None:
        """The run ends without the report (an error while reading): let kubeconform end, clean up."""
        self._end()

    def check(self, kubeconform: str, schema_root: Path, kube_version: str,
              known: "ResultCache | None" = None) -> list[Finding]:
        self._end()
        results: list[dict | None] = [None] * len(self.checkable)
        proc = self._proc
        if isinstance(proc, BaseException):
            raise proc
        assert proc is not None
        keys = list(self._keys)
        empty = set(self._fifos) - {key[0] for key in keys}
        for key, r in zip(keys, _kubeconform_results(proc, keys, empty), strict=True):
            results[self._keys[key]] = r
        crds = [m.doc for m in self.checkable if m.kind == "CustomResourceDefinition"]
        crd_kinds = {str(dig(d, "spec", "names", "kind")).lower() for d in crds}
        # the streams ran without the run's CRD schemas: objects of those kinds are checked again with them
        todo = [i for i, (m, r) in enumerate(zip(self.checkable, results)) if r is None or m.kind.lower() in crd_kinds]
        if todo:
            batch = [self.checkable[i] for i in todo]
            needed = crds if any(m.kind.lower() in crd_kinds for m in batch) else []
            rerun = _run_kubeconform(batch, [self.texts[i] for i in todo], needed, kubeconform, schema_root, kube_version)
            for i, r in zip(todo, rerun, strict=True):
                results[i] = r
        return self.findings + _findings(self.checkable, results, kube_version)


def remember_verdicts(manifests: list[Manifest], kubeconform: str, schema_root: Path, kube_version: str,
                      known: "ResultCache") -> None:
    """kubeconform's verdicts on ``manifests`` into ``known`` ahead of ``check_objects``, which then
    finds them and starts no kubeconform for them (pipeline: a fresh render's objects, checked in
    its render job while the run still loads the other apps). Only a cache warm-up: the key of a
    verdict holds everything it depends on (``_verdicts``), so a key ``check_objects`` computes
    differently (another set of CRDs in its batch) is a miss, checked there as before; and a fault
    here raises, for the caller to leave the check to ``check_objects`` (which meets it again)."""
    prepared = prepare_objects(manifests)
    if prepared.checkable:
        _verdicts(prepared.checkable, prepared.texts, kubeconform, schema_root, kube_version, known)


def _kubeconform(checkable: list[Manifest], texts: list[str], kubeconform: str, schema_root: Path,
                 kube_version: str, known: "ResultCache | None") -> list[Finding]:
    if not checkable:
        return []
    return _findings(checkable, _verdicts(checkable, texts, kubeconform, schema_root, kube_version, known), kube_version)


def _findings(checkable: list[Manifest], results: list[dict], kube_version: str) -> list[Finding]:
    """kubeconform's results (one per object of ``checkable``, in order) as findings."""
    findings: list[Finding] = []
    minor = schemastore.kubernetes_minor(kube_version)
    for i, r in enumerate(results):
        m = checkable[i]
        status, msg = r.get("status"), str(r.get("msg") or "")
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


def _verdicts(checkable: list[Manifest], texts: list[str], kubeconform: str, schema_root: Path,
              kube_version: str, known: "ResultCache | None") -> list[dict]:
    """kubeconform's result for each object: from ``known`` (the result cache, by the exact text
    kubeconform would read, the Kubernetes version and, for a kind that a CRD of the run defines,
    those CRDs; its context holds kubeconform's and the schema tree's identity), else from one
    kubeconform run over the others. The run's CRD schemas are written only when an object needs them."""
    crds = [m.doc for m in checkable if m.kind == "CustomResourceDefinition"]
    crd_kinds = {str(dig(d, "spec", "names", "kind")).lower() for d in crds}
    keys: list[str | None] = [None] * len(checkable)
    if known is not None:
        crd_digest = hashlib.sha256()
        for m, text in zip(checkable, texts):
            if m.kind == "CustomResourceDefinition":
                crd_digest.update(f"{text}\0".encode())
        of_crds = crd_digest.hexdigest()
        keys = [known.verdict_key(text, kube_version, of_crds if m.kind.lower() in crd_kinds else "")
                for m, text in zip(checkable, texts)]
    results = [known.get_verdict(k) if known is not None and k else None for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        batch = [checkable[i] for i in todo]
        batch_texts = [texts[i] for i in todo]
        # the run's CRD schemas come last in the schema locations, named by kind: only those kinds reach them
        needed = crds if any(m.kind.lower() in crd_kinds for m in batch) else []
        for i, r in zip(todo, _run_kubeconform(batch, batch_texts, needed, kubeconform, schema_root, kube_version), strict=True):
            results[i] = r
            status, msg = r.get("status"), str(r.get("msg") or "")
            # a verdict of the object and the schemas alone (not, say, a schema file that could not be read)
            if keys[i] and (status in ("statusValid", "statusInvalid") or msg.startswith("could not find schema")):
                known.put_verdict(keys[i], {"status": status, "msg": msg})
    return results


def _run_kubeconform(checkable: list[Manifest], texts: list[str], crds: list[dict], kubeconform: str, schema_root: Path,
                     kube_version: str) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="gitops-validate-") as tmp:
        tmpdir = Path(tmp)
        crd_root = tmpdir / "crds" if crds and schemastore.write_crd_schemas(crds, tmpdir / "crds") else None
        keys = _write_batches(checkable, texts, tmpdir)
        files = sorted({k[0] for k in keys}, key=lambda f: int(Path(f).stem))
        cmd = _kubeconform_cmd(kubeconform, schema_root, kube_version, crd_root)
        return _kubeconform_results(_run_tool(cmd + files), keys)


def _kubeconform_cmd(kubeconform: str, schema_root: Path, kube_version: str, crd_root: Path | None,
                     workers: int | None = None) -> list[str]:
    # -verbose: a result for every object, valid ones too, so that each can be accounted for
    cmd = [kubeconform, "-strict", "-verbose", "-output", "json", "-kubernetes-version", kube_version.lstrip("v")]
    if workers is not None:
        cmd += ["-n", str(workers)]
    for loc in schemastore.schema_locations(schema_root, kube_version, crd_root):
        cmd += ["-schema-location", loc]
    return cmd


def _run_tool(cmd: list[str]) -> "tools.Completed":
    return tools.run("kubeconform", cmd, KUBECONFORM_TIMEOUT, env={"GOGC": KUBECONFORM_GOGC, **os.environ})


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # pragma: no cover - not Linux
        return os.cpu_count() or 1


_STATUSES = ("statusValid", "statusInvalid", "statusError")


def _write_batches(checkable: list[Manifest], texts: list[str], tmpdir: Path) -> list[tuple]:
    """Write the objects for kubeconform in as few files as can be told apart, and return each
    object's key: kubeconform reports a file's objects in any order, naming each by file, kind,
    apiVersion and name, so a file holds at most one object of each (file, kind, apiVersion, name).
    An object kubeconform might name otherwise (a name that is not text, a List, which it expands)
    gets a file of its own, and the key (file,). One file per object cost a millisecond an object."""
    keys: list[tuple] = []
    batches: list[list[str]] = []
    seen: dict[tuple, int] = {}   # (kind, apiVersion, name) -> objects of it so far: the next free batch
    singles: list[tuple[int, str]] = []
    for i, m in enumerate(checkable):
        name, kind, version = m.metadata.get("name"), m.doc.get("kind"), m.doc.get("apiVersion")
        text = texts[i]
        if not all(isinstance(v, str) for v in (name, kind, version)) or kind.endswith("List"):
            singles.append((i, text))
            keys.append((i,))
            continue
        n = seen.get((kind, version, name), 0)
        seen[(kind, version, name)] = n + 1
        if n == len(batches):
            batches.append([])
        batches[n].append(text)
        keys.append((n, kind, version, name))
    # batch n is file n; the singles come after them
    for n, docs in enumerate(batches):
        (tmpdir / f"{n}.json").write_text("\n---\n".join(docs))
    names = {i: str(tmpdir / f"{len(batches) + j}.json") for j, (i, _) in enumerate(singles)}
    for j, (i, text) in enumerate(singles):
        Path(names[i]).write_text(text)
    return [(names[k[0]],) if len(k) == 1 else (str(tmpdir / f"{k[0]}.json"),) + k[1:] for k in keys]


def _kubeconform_results(proc: tools.Completed, keys: list[tuple], empty: set[str] | None = None) -> list[dict]:
    """kubeconform's result for each object, in order (``keys`` from ``_write_batches``);
    ``ToolFailed`` unless every object sent got exactly one result and the exit status agrees
    with them (0: all valid, 1: some not). ``empty``: files that got nothing, each of which
    kubeconform reports once, with no status."""
    if proc.returncode not in (0, 1):
        raise tools.ToolFailed("kubeconform", tools.describe_exit(proc.returncode), proc.stderr)
    expected = set(keys)
    singles = {k[0] for k in keys if len(k) == 1}
    try:
        resources = json.loads(proc.stdout.decode("utf-8"))["resources"]
        found: dict[tuple, dict] = {}
        for r in resources:
            name, status = r["filename"], r["status"]
            if empty and name in empty and status == "" and (name,) not in found:
                found[(name,)] = r
                continue
            key = (name,) if name in singles else (name, r["kind"], r["version"], r["name"])
            if key not in expected or key in found or status not in _STATUSES:
                raise ValueError(f"unexpected result {json.dumps(r)[:200]}")
            found[key] = r
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise tools.ToolFailed("kubeconform", f"{tools.describe_exit(proc.returncode)} with output that is not "
                               f"its JSON report ({str(e)[:200]})", proc.stderr) from None
    missing = [k for k in keys if k not in found]
    if missing:
        raise tools.ToolFailed("kubeconform", f"{tools.describe_exit(proc.returncode)} without a result for "
                               f"{len(missing)} of the {len(keys)} objects sent to it", proc.stderr)
    unread = sorted(Path(name).name for name in empty or () if (name,) not in found)
    if unread:   # it did not read every file to its end
        raise tools.ToolFailed("kubeconform", f"{tools.describe_exit(proc.returncode)} without a result for "
                               f"the empty file{'s' * (len(unread) > 1)} {', '.join(unread)} sent to it", proc.stderr)
    all_valid = all(r["status"] in ("statusValid", "") for r in found.values())
    if all_valid != (proc.returncode == 0):
        raise tools.ToolFailed("kubeconform", f"{tools.describe_exit(proc.returncode)}, which contradicts its "
                               "results", proc.stderr)
    return [found[k] for k in keys]


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
        return _first_document((repo / rel).read_bytes()), []
    except YamlProblem as e:
        return None, [Finding(e.rule, Severity.ERROR, e.message, rel, e.line)]


# Many apps share a chart: its values.yaml is parsed, and its values.schema.json compiled, once per
# content, not once per app (read-only afterwards).
@lru_cache(maxsize=256)
def _first_document(raw: bytes) -> Document | None:
    docs = list(load_all(decode(raw)))
    return docs[0] if docs else None


@lru_cache(maxsize=32)
def _values_validator(repo: Path, chart: str, schema_text: str, checked: bool = False) -> tuple[Any, list, Any]:
    """(validator or None, unresolvable $refs, registry) of a chart's schema; built once per chart and text.
    ``checked``: an earlier run found the schema valid and its $refs resolvable (``_ValuesMemo``).
    Raises json.JSONDecodeError, jsonschema.SchemaError."""
    import jsonschema
    schema = json.loads(schema_text)
    # $refs resolve inside the chart only: never the network, never a file elsewhere
    registry = confine.chart_registry(repo, chart)
    bad_refs = [] if checked else confine.unresolvable_refs(schema, registry)
    if bad_refs:
        return None, bad_refs, registry
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    if not checked:
        validator_cls.check_schema(schema)
    return validator_cls(schema, registry=registry), [], registry


def _known_paths(values: Any, prefix: tuple = ()) -> set[tuple]:
    out = {prefix}
    if isinstance(values, dict) and values:
        for k, v in values.items():
            out |= _known_paths(v, prefix + (str(k),))
    return out


def _edits(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _typo_of(key: str, siblings: list[str]) -> str | None:
    """The sibling ``key`` is a typo of: the same key but for case and ``_ - .``, or at most two
    edits away (one for keys of up to four characters). A new key that merely resembles a
    sibling (``FEATURE_TODO`` next to ``FEATURE_CHAT``) gets no "did you mean"."""
    def norm(k: str) -> str:
        return re.sub(r"[_\-.]", "", k.lower())
    budget = 1 if len(key) <= 4 else 2
    best = min(siblings, key=lambda s: (norm(s) != norm(key), _edits(key, s)), default=None)
    if best is not None and (norm(best) == norm(key) or _edits(key, best) <= budget):
        return best
    return None


def _resolve(schema: Any, root: dict) -> Any:
    """A schema node with its local ``$ref`` (``#/definitions/x``) followed, a bounded number of times."""
    for _ in range(16):
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        schema = node
    return schema


def _schema_child(schema: Any, key: str, root: dict) -> tuple[bool, Any]:
    """(whether the schema declares or opens ``key``, the schema below it). A map is open when it
    says so (``additionalProperties`` true or a schema, or a matching ``patternProperties``); an
    absent ``additionalProperties`` does not open it: a typo would pass unseen."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return False, None
    props = schema.get("properties")
    if isinstance(props, dict) and key in props:
        return True, props[key]
    patterns = schema.get("patternProperties")
    for pattern, sub in (patterns.items() if isinstance(patterns, dict) else ()):
        try:
            if re.search(pattern, key):
                return True, sub
        except re.error:
            continue
    extra = schema.get("additionalProperties")
    if extra is True or isinstance(extra, dict):
        return True, extra if isinstance(extra, dict) else None
    return False, None


def unknown_paths(override: Any, chart: Any, schema: dict | None = None) -> list[tuple[tuple, list[str]]]:
    """(path, the chart's keys beside it) of every override key the chart knows neither from its
    values.yaml nor from its values.schema.json."""
    found: list[tuple[tuple, list[str]]] = []
    root = schema if isinstance(schema, dict) else {}

    def walk(o: Any, c: Any, s: Any, path: tuple) -> None:
        if not isinstance(o, dict) or not isinstance(c, dict) or not c:
            return  # an empty or non-map chart default accepts anything below it
        for k, v in o.items():
            if path == () and k == "global":
                continue
            declared, sub = _schema_child(s, str(k), root)
            if k not in c and not declared:
                found.append((path + (k,), [str(x) for x in c]))
            elif k in c:
                walk(v, c[k], sub, path + (k,))
    walk(override, chart, root, ())
    return found


def _unknown_keys(override: Any, chart: Any, rel: str, doc: Document, app: str,
                  schema: dict | None = None) -> list[Finding]:
    """Override keys the chart knows neither from its values.yaml nor from its values.schema.json."""
    found: list[Finding] = []
    for path, siblings in unknown_paths(override, chart, schema):
        hint = _typo_of(str(path[-1]), siblings)
        dotted = ".".join(map(str, path))
        found.append(Finding("values/unknown-key", Severity.ERROR,
                             f"{dotted!r} is not a value of the chart" + (f" (did you mean {hint!r}?)" if hint else ""),
                             rel, doc.line_of(path), None, app))
    return found


def _literal_secrets(data: Any, rel: str, doc: Document, app: str) -> list[Finding]:
    return [Finding("secrets/literal-value", Severity.ERROR,
                    f"{'.'.join(map(str, path))!r} holds a literal secret; reference an existing Secret instead",
                    rel, doc.line_of(path), None, app)
            for path, value in walk(data) if path and isinstance(path[-1], str) and looks_secret(path[-1], value)]


def check_values(repo: Path, req: RenderRequest, known: "ResultCache | None" = None) -> tuple[list[Finding], bool]:
    """Findings for the app's value files, and whether helm may still be run. ``known`` remembers
    jsonschema's verdicts (``_ValuesMemo``): values whose data did not change need no jsonschema."""
    findings: list[Finding] = []
    chart_doc, fs = _layer(repo, f"{req.chart}/values.yaml") if (repo / req.chart / "values.yaml").is_file() else (None, [])
    findings += fs
    chart_values = chart_doc.data if chart_doc and isinstance(chart_doc.data, dict) else {}
    schema_file = repo / req.chart / "values.schema.json"
    try:  # for values/unknown-key: the maps the schema opens; a broken schema is reported below
        values_schema = json.loads(schema_file.read_text(encoding="utf-8")) if schema_file.is_file() else None
    except (OSError, ValueError):
        values_schema = None
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
            findings += _unknown_keys(doc.data, chart_values, rel, doc, req.app, values_schema)
            findings += _literal_secrets(doc.data, rel, doc, req.app)
    if any(f.rule.startswith("yaml/") for f in findings):
        return findings, False
    if not schema_file.is_file():
        return findings, not any(f.rule == "values/unknown-key" for f in findings)
    memo = _ValuesMemo.of(repo, req, known)
    errors = memo.errors(chart_values, layers, req) if memo else None
    if errors is None:
        outcome = _schema_errors(repo, req, chart_values, layers, findings, memo)
        if isinstance(outcome, tuple):
            return outcome  # the schema or helm.values could not be used: said, and no render
        errors = outcome
    unknown_reported = any(f.rule == "values/unknown-key" for f in findings)
    for path, message, keyword in errors:
        if unknown_reported and keyword == "additionalProperties":
            continue  # already said, with a line and a "did you mean"
        rel, line = f"{req.chart}/values.yaml", chart_doc.line_of(path) if chart_doc else None
        for layer_rel, doc in reversed(layers):  # the last layer that sets the value is to blame
            if _has_path(doc.data, path):
                rel, line = layer_rel, doc.line_of(path)
                break
        dotted = ".".join(map(str, path)) or "(top level)"
        findings.append(Finding("values/schema", Severity.ERROR, f"{dotted}: {message}", rel, line, None, req.app))
    # Helm would refuse these values too (or silently drop an unknown key): the findings above say it better.
    blocking = ("values/schema", "values/unknown-key")
    return findings, not any(f.rule in blocking for f in findings)


def _merged(chart_values: Any, layers: list[tuple[str, Document]], req: RenderRequest) -> Any:
    """The values helm would merge (chart, value files, helm.values). Raises YamlProblem."""
    merged: Any = chart_values
    for _, doc in layers:
        merged = _merge(merged, doc.data)
    if req.values_yaml:
        extra = next(iter(load_all(req.values_yaml)), None)
        merged = _merge(merged, extra.data if extra else None)
    return merged or {}


def _schema_errors(repo: Path, req: RenderRequest, chart_values: Any, layers: list[tuple[str, Document]],
                   findings: list[Finding], memo: "_ValuesMemo | None"
                   ) -> list[tuple[tuple, str, str]] | tuple[list[Finding], bool]:
    """(path, message, keyword) of every error of the merged values against the chart's schema,
    sorted by path; or the run's answer when the schema or helm.values cannot be used."""
    import jsonschema  # here, not at the top: most runs take the values' verdicts from the caches
    import referencing.exceptions
    rel_schema = f"{req.chart}/values.schema.json"
    try:
        schema_text = (repo / rel_schema).read_text(encoding="utf-8")
        validator, bad_refs, _ = _values_validator(repo, req.chart, schema_text, memo.schema_ok() if memo else False)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return [Finding("values/schema", Severity.ERROR, f"values.schema.json is not valid JSON: {e}", rel_schema, getattr(e, "lineno", None), None, req.app)], False
    except jsonschema.SchemaError as e:
        return findings + [Finding("values/schema", Severity.ERROR, f"values.schema.json is not a valid JSON schema: "
                                   f"{e.message}", rel_schema, None, None, req.app)], False
    if bad_refs:
        return findings + [Finding("values/schema", Severity.ERROR, f"$ref {ref!r} in values.schema.json: {why}",
                                   rel_schema, confine.line_of_ref(schema_text, ref), None, req.app)
                           for ref, why in bad_refs], False
    if memo:
        memo.schema_passed()
    try:
        merged = _merged(chart_values, layers, req)
    except YamlProblem as e:
        origin = req.origin
        return [Finding(e.rule, Severity.ERROR, f"helm.values: {e.message}", origin.file if origin else None,
                        origin.line if origin else None, origin.ref if origin else None, req.app)], False
    try:
        errors = sorted(validator.iter_errors(merged), key=lambda e: [str(p) for p in e.absolute_path])
    except referencing.exceptions.Unresolvable as e:
        return findings + [Finding("values/schema", Severity.ERROR, f"values.schema.json: {confine.ref_problem(e)}",
                                   rel_schema, None, None, req.app)], False
    out = [(tuple(e.absolute_path), e.message, str(e.validator)) for e in errors]
    if memo:
        memo.store(out)
    return out


class _ValuesMemo(Record):
    """jsonschema's verdicts on one chart, remembered in the result cache: that its schema passed
    the metaschema and ``$ref`` checks (by the chart's files: the schema, every file a ``$ref`` can
    reach, and jsonschema's own files), and the errors of merged values against it (by those and
    the values as JSON text). A value file changed only in its comments or layout then costs no
    jsonschema at all. Values JSON cannot carry exactly (a non-string key, a date) are not memoised."""
    known: "ResultCache"
    schema_key: str
    values_key: str | None

    def __init__(self, known: "ResultCache", schema_key: str, values_key: str | None = None) -> None:
        self.known = known
        self.schema_key = schema_key
        self.values_key = values_key

    @classmethod
    def of(cls, repo: Path, req: RenderRequest, known: "ResultCache | None") -> "_ValuesMemo | None":
        if known is None or not known.renders.enabled:
            return None
        return cls(known, known.schema_checked_key(known.renders.chart_digest(repo, req.chart), jsonschema_stamp()))

    def errors(self, chart_values: Any, layers: list[tuple[str, Document]], req: RenderRequest
               ) -> list[tuple[tuple, str, str]] | None:
        """The remembered errors of these values, or None (then jsonschema checks them)."""
        try:
            merged = _merged(chart_values, layers, req)
        except YamlProblem:
            return None  # reported by the check itself, in its order
        try:
            text = json.dumps(merged)  # refuses a cycle (ValueError) before the walk below
        except (ValueError, TypeError, RecursionError):
            return None
        if not _plain_json(merged):
            return None
        self.values_key = self.known.values_key(self.schema_key, text)
        return self.known.get_values_errors(self.values_key)

    def schema_ok(self) -> bool:
        return self.known.schema_checked(self.schema_key)

    def schema_passed(self) -> None:
        if not self.schema_ok():
            self.known.put_schema_checked(self.schema_key)

    def store(self, errors: list[tuple[tuple, str, str]]) -> None:
        if self.values_key is not None:
            self.known.put_values_errors(self.values_key, errors)


#: the packages whose files decide a values verdict: jsonschema, referencing ($ref resolution) and
#: jsonschema_specifications (the metaschemas, as JSON files under its ``schemas/``)
_VERDICT_PACKAGES = ("jsonschema", "referencing", "jsonschema_specifications")


@lru_cache(maxsize=1)
def jsonschema_stamp() -> list:
    """The installed files of jsonschema and the packages it decides with, by path and stamp,
    without importing them (a reinstall or another version changes them)."""
    import importlib.util
    from .resultcache import file_stamp
    out: list = []
    for name in _VERDICT_PACKAGES:
        spec = importlib.util.find_spec(name)
        if not spec or not spec.origin:
            out.append([name, "missing"])
            continue
        root = Path(spec.origin).parent
        data = sorted(p for p in (root / "schemas").rglob("*") if p.is_file())
        out.append([name, *(file_stamp(p) for p in [*sorted(root.glob("*.py")), *data])])
    return out


def _plain_json(value: Any) -> bool:
    """Whether ``json.dumps(value)`` tells ``value`` apart from every other value: string keys,
    JSON's own scalars, finite numbers (a bounded walk: value files are bounded in size)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                return False
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, float):
            if not math.isfinite(v):
                return False
        elif not (v is None or isinstance(v, (str, int))):  # bool is an int
            return False
    return True


def _has_path(data: Any, path: tuple) -> bool:
    for p in path:
        if isinstance(data, dict) and p in data:
            data = data[p]
        elif isinstance(data, list) and isinstance(p, int) and p < len(data):
            data = data[p]
        else:
            return False
    return True
