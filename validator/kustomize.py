"""Stage 2, render (Kustomize): build a kustomization exactly as Argo CD v3.5.1's repo server does.

Argo CD (util/kustomize/kustomize.go, Build) applies the Application's ``spec.source.kustomize``
fields with ``kustomize edit`` in its working copy (namePrefix, nameSuffix, images, replicas,
commonLabels, commonAnnotations, namespace, components; ``patches`` are appended to the
kustomization), then runs ``kustomize build <path>`` plus ``kustomize.buildOptions`` from
argocd-cm (none by default: the load restrictor stays LoadRestrictionsRootOnly).

We do the same in a temporary copy of the kustomization tree, never in the repository, so:
- kustomize sees only repo files (a symlink leaving the repo is a finding, not followed);
- a remote resource (URL) is never fetched: it is a finding, except the pinned Argo CD release
  manifest, which `make setup` keeps offline (.tools/argocd/<version>/) and is read from there;
- the network is closed to kustomize anyway (proxy to a closed port, no git protocol allowed).
A kustomize crash, signal, timeout or output that is not YAML stops the run (exit 2); an error
in the user's kustomization (kustomize exits 1 with ``Error: ...``) is a finding on it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from . import rendercache, tools
from .findings import Finding, Severity
from .model import CLUSTER_SCOPED, Manifest
from .discover import read_yaml
from .record import Record
from .render import envsubst, inside
from .yamlio import Document, yaml

try:  # the C parser: Argo CD's own install is ~2 MB of YAML
    from yaml import CSafeLoader as _FastLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _FastLoader  # type: ignore[assignment]

KUSTOMIZE_TIMEOUT = 60
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
#: Bounds on what one build may copy: kustomization directories, files, bytes.
MAX_KUSTOMIZATIONS = 100
MAX_FILES = 2000
MAX_BYTES = 64 * 2**20
ORIGIN = "config.kubernetes.io/origin"
#: Argo CD's release manifests, which `make setup` copies to .tools/argocd/<version>/.
ARGOCD_RELEASE = re.compile(r"^https://raw\.githubusercontent\.com/argoproj/argo-cd/(v[0-9][^/]*)/manifests/([\w.-]+\.yaml)$")
#: spec.source.kustomize fields applied as Argo CD does; the others are reported as not applied.
APPLIED = {"namePrefix", "nameSuffix", "images", "replicas", "commonLabels", "commonAnnotations", "namespace",
           "patches", "components", "ignoreMissingComponents", "forceCommonLabels", "forceCommonAnnotations",
           "labelWithoutSelector", "labelIncludeTemplates", "commonAnnotationsEnvsubst"}
#: No network for kustomize: HTTP(S) through a closed port, git with no protocol allowed.
_OFFLINE_ENV = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "",
                "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": "",
                "GIT_ALLOW_PROTOCOL": "none", "GIT_TERMINAL_PROMPT": "0"}


def kustomization_file(directory: Path) -> Path | None:
    return next((directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()), None)


def is_remote(entry: str) -> bool:
    """What kustomize would fetch: URLs, scp-like git addresses, host/org/repo forms."""
    return "://" in entry or entry.startswith(("git@", "github.com/", "gitlab.com/", "bitbucket.org/"))


class KustomizeRequest(Record):
    app: str
    path: str                         # repo-relative kustomization directory
    namespace: str                    # destination namespace, for namespaced objects without one
    options: dict                     # spec.source.kustomize
    env: dict[str, str]               # ARGOCD_APP_* for envsubst
    build_options: tuple[str, ...]
    cluster: str | None
    origin: Manifest | None           # the Application (None for the cluster's Argo CD install)
    where: tuple                      # the source's path inside the Application
    argocd_dir: Path | None           # pinned Argo CD release manifests (.tools/argocd)

    def __init__(self, app: str, path: str, namespace: str, options: dict | None = None,
                 env: dict[str, str] | None = None, build_options: tuple[str, ...] = (), cluster: str | None = None,
                 origin: Manifest | None = None, where: tuple = (), argocd_dir: Path | None = None) -> None:
        self.app = app
        self.path = path
        self.namespace = namespace
        self.options = {} if options is None else options
        self.env = {} if env is None else env
        self.build_options = build_options
        self.cluster = cluster
        self.origin = origin
        self.where = where
        self.argocd_dir = argocd_dir


class Rendered(Record):
    request: KustomizeRequest
    manifests: list[Manifest]
    findings: list[Finding]
    cached: bool
    paths: set[str]                   # repo files the build read

    def __init__(self, request: KustomizeRequest, manifests: list[Manifest], findings: list[Finding], cached: bool,
                 paths: set[str] | None = None) -> None:
        self.request = request
        self.manifests = manifests
        self.findings = findings
        self.cached = cached
        self.paths = set() if paths is None else paths


class _Tree(Record):
    """The kustomization directories a build reaches, and how to make them buildable offline."""
    dirs: list[str]
    remote: dict[str, dict[str, Path]]                # kustomization file -> url -> local
    entry_lines: dict[str, tuple[str, int | None]]    # local name -> where it was named
    findings: list[Finding]
    ok: bool

    def __init__(self, dirs: list[str] | None = None, remote: dict[str, dict[str, Path]] | None = None,
                 entry_lines: dict[str, tuple[str, int | None]] | None = None, findings: list[Finding] | None = None,
                 ok: bool = True) -> None:
        self.dirs = [] if dirs is None else dirs
        self.remote = {} if remote is None else remote
        self.entry_lines = {} if entry_lines is None else entry_lines
        self.findings = [] if findings is None else findings
        self.ok = ok


def _read(repo: Path, rel: str) -> tuple[list[Document], Finding | None]:
    docs, findings = read_yaml(repo, rel)
    return [d for d in docs if d.data is not None], (findings[0] if findings else None)


def _walk(repo: Path, req: KustomizeRequest) -> _Tree:
    """Every kustomization the build reaches (resources, bases, components), checked for what
    would leave the repo or need the network."""
    tree = _Tree()
    queue = [req.path] + [posixpath.normpath(posixpath.join(req.path, str(c)))
                          for c in req.options.get("components") or [] if isinstance(c, str)]
    seen: set[str] = set()
    while queue:
        d = queue.pop(0)
        if d in seen:
            continue
        seen.add(d)
        if len(seen) > MAX_KUSTOMIZATIONS:
            tree.findings.append(_finding(req, "argocd/kustomize-failed",
                                          f"more than {MAX_KUSTOMIZATIONS} kustomizations reached from {req.path}"))
            tree.ok = False
            return tree
        kfile = kustomization_file(repo / d)
        if kfile is None:
            continue  # not a kustomization: kustomize reports it
        tree.dirs.append(d)
        rel = posixpath.join(d, kfile.name)
        docs, problem = _read(repo, rel)
        if problem:
            tree.findings.append(problem)
            tree.ok = False
            continue
        data = docs[0].data if docs and isinstance(docs[0].data, dict) else {}
        for key in ("resources", "bases", "components"):
            entries = data.get(key)
            for i, entry in enumerate(entries if isinstance(entries, list) else []):
                if not isinstance(entry, str):
                    continue
                line = docs[0].line_of((key, i))
                if is_remote(entry):
                    local = _pinned(entry, req.argocd_dir)
                    if local is not None and local.is_file():
                        tree.remote.setdefault(rel, {})[entry] = local
                        continue
                    if local is not None:
                        msg = (f"{entry} is Argo CD's release manifest, but {local} is not available offline: pin "
                               "ARGOCD_VERSION to that version in `versions` and run `make setup`")
                        sev = Severity.ERROR
                    else:
                        msg = (f"remote {key[:-1]} {entry!r} is not fetched (no network): "
                               f"{req.path} is not rendered or checked")
                        sev = Severity.WARNING
                    tree.findings.append(Finding("argocd/kustomize-remote", sev, msg, rel, line,
                                                 req.origin.ref if req.origin else None, req.app))
                    tree.ok = False
                    continue
                target = posixpath.normpath(posixpath.join(d, entry))
                if target.startswith("..") or target.startswith("/") or not inside(repo, repo / target):
                    tree.findings.append(Finding("argocd/outside-repo", Severity.ERROR,
                                                 f"{key[:-1]} {entry!r} resolves outside the repository", rel, line,
                                                 req.origin.ref if req.origin else None, req.app))
                    tree.ok = False
                elif (repo / target).is_dir():
                    queue.append(target)
    return tree


def _pinned(url: str, argocd_dir: Path | None) -> Path | None:
    m = ARGOCD_RELEASE.match(url)
    if not m or argocd_dir is None:
        return None
    return argocd_dir / m.group(1) / m.group(2)


def _finding(req: KustomizeRequest, rule: str, msg: str, sev: Severity = Severity.ERROR) -> Finding:
    o = req.origin
    if o is None:
        return Finding(rule, sev, msg, req.path, None, None, req.app)
    return Finding(rule, sev, msg, o.file, o.line_of(req.where), o.ref, req.app)


def _sources(repo: Path, req: KustomizeRequest, tree: _Tree) -> tuple[list[tuple[str, bytes]], list[Finding]]:
    """(repo-relative path, content) of each file of the reached kustomization directories, in
    order, and a finding for each symlink that leaves the repository (not copied)."""
    findings: list[Finding] = []
    out: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    size = 0
    for d in sorted(set(tree.dirs)):
        for root, dirnames, filenames in os.walk(repo / d):
            dirnames[:] = sorted(n for n in dirnames if n != ".git")
            for name in sorted(filenames):
                src = Path(root) / name
                rel = str(src.relative_to(repo))
                if rel in seen:  # a nested kustomization's directory, walked from its parent already
                    continue
                seen.add(rel)
                if not inside(repo, src):
                    findings.append(Finding("argocd/outside-repo", Severity.ERROR,
                                            f"{rel} is a symlink that leaves the repository; Argo CD refuses it",
                                            rel, None, None, req.app))
                    continue
                data = src.read_bytes()
                size += len(data)
                if len(out) + 1 > MAX_FILES or size > MAX_BYTES:
                    raise _TooLarge(f"{req.path}: the kustomization tree has more than {MAX_FILES} files "
                                    f"or {MAX_BYTES // 2**20} MiB")
                out.append((rel, data))
    return out, findings


class _TooLarge(Exception):
    pass


def _remotes(tree: _Tree) -> list[tuple[str, list[tuple[str, str, bytes]]]]:
    """(kustomization file, [(url, local name, content)]) for each pinned remote manifest it names,
    read from its offline copy; each local name is recorded in ``tree.entry_lines``."""
    out = []
    for kfile, urls in tree.remote.items():
        entries = []
        for i, (url, local) in enumerate(sorted(urls.items())):
            name = f".gitops-validate-remote-{i}.yaml"
            entries.append((url, name, local.read_bytes()))
            tree.entry_lines[posixpath.join(posixpath.dirname(kfile), name)] = (kfile, None)
        out.append((kfile, entries))
    return out


def _digest(files: list[tuple[str, bytes]], remotes: list[tuple[str, list[tuple[str, str, bytes]]]]) -> str:
    """Of everything the build reads: computed before anything is copied, so a cached build copies nothing."""
    digest = hashlib.sha256()
    for rel, data in files:
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    for _, entries in remotes:
        for url, _, blob in entries:
            digest.update(url.encode() + b"\0" + hashlib.sha256(blob).digest())
    return digest.hexdigest()


def _copy(files: list[tuple[str, bytes]], dest: Path) -> None:
    """The kustomization tree into ``dest`` (same relative paths)."""
    for rel, data in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)


def _prepare_top(dest: Path, req: KustomizeRequest, remotes: list[tuple[str, list[tuple[str, str, bytes]]]]) -> None:
    """Point remote entries at their offline copies, and ask for origin annotations (stripped again
    after the build) so each object can be traced back to its file."""
    for kfile, entries in remotes:
        k = dest / kfile
        data = yaml.safe_load(k.read_text(encoding="utf-8")) or {}
        for url, name, blob in entries:
            (k.parent / name).write_bytes(blob)
            for key in ("resources", "bases"):
                if isinstance(data.get(key), list):
                    data[key] = [name if e == url else e for e in data[key]]
        k.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    top = kustomization_file(dest / req.path)
    if top is not None:
        data = yaml.safe_load(top.read_text(encoding="utf-8")) or {}
        if isinstance(data, dict):
            meta = data.get("buildMetadata") if isinstance(data.get("buildMetadata"), list) else []
            data["buildMetadata"] = sorted(set(meta) | {"originAnnotations"})
            top.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _edits(req: KustomizeRequest) -> tuple[list[list[str]], list[str]]:
    """The ``kustomize edit`` commands Argo CD runs for spec.source.kustomize, and the fields
    we do not apply."""
    o, env = req.options, req.env
    cmds: list[list[str]] = []
    if o.get("namePrefix"):
        cmds.append(["edit", "set", "nameprefix", "--", str(o["namePrefix"])])
    if o.get("nameSuffix"):
        cmds.append(["edit", "set", "namesuffix", "--", str(o["nameSuffix"])])
    if o.get("images"):
        cmds.append(["edit", "set", "image", *(envsubst(str(i), env) for i in o["images"])])
    if o.get("replicas"):
        cmds.append(["edit", "set", "replicas",
                     *(f"{r.get('name')}={r.get('count')}" for r in o["replicas"] if isinstance(r, dict))])
    if isinstance(o.get("commonLabels"), dict) and o["commonLabels"]:
        flags = [f for f, key in (("--force", "forceCommonLabels"), ("--without-selector", "labelWithoutSelector"),
                                  ("--include-templates", "labelIncludeTemplates")) if o.get(key)]
        cmds.append(["edit", "add", "label", *flags,
                     *(f"{k}:{envsubst(str(v), env)}" for k, v in sorted(o["commonLabels"].items()))])
    if isinstance(o.get("commonAnnotations"), dict) and o["commonAnnotations"]:
        sub = bool(o.get("commonAnnotationsEnvsubst"))
        cmds.append(["edit", "add", "annotation", *(["--force"] if o.get("forceCommonAnnotations") else []),
                     *(f"{k}:{envsubst(str(v), env) if sub else v}" for k, v in sorted(o["commonAnnotations"].items()))])
    if o.get("namespace"):
        cmds.append(["edit", "set", "namespace", "--", str(o["namespace"])])
    return cmds, sorted(k for k in o if k not in APPLIED)


def _run(cmd: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """kustomize in its own process group (tools.run: timeout, deadline, signals stop it)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "XDG_CONFIG_HOME": str(home), **_OFFLINE_ENV}
    done = tools.run("kustomize", cmd, KUSTOMIZE_TIMEOUT, cwd=cwd, env=env)
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0 and not stderr.lstrip().startswith("Error:"):
        # a panic or another crash: not something the user can fix in the kustomization
        raise tools.ToolFailed("kustomize", f"{tools.describe_exit(done.returncode)} on `kustomize {' '.join(cmd[1:3])}`",
                               done.stderr)
    try:
        stdout = done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise tools.ToolFailed("kustomize", "printed what is not UTF-8 text", done.stderr) from None
    return subprocess.CompletedProcess(cmd, done.returncode, stdout, stderr)


