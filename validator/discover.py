"""Stage 1, discover: the Argo CD objects in the repo, the clusters they deploy to, and what a
set of changed files affects.

Applications come from three places: YAML files in the repo, the output of an app-of-apps
chart (handled by the pipeline, which renders parents before children), and ApplicationSets
with list or git-directory generators, expanded here the way the ApplicationSet controller would.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

from . import confine, tools
from .config import Config, normalize_url
from .findings import Finding, Severity
from .model import ClusterFacts, Manifest, dig, mapping, no_objects, sequence
from .record import Record
from .render import inside
from .yamlio import YamlProblem, decode, load_all

ARGO_KINDS = ("Application", "ApplicationSet", "AppProject")
YAML_SUFFIXES = (".yaml", ".yml")
GIT_TIMEOUT = 30


def git(repo: Path, *args: str) -> bytes | None:
    """``git -C repo args`` stdout; None when git is not installed or ``repo`` is not a work tree
    (or has no commits: git's fatal status 128). Any other failure is ``ToolFailed``."""
    if shutil.which("git") is None:
        return None
    proc = tools.run("git", ["git", "-C", str(repo), *args], GIT_TIMEOUT)
    if proc.returncode == 128:
        return None
    if proc.returncode != 0:
        raise tools.ToolFailed("git", f"{tools.describe_exit(proc.returncode)} running git {args[0]}", proc.stderr)
    return proc.stdout


def repo_files(repo: Path) -> list[str]:
    """Files git would commit (tracked + untracked, not ignored); every file outside git."""
    out = git(repo, "ls-files", "-z", "-co", "--exclude-standard")
    if out is not None:
        return sorted({p for p in map(os.fsdecode, out.split(b"\0")) if p and (repo / p).is_file()})
    return sorted(str(p.relative_to(repo)) for p in repo.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(repo).parts))


def is_template(rel: str, chart_dirs: set[str]) -> bool:
    """Files under a chart's templates/ are Go templates, not YAML."""
    parts = Path(rel).parts
    for i, part in enumerate(parts):
        if part == "templates" and str(Path(*parts[:i])) in chart_dirs | ({"."} if i == 0 else set()):
            return True
    return False


def read_yaml(repo: Path, rel: str) -> tuple[list, list[Finding]]:
    """Documents of a repo file, or the finding that explains why there are none."""
    if confine.escapes(repo, rel):  # a symlink out of the repo: never read
        return [], [confine.symlink_finding(rel, "file")]
    try:
        text = decode((repo / rel).read_bytes())
        return list(load_all(text)), []
    except YamlProblem as e:
        return [], [Finding(e.rule, Severity.ERROR, e.message, rel, e.line)]
    except OSError as e:
        return [], [Finding("yaml/syntax", Severity.ERROR, f"cannot read: {e.strerror}", rel, None)]


def manifests_from_file(repo: Path, rel: str) -> tuple[list[Manifest], list[Finding]]:
    docs, findings = read_yaml(repo, rel)
    # an empty List is zero objects, as Argo CD reads it
    return [Manifest(d.data, rel, d.line, yaml=d) for d in docs if isinstance(d.data, dict) and not no_objects(d.data)], findings


class Discovery(Record):
    argo: list[Manifest]          # Application, ApplicationSet, AppProject objects read from files
    clusters: dict[str, ClusterFacts]
    chart_dirs: set[str]
    findings: list[Finding]

    def __init__(self, argo: list[Manifest], clusters: dict[str, ClusterFacts], chart_dirs: set[str],
                 findings: list[Finding]) -> None:
        self.argo = argo
        self.clusters = clusters
        self.chart_dirs = chart_dirs
        self.findings = findings


def may_hold_argo(raw: bytes) -> bool:
    """Whether a file's bytes may hold an Argo CD object. Its apiVersion starts with
    ``argoproj.io/``, and YAML can spell that without these bytes only through an escape in a
    double-quoted scalar (``"\\x61rgoproj.io/v1alpha1"``, a line joined with a trailing ``\\``):
    folding a line break always leaves a space or a newline, and tags, anchors and flow style
    keep the text. ``decode`` reads only UTF-8, where an ASCII word is its own bytes (a BOM
    before it changes nothing); a NUL (UTF-16, UTF-32) is parsed, to be refused as it always was."""
    return b"argoproj" in raw or b"\\" in raw or b"\0" in raw


def _may_hold_argo(repo: Path, rel: str, within: confine.Within) -> bool:
    """``may_hold_argo`` of a repo file; True when it cannot be read here (``read_yaml`` says why)."""
    if not within(rel):
        return True
    try:
        with open(os.path.join(repo, rel), "rb") as fh:  # no Path per file: every YAML file of the repo
            return may_hold_argo(fh.read())
    except OSError:
        return True