def _patch_docs(repo: Path, d: str) -> dict[tuple[str, str], tuple[str, Document]]:
    """(kind, name) -> the patch file and document that changes such an object, for locations."""
    kfile = kustomization_file(repo / d)
    if kfile is None:
        return {}
    docs, _ = _read(repo, posixpath.join(d, kfile.name))
    data = docs[0].data if docs and isinstance(docs[0].data, dict) else {}
    files = [p.get("path") for p in data.get("patches") or [] if isinstance(p, dict) and not p.get("target")]
    files += [p for p in data.get("patchesStrategicMerge") or [] if isinstance(p, str)]
    out: dict[tuple[str, str], tuple[str, Document]] = {}
    for f in files:
        if not isinstance(f, str):
            continue
        rel = posixpath.normpath(posixpath.join(d, f))
        if not (repo / rel).is_file() or not inside(repo, repo / rel):
            continue
        pdocs, _ = _read(repo, rel)
        for pd in pdocs:
            if isinstance(pd.data, dict) and isinstance(pd.data.get("metadata"), dict):
                out[(str(pd.data.get("kind")), str(pd.data["metadata"].get("name")))] = (rel, pd)
    return out


class _Locator:
    """Where a built object comes from: a patch that changes it, else its resource file."""

    def __init__(self, repo: Path, req: KustomizeRequest, tree: _Tree):
        self.repo, self.req, self.tree = repo, req, tree
        self.patches: dict[tuple[str, str], tuple[str, Document]] = {}
        for d in tree.dirs:
            for k, v in _patch_docs(repo, d).items():
                self.patches.setdefault(k, v)
        self.files: dict[str, list[Document]] = {}

    def locate(self, doc: dict, origin: dict) -> tuple[str, int | None, Document | None]:
        meta = doc.get("metadata") or {}
        key = (str(doc.get("kind")), str(meta.get("name")))
        patch = self.patches.get(key) or next((v for (k, n), v in self.patches.items()
                                               if k == key[0] and n in key[1]), None)
        if patch:
            return patch[0], patch[1].line, patch[1]
        path = origin.get("path") if isinstance(origin, dict) else None
        if isinstance(origin, dict) and origin.get("configuredIn"):
            path = origin["configuredIn"]
        if not isinstance(path, str):
            return self._kustomization(), None, None
        rel = posixpath.normpath(posixpath.join(self.req.path, path))
        if rel in self.tree.entry_lines:  # an offline copy of a remote resource
            return self.tree.entry_lines[rel][0], None, None
        if not (self.repo / rel).is_file():
            return self._kustomization(), None, None
        if rel not in self.files:
            self.files[rel] = _read(self.repo, rel)[0]
        for d in self.files[rel]:
            dm = d.data.get("metadata") if isinstance(d.data, dict) else None
            if isinstance(dm, dict) and d.data.get("kind") == key[0] and str(dm.get("name")) in key[1]:
                return rel, d.line, d
        return rel, None, None

    def _kustomization(self) -> str:
        k = kustomization_file(self.repo / self.req.path)
        return posixpath.join(self.req.path, k.name if k else KUSTOMIZATION_FILES[0])


def cache_key(digest_hex: str, req: KustomizeRequest, kustomize: str) -> str:
    st = os.stat(kustomize)
    parts = [kustomize, st.st_size, st.st_mtime_ns, digest_hex, req.path, req.build_options,
             json.dumps(_edits(req)[0], sort_keys=True), json.dumps(req.options.get("patches"), sort_keys=True),
             req.options.get("components"), req.options.get("ignoreMissingComponents")]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def render(repo: Path, req: KustomizeRequest, kustomize: str, cache_dir: Path | None) -> Rendered:
    tree = _walk(repo, req)
    paths = {posixpath.join(d, (kustomization_file(repo / d) or Path(KUSTOMIZATION_FILES[0])).name) for d in tree.dirs}
    paths |= set(tree.dirs)
    findings = list(tree.findings)
    cmds, unapplied = _edits(req)
    if unapplied:
        findings.append(_finding(req, "argocd/kustomize-option-ignored",
                                 f"spec.source.kustomize {', '.join(unapplied)} not applied by the validator: "
                                 "the rendered objects may differ from Argo CD's", Severity.WARNING))
    if not tree.ok:
        return Rendered(req, [], findings, False, paths)
    try:
        files, fs = _sources(repo, req, tree)
    except _TooLarge as e:
        return Rendered(req, [], findings + [_finding(req, "argocd/kustomize-failed", str(e))], False, paths)
    findings += fs
    remotes = _remotes(tree)
    key = cache_key(_digest(files, remotes), req, kustomize) if cache_dir else None
    hit = cache_dir / f"{key}.kustomize.json" if key else None
    kept = _load_built(hit, req) if hit is not None else None
    if kept is not None:
        built, texts = kept
        return Rendered(req, _manifests(built, req, _Locator(repo, req, tree), texts), findings, True, paths)
    if hit is not None and hit.is_file():
        docs, cached = json.loads(hit.read_text(encoding="utf-8")), True
    else:
        with tempfile.TemporaryDirectory(prefix="gitops-validate-kustomize-") as tmp:
            work, home = Path(tmp) / "repo", Path(tmp) / "home"
            work.mkdir()
            home.mkdir()
            _copy(files, work)
            _prepare_top(work, req, remotes)
            out, err = _build(work, home, req, cmds, kustomize)
        if err is not None:
            return Rendered(req, [], findings + [err], False, paths)
        docs, cached = _documents(out, req), False
        if hit is not None:  # stored as JSON: Argo CD's own install is large, and JSON loads fast
            try:
                rendercache.write_atomic(cache_dir, hit, json.dumps(docs))
            except OSError:
                pass  # an unusable cache is no cache (the render cache says so once)
    built = _built(docs, req)
    if hit is not None:
        _store_built(hit, req, built)
    manifests = _manifests(built, req, _Locator(repo, req, tree))
    return Rendered(req, manifests, findings, cached, paths)