def discover(repo: Path, config: Config, exclude: Path | None = None, changed: set[str] | None = None) -> Discovery:
    """``exclude``: a folder never read as repo content (the render cache, should it be inside).
    ``changed``: given by a path-scoped run that reports nothing outside the changed files and the
    apps they affect; then a file is parsed only if it is one of them or may hold an Argo CD object
    (the findings of the others would not be reported)."""
    files = repo_files(repo)
    if exclude is not None and inside(repo, exclude):
        skip = str(exclude.resolve().relative_to(repo.resolve())) + "/"
        files = [f for f in files if not (f + "/").startswith(skip)]
    chart_dirs = {str(Path(f).parent) for f in files if Path(f).name == "Chart.yaml"}
    within = confine.Within(repo)
    argo: list[Manifest] = []
    findings: list[Finding] = []
    for rel in files:
        if not rel.endswith(YAML_SUFFIXES) or is_template(rel, chart_dirs) or rel.startswith(".github/"):
            continue
        if changed is not None and rel not in changed and not _may_hold_argo(repo, rel, within):
            continue
        ms, fs = manifests_from_file(repo, rel)
        findings += fs
        argo += [m for m in ms if m.kind in ARGO_KINDS and m.api_version.startswith("argoproj.io/")]
    clusters, cf = load_clusters(repo, config)
    return Discovery(argo, clusters, chart_dirs, findings + cf)


def load_clusters(repo: Path, config: Config) -> tuple[dict[str, ClusterFacts], list[Finding]]:
    """Cluster facts from ``clusters/<name>/cluster.yaml`` plus what the config adds."""
    facts: dict[str, ClusterFacts] = {}
    findings: list[Finding] = []
    dirs = {name: c.path for name, c in config.clusters.items()}
    for p in sorted(repo.glob("clusters/*/cluster.yaml")):
        dirs.setdefault(p.parent.name, f"clusters/{p.parent.name}")
    for name, d in sorted(dirs.items()):
        cf = ClusterFacts(name=name, directory=d)
        rel = f"{d}/cluster.yaml"
        if (repo / rel).is_file():
            docs, fs = read_yaml(repo, rel)
            findings += fs
            data = docs[0].data if docs and isinstance(docs[0].data, dict) else {}
            cf.kubernetes_version = str(data["kubernetesVersion"]) if data.get("kubernetesVersion") else None
            cf.capacity = mapping(data.get("capacity"))
            cf.capacity_lines = {str(k): docs[0].line_of(("capacity", k)) for k in cf.capacity}
            if isinstance(data.get("argocdInstall"), str):
                cf.argocd_install = data["argocdInstall"].strip("/") or "."
            cf.existing_projects = frozenset(map(str, data.get("existingProjects") or []))
            if isinstance(data.get("appOfAppsProjects"), list):
                cf.app_of_apps_projects = frozenset(map(str, data["appOfAppsProjects"]))
            _add_secrets(cf, data.get("externalSecrets"), docs[0] if docs else None)
        if name in config.clusters:
            _add_secrets(cf, config.clusters[name].external_secrets)
        facts[name] = cf
    return facts, findings


def _add_secrets(cf: ClusterFacts, entries: Any, doc: Any = None) -> None:
    """Declared external Secrets; with ``doc`` (cluster.yaml), the line of each entry and key."""
    for i, s in enumerate(sequence(entries)):
        if isinstance(s, dict) and s.get("name"):
            key = (str(s.get("namespace", "default")), str(s["name"]))
            cf.external_secrets[key] = cf.external_secrets.get(key, frozenset()) | frozenset(map(str, sequence(s.get("keys"))))
            if doc is not None:
                lines = cf.external_secret_lines.setdefault(key, {})
                lines.setdefault("", doc.line_of(("externalSecrets", i, "keys")) or doc.line_of(("externalSecrets", i)))
                for j, k in enumerate(sequence(s.get("keys"))):
                    lines.setdefault(str(k), doc.line_of(("externalSecrets", i, "keys", j)))


def cluster_of(paths: Iterable[str], clusters: dict[str, ClusterFacts]) -> str | None:
    """The cluster whose folder holds one of ``paths``; the only cluster when there is one."""
    for p in paths:
        for name, cf in clusters.items():
            if cf.directory and (p + "/").startswith(cf.directory.rstrip("/") + "/"):
                return name
    return next(iter(clusters)) if len(clusters) == 1 else None


def is_local_repo(url: str | None, config: Config) -> bool:
    if not url:
        return False
    if not config.repo_urls:
        return True  # nothing declared: every Git source is taken to be this repository
    if isinstance(url, str):
        return _declares(config.repo_urls, url)
    return normalize_url(url) in _declared(config.repo_urls)


@functools.lru_cache(maxsize=4096)
def _declares(urls: tuple[str, ...], url: str) -> bool:
    """Whether ``url`` normalised is one of ``urls``: every source of every app asks, most the same."""
    return normalize_url(url) in _declared(urls)


@functools.lru_cache(maxsize=16)
def _declared(urls: tuple[str, ...]) -> frozenset[str]:
    """The declared repoURLs normalised, once (every source of every app asks)."""
    return frozenset(map(normalize_url, urls))