# The objects as built (the origin annotation taken off, the namespace set) are kept beside the
# build's output, under its key and the request: per object a line of JSON with its origin
# annotation, then a line with the object exactly as ``schema.as_json`` writes it. A warm run then
# parses each object once and need not write its JSON again for kubeconform's verdict key (Argo
# CD's install is 1.3 MB of JSON). A build with an object JSON cannot carry exactly (NaN) is not kept.
_BUILT = "gitops-validate kustomize built 1"


def _built_path(hit: Path, req: KustomizeRequest) -> Path:
    of = hashlib.sha256(json.dumps([_BUILT, req.namespace]).encode()).hexdigest()[:16]
    return hit.with_name(f"{hit.name.removesuffix('.kustomize.json')}-{of}.kustomize-built")


def _store_built(hit: Path, req: KustomizeRequest, built: list[tuple[Any, dict]]) -> None:
    from .schema import as_json  # the JSON kubeconform reads (schema imports the rules: not at import)
    lines = [_BUILT]
    for origin, doc in built:
        text = as_json(doc)
        if text is None:
            return
        lines += [json.dumps(origin), text]
    body = "\n".join(lines)
    path = _built_path(hit, req)
    try:
        rendercache.write_atomic(path.parent, path, body)
    except (OSError, ValueError):
        pass  # an unusable cache is no cache


def _load_built(hit: Path, req: KustomizeRequest) -> tuple[list[tuple[Any, dict]], list[str]] | None:
    """What ``_store_built`` kept: (origin, object) pairs and each object's JSON; None when absent
    or damaged (a miss: built again from the build's output)."""
    try:
        lines = _built_path(hit, req).read_text(encoding="utf-8").split("\n")
        if lines[0] != _BUILT or len(lines) % 2 != 1:
            return None
        built, texts = [], lines[2::2]
        for origin, text in zip(lines[1::2], texts):
            doc = json.loads(text)
            if not isinstance(doc, dict):
                return None
            built.append((json.loads(origin), doc))
        return built, texts
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _build(work: Path, home: Path, req: KustomizeRequest, cmds: list[list[str]], kustomize: str
           ) -> tuple[str, Finding | None]:
    app_dir = work / req.path
    o = req.options
    kfile = kustomization_file(app_dir)
    if kfile is not None and (o.get("patches") or o.get("components")):
        data = yaml.safe_load(kfile.read_text(encoding="utf-8")) or {}
        if o.get("patches"):
            data["patches"] = list(data.get("patches") or []) + list(o["patches"])
        comps = [c for c in o.get("components") or [] if isinstance(c, str)]
        if o.get("ignoreMissingComponents"):
            comps = [c for c in comps if (app_dir / c).exists()]
        if comps:
            data["components"] = list(data.get("components") or []) + comps
        kfile.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    for cmd in cmds:
        proc = _run([kustomize, *cmd], app_dir, home)
        if proc.returncode != 0:
            return "", _user_error(req, proc.stderr, work)
    proc = _run([kustomize, "build", req.path, *req.build_options], work, home)
    if proc.returncode != 0:
        return "", _user_error(req, proc.stderr, work)
    return proc.stdout, None