def _edits(a: str, b: str, most: int) -> int:
    """Levenshtein distance of ``a`` and ``b``, or ``most + 1`` once it is known to exceed ``most``."""
    if abs(len(a) - len(b)) > most:
        return most + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) > most:
            return most + 1
        prev = cur
    return prev[-1]


#: A repoURL this close to a declared one (after normalisation) is this repository misspelt.
TYPO_EDITS = 3


def misspelt_repo_url(url: str | None, config: Config) -> str | None:
    """The declared repoURL that ``url`` misspells, if it is not one but within a few edits of one."""
    if not url or is_local_repo(url, config):
        return None
    norm = normalize_url(url)[:500]  # bounded work on absurd input
    for declared in config.repo_urls:
        if _edits(norm, normalize_url(declared), TYPO_EDITS) <= TYPO_EDITS:
            return declared
    return None


# --- ApplicationSets ------------------------------------------------------------------------

_FAST = re.compile(r"\{\{\s*([A-Za-z0-9_.\[\]-]+)\s*\}\}")
_GO = re.compile(r"\{\{\s*\.([A-Za-z0-9_.]+)\s*\}\}")


def _substitute(value: Any, params: dict[str, Any], go: bool) -> Any:
    if isinstance(value, str):
        pattern = _GO if go else _FAST
        def repl(m: re.Match) -> str:
            key = m.group(1)
            if go:  # .path.basename -> params["path"]["basename"]
                cur: Any = params
                for part in key.split("."):
                    cur = cur.get(part) if isinstance(cur, dict) else None
                return m.group(0) if cur is None else str(cur)
            return str(params[key]) if key in params else m.group(0)
        return pattern.sub(repl, value)
    if isinstance(value, dict):
        return {_substitute(k, params, go): _substitute(v, params, go) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params, go) for v in value]
    return value


def _git_directory_params(repo: Path, gen: dict) -> list[dict]:
    dirs = sorted({str(p.relative_to(repo)) for p in repo.glob("**/") if p.is_dir()
                   and ".git" not in p.relative_to(repo).parts})
    include, exclude = [], []
    for d in sequence(gen.get("directories")):
        if isinstance(d, dict):
            (exclude if d.get("exclude") else include).append(str(d.get("path", "")))
    out = []
    for d in dirs:
        if any(fnmatch.fnmatchcase(d, pat) for pat in include) and not any(fnmatch.fnmatchcase(d, pat) for pat in exclude):
            parts = d.split("/")
            base = parts[-1]
            out.append({"path": d, "path.basename": base, "path.basenameNormalized": re.sub(r"[^a-z0-9-]", "-", base.lower()),
                        **{f"path[{i}]": p for i, p in enumerate(parts)},
                        # goTemplate form
                        "_go": {"path": {"path": d, "basename": base, "segments": parts,
                                         "basenameNormalized": re.sub(r"[^a-z0-9-]", "-", base.lower())}}})
    return out


def expand_applicationset(appset: Manifest, repo: Path, config: Config) -> tuple[list[Manifest], list[Finding]]:
    """Applications an ApplicationSet with list / git-directory generators would create."""
    spec = appset.spec
    template = mapping(spec.get("template"))
    go = bool(spec.get("goTemplate"))
    params_list: list[dict] = []
    findings: list[Finding] = []
    for i, gen in enumerate(sequence(spec.get("generators"))):
        if not isinstance(gen, dict):
            continue
        if "list" in gen:
            for el in sequence(dig(gen, "list", "elements")):
                if isinstance(el, dict):
                    params_list.append({**el, "_go": el})
        elif "git" in gen and misspelt_repo_url(dig(gen, "git", "repoURL"), config):
            url = dig(gen, "git", "repoURL")
            findings.append(Finding("argocd/misspelt-repo-url", Severity.ERROR,
                                    f"git generator repoURL {url!r} is not a repository Argo CD knows (did you mean "
                                    f"{misspelt_repo_url(url, config)!r}?); the ApplicationSet generates nothing",
                                    appset.file, appset.line_of(("spec", "generators", i, "git", "repoURL")), appset.ref))
        elif "git" in gen and is_local_repo(dig(gen, "git", "repoURL"), config) and dig(gen, "git", "directories"):
            params_list += _git_directory_params(repo, gen["git"])
        else:
            kind = next(iter(gen), "?")
            findings.append(Finding("argocd/unsupported-source", Severity.WARNING,
                                    f"ApplicationSet generator {kind!r} is not expanded offline; its Applications are not checked",
                                    appset.file, appset.line_of(("spec", "generators", i)), appset.ref))
    apps = []
    for params in params_list:
        doc = _substitute(copy.deepcopy(template), params["_go"] if go else {k: v for k, v in params.items() if k != "_go"}, go)
        doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", **doc}
        doc.setdefault("metadata", {}).setdefault("namespace", appset.namespace or "argocd")
        apps.append(Manifest(doc, appset.file, appset.line, cluster=appset.cluster, yaml=None))
    return apps, findings