def _user_error(req: KustomizeRequest, stderr: str, work: Path) -> Finding:
    """kustomize refused the kustomization: a finding on its file (the error names the details)."""
    msg = stderr.strip().replace(str(work) + "/", "").replace(str(work), ".")
    msg = msg.removeprefix("Error:").strip()
    kfile = kustomization_file(work / req.path)
    rel = posixpath.join(req.path, kfile.name if kfile else KUSTOMIZATION_FILES[0])
    return Finding("argocd/kustomize-failed", Severity.ERROR, f"kustomize build {req.path} failed: {msg[-800:]}",
                   rel, None, req.origin.ref if req.origin else None, req.app)


def _documents(text: str, req: KustomizeRequest) -> list[dict]:
    """kustomize's output: machine-written YAML (no duplicate keys or aliases to guard against),
    so the fast loader; anything else than a stream of mappings means kustomize misbehaved."""
    try:
        docs = [d for d in yaml.load_all(text, Loader=_FastLoader) if d is not None]
    except yaml.YAMLError as e:
        raise tools.ToolFailed("kustomize", f"printed output that is not YAML ({req.path}): {e}") from None
    if not all(isinstance(d, dict) for d in docs):
        raise tools.ToolFailed("kustomize", f"printed a document that is not a mapping ({req.path})")
    return json.loads(json.dumps(docs, default=str))  # timestamps etc. as the strings JSON would carry


@functools.lru_cache(maxsize=256)
def _origin(text: str) -> Any:
    """An origin annotation, parsed once per text (the objects of one file share it; read, never changed).
    kustomize wrote it: the C parser, as for the objects (PyYAML's own reader costs a regex compile)."""
    return yaml.load(text, Loader=_FastLoader) or {}


def _built(docs: list[dict], req: KustomizeRequest) -> list[tuple[Any, dict]]:
    """(origin annotation, object) of each object as Argo CD applies it."""
    out = []
    for doc in docs:
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
        origin = annotations.pop(ORIGIN, "") or ""
        if not annotations:
            meta.pop("annotations", None)
        if meta and not meta.get("namespace") and doc.get("kind") not in CLUSTER_SCOPED and req.namespace:
            meta["namespace"] = req.namespace  # Argo CD applies it in the destination namespace
        out.append((origin, doc))
    return out


def _manifests(built: list[tuple[Any, dict]], req: KustomizeRequest, where: _Locator,
               texts: list[str] | None = None) -> list[Manifest]:
    out: list[Manifest] = []
    for i, (origin, doc) in enumerate(built):
        file, line, ydoc = where.locate(doc, _origin(origin))
        out.append(Manifest(doc, file, line, app=req.app, cluster=req.cluster, yaml=ydoc,
                            json_text=texts[i] if texts else None))
    return out
