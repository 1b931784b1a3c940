"""argocd/ (projects): what an AppProject permits, checked the way Argo CD v3.5.1 checks it at sync time.

Semantics follow pkg/apis/application/v1alpha1/app_project_types.go (IsSourcePermitted,
IsDestinationPermitted / isDestinationMatched, IsGroupKindNamePermitted) and types.go
(isResourceInList, isNamedResourceInList): source repos are globs over Argo CD's normalized git
URL with ``/`` as separator, destinations are globs without separator, ``!pattern`` denies, and
kinds/groups match like Go's filepath.Match. A project not in the repo exists only when the cluster
facts declare it (clusters/<name>/cluster.yaml ``existingProjects``), except ``default``, which Argo CD
always creates (source ``*``, destination ``*``, every kind).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

from ..findings import Problem, Severity
from ..model import CLUSTER_SCOPED, Manifest
from .base import Context, Rule

CATEGORY = "argocd"

IN_CLUSTER = ("https://kubernetes.default.svc", "in-cluster")
#: Argo CD's built-in project, as it creates it when missing.
DEFAULT_PROJECT = {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*", "name": "*"}],
                   "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}


# --- Argo CD's matching -----------------------------------------------------------------------

@lru_cache(maxsize=1024)
def _glob_regex(pattern: str, separator: str) -> re.Pattern:
    """gobwas/glob (Argo CD's util/glob): ``*`` any run without the separator, ``**`` any run,
    ``?`` one character (not the separator), ``[..]``/``[!..]`` classes, ``{a,b}`` alternatives."""
    sep = re.escape(separator) if separator else ""
    out, i, depth = "", 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                out, i = out + ".*", i + 2
                continue
            out += f"[^{sep}]*" if sep else ".*"
        elif c == "?":
            out += f"[^{sep}]" if sep else "."
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(c)
            else:
                body = pattern[i + 1:end]
                out += "[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]"
                i = end
        elif c == "{":
            out, depth = out + "(?:", depth + 1
        elif c == "}" and depth:
            out, depth = out + ")", depth - 1
        elif c == "," and depth:
            out += "|"
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    try:
        return re.compile(out + ")" * depth + r"\Z", re.S)
    except re.error:
        return re.compile(r"(?!)")  # Argo CD logs the bad pattern and matches nothing


def glob_match(pattern: str, value: str, separator: str = "", negation: bool = True) -> bool:
    """Argo CD's globMatch: a ``!`` pattern matches what the rest does not match."""
    if negation and pattern.startswith("!"):
        return not _glob_regex(pattern[1:], separator).match(value)
    return pattern == "*" or bool(_glob_regex(pattern, separator).match(value))


def normalize_git_url(url: str) -> str:
    """git.NormalizeGitURL: lower case, scp-like ``git@host:path`` as ``git@host/path``, no ``.git``."""
    u = url.strip().lower()
    if "://" not in u and re.match(r"^[\w.-]+@[\w.-]+:", u):
        u = u.replace(":", "/", 1)
    u = u.removeprefix("ssh://")
    return u.removesuffix(".git")


def source_permitted(project: dict, repo_url: str) -> bool:
    src = normalize_git_url(repo_url)
    matched = False
    for pattern in project.get("sourceRepos") or []:
        pattern = str(pattern)
        norm = "!" + normalize_git_url(pattern[1:]) if pattern.startswith("!") else normalize_git_url(pattern)
        if glob_match(norm, src, "/"):
            matched = True
        elif norm.startswith("!"):
            return False
    return matched


def destination_permitted(project: dict, server: str, name: str, namespace: str) -> bool:
    matched = False
    for item in project.get("destinations") or []:
        if not isinstance(item, dict):
            continue
        i_name, i_server, i_ns = (str(item.get(k) or "") for k in ("name", "server", "namespace"))
        name_ok = bool(name) and glob_match(i_name, name)
        server_ok = bool(server) and glob_match(i_server, server)
        ns_ok = glob_match(i_ns, namespace)
        if (server_ok or name_ok) and ns_ok:
            matched = True
        elif (not name_ok and i_name.startswith("!")) or (not server_ok and i_server.startswith("!")) and ns_ok:
            return False
        elif not ns_ok and i_ns.startswith("!") and server_ok:
            return False
    return matched


def _in_list(group: str, kind: str, items: list, name: str | None = None) -> bool:
    for item in items:
        if not isinstance(item, dict):
            continue
        if glob_match(str(item.get("kind", "")), kind, "/", False) and glob_match(str(item.get("group", "")), group, "/", False):
            if name is None or not item.get("name") or glob_match(str(item["name"]), name, "/", False):
                return True
    return False


def kind_permitted(project: dict, group: str, kind: str, name: str, namespaced: bool) -> bool:
    """IsGroupKindNamePermitted. A missing namespaced allow list allows everything; an empty one
    (``[]``) nothing; a missing or empty cluster allow list allows no cluster-scoped kind."""
    if namespaced:
        allow, deny = project.get("namespaceResourceWhitelist"), project.get("namespaceResourceBlacklist") or []
        allowed = allow is None or (bool(allow) and _in_list(group, kind, allow))
        return allowed and not (deny and _in_list(group, kind, deny))
    allow, deny = project.get("clusterResourceWhitelist") or [], project.get("clusterResourceBlacklist") or []
    return bool(allow) and _in_list(group, kind, allow, name) and not (deny and _in_list(group, kind, deny, name))


# --- what the rules read ------------------------------------------------------------------------

def _is_app(m: Manifest) -> bool:
    return m.kind == "Application" and m.api_version.startswith("argoproj.io/")


def _spec(m: Manifest) -> dict:
    s = m.doc.get("spec")
    return s if isinstance(s, dict) else {}


def _project(ctx: Context, name: str) -> tuple[dict | None, Manifest | None]:
    """The project's spec and the object it comes from (None for a project only declared to exist)."""
    p = ctx.argo_object("AppProject", name)
    if p is not None:
        return _spec(p), p
    if name == "default":
        return DEFAULT_PROJECT, None
    if ctx.facts and name in ctx.facts.existing_projects:
        return {}, None  # exists in the cluster; its rules are unknown here, so nothing is checked
    return None, None


def _destination(app: Manifest) -> tuple[str, str, str]:
    d = _spec(app).get("destination") or {}
    server, name = str(d.get("server") or ""), str(d.get("name") or "")
    if server == IN_CLUSTER[0] and not name:
        name = IN_CLUSTER[1]
    elif name == IN_CLUSTER[1] and not server:
        server = IN_CLUSTER[0]
    return server, name, str(d.get("namespace") or "")


def _sources(app: Manifest) -> list[tuple[tuple, dict]]:
    spec = _spec(app)
    if isinstance(spec.get("sources"), list):
        return [(("spec", "sources", i), s) for i, s in enumerate(spec["sources"]) if isinstance(s, dict)]
    return [(("spec", "source"), spec["source"])] if isinstance(spec.get("source"), dict) else []


TRACKING = "argocd.argoproj.io/tracking-id"


def owner_app(m: Manifest) -> str | None:
    """The Application that renders ``m``: the one the validator rendered it for, else the one
    Argo CD's tracking annotation (``<app>:<group>/<kind>:<ns>/<name>``) names."""
    if m.app:
        return m.app
    tracking = m.annotations.get(TRACKING)
    return tracking.split(":", 1)[0] if isinstance(tracking, str) and ":" in tracking else None


def _owner(m: Manifest, ctx: Context) -> tuple[Manifest, dict, Manifest | None] | None:
    """For an object rendered by an Application: the Application, its project spec and object."""
    name = owner_app(m)
    app = ctx.argo_object("Application", name) if name else None
    if app is None or app is m:
        return None
    project, obj = _project(ctx, str(_spec(app).get("project") or ""))
    return (app, project, obj) if project else None


def _group(m: Manifest) -> str:
    return m.api_version.rpartition("/")[0] if "/" in m.api_version else ""


# --- the rules ----------------------------------------------------------------------------------

def check_project_exists(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if not _is_app(m):
        return
    name = str(_spec(m).get("project") or "")
    if not name:
        yield Problem("Application has no spec.project; Argo CD refuses it (use a project that permits it)",
                      ("spec",))
    elif _project(ctx, name)[0] is None:
        yield Problem(f"project {name!r} does not exist: no AppProject in the repo, and not declared in "
                      "existingProjects of the cluster facts; Argo CD refuses to sync (application references "
                      "project which does not exist)", ("spec", "project"))


def check_source(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if not _is_app(m):
        return
    name = str(_spec(m).get("project") or "")
    project, obj = _project(ctx, name)
    if not project:
        return
    for where, src in _sources(m):
        url = str(src.get("repoURL") or "")
        if url and not source_permitted(project, url):
            yield Problem(f"Application {m.name}: source {url} is not permitted in project {name!r} "
                          f"(sourceRepos {project.get('sourceRepos') or []}); Argo CD refuses the sync",
                          *_at(obj, ("spec", "sourceRepos", _culprit(project.get("sourceRepos"), "!")),
                               where + ("repoURL",)))


def _culprit(items: object, deny: str = "") -> int:
    """The list entry to point at: the first deny pattern, else the first entry."""
    items = items if isinstance(items, list) else []
    return next((i for i, p in enumerate(items) if deny and str(p).startswith(deny)), 0)


def _near_destination(project: dict, server: str, name: str) -> tuple:
    """The destinations entry (and field) closest to the app's: same cluster -> its namespace."""
    for i, item in enumerate(project.get("destinations") or []):
        if isinstance(item, dict) and ((server and glob_match(str(item.get("server") or ""), server))
                                       or (name and glob_match(str(item.get("name") or ""), name))):
            return i, "namespace"
    return 0, "server"


def _at(obj: Manifest | None, project_path: tuple, app_path: tuple) -> tuple:
    """(path, at): point at the project's list when it is a repo file (where such edits happen)."""
    return (project_path, obj) if obj is not None and obj.file else (app_path, None)


def check_destination(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if _is_app(m):
        name = str(_spec(m).get("project") or "")
        project, obj = _project(ctx, name)
        if not project:
            return
        server, cluster, namespace = _destination(m)
        if not destination_permitted(project, server, cluster, namespace):
            yield Problem(f"Application {m.name}: destination {server or cluster} namespace {namespace!r} is not "
                          f"permitted in project {name!r}; Argo CD refuses the sync (application destination "
                          "... is not permitted in project)",
                          *_at(obj, ("spec", "destinations", *_near_destination(project, server, cluster)),
                               ("spec", "destination")))
        return
    owner = _owner(m, ctx)
    if owner is None or m.kind in CLUSTER_SCOPED or not m.namespace:
        return
    app, project, obj = owner
    server, cluster, namespace = _destination(app)
    if m.namespace != namespace and "destinations" in project and not destination_permitted(project, server, cluster, m.namespace):
        yield Problem(f"{m.kind} {m.name} of Application {app.name} goes to namespace {m.namespace!r}, which project "
                      f"{_spec(app).get('project')!r} does not permit as a destination; Argo CD refuses the sync",
                      ("metadata", "namespace"))


def check_cluster_kind(m: Manifest, ctx: Context) -> Iterable[Problem]:
    owner = _owner(m, ctx)
    if owner is None or m.kind not in CLUSTER_SCOPED:
        return
    app, project, obj = owner
    if not kind_permitted(project, _group(m), m.kind, m.name, namespaced=False):
        yield Problem(f"cluster-scoped {m.kind} {m.name} of Application {app.name} is not permitted in project "
                      f"{_spec(app).get('project')!r} (clusterResourceWhitelist/Blacklist); Argo CD refuses the sync "
                      f"(resource {_group(m)}:{m.kind} is not permitted in project)", ("kind",))


def check_namespaced_kind(m: Manifest, ctx: Context) -> Iterable[Problem]:
    owner = _owner(m, ctx)
    if owner is None or m.kind in CLUSTER_SCOPED:
        return
    app, project, obj = owner
    if not kind_permitted(project, _group(m), m.kind, m.name, namespaced=True):
        yield Problem(f"{m.kind} {m.name} of Application {app.name} is not permitted in project "
                      f"{_spec(app).get('project')!r} (namespaceResourceWhitelist/Blacklist); Argo CD refuses the "
                      f"sync (resource {_group(m)}:{m.kind} is not permitted in project)", ("kind",))


def _sync_options(m: Manifest) -> list:
    opts = (_spec(m).get("syncPolicy") or {}).get("syncOptions")
    return opts if isinstance(opts, list) else []


def check_create_namespace(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if not _is_app(m):
        return
    options = _sync_options(m)
    if "CreateNamespace=true" not in options:
        return
    name = str(_spec(m).get("project") or "")
    project, obj = _project(ctx, name)
    if not project:
        return
    namespace = _destination(m)[2]
    if not kind_permitted(project, "", "Namespace", namespace, namespaced=False):
        i = options.index("CreateNamespace=true")
        yield Problem(f"Application {m.name} has CreateNamespace=true, but project {name!r} does not permit the "
                      "cluster-scoped kind Namespace (clusterResourceWhitelist); Argo CD fails to create "
                      f"namespace {namespace!r}",
                      *_at(obj, ("spec", "clusterResourceWhitelist", 0, "kind"), ("spec", "syncPolicy", "syncOptions", i)))


def check_app_of_apps_project(m: Manifest, ctx: Context) -> Iterable[Problem]:
    """Children of an app-of-apps: not `default` (unless allowed), and within the cluster's list."""
    parent = owner_app(m)
    if not _is_app(m) or not parent or parent == m.name:
        return
    name = str(_spec(m).get("project") or "")
    allowed = ctx.facts.app_of_apps_projects if ctx.facts else None
    if allowed is None and name == "default":
        yield Problem(f"Application {m.name}, rendered by the app-of-apps {parent}, is in project 'default' "
                      "(every source, destination and cluster-scoped kind): a chart change could grant itself "
                      "cluster-admin. Give it a least-privilege project, or list 'default' in appOfAppsProjects "
                      "of the cluster facts", ("spec", "project"))
    elif allowed is not None and name not in allowed:
        yield Problem(f"Application {m.name}, rendered by the app-of-apps {parent}, is in project {name!r}, which "
                      f"the cluster facts do not allow for app-of-apps children (appOfAppsProjects: "
                      f"{sorted(allowed)})", ("spec", "project"))


# --- documentation ------------------------------------------------------------------------------

_PROJECT = """apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: web, namespace: argocd}
spec:
  sourceRepos: [%s]
  destinations: [{server: "https://kubernetes.default.svc", namespace: %s}]%s
---
"""
_APP = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web, namespace: argocd}
spec:
  project: %s
  source: {repoURL: "https://git.example/repo.git", path: apps/web, targetRevision: main}
  destination: {server: "https://kubernetes.default.svc", namespace: web}%s
"""
_REPO = '"https://git.example/*.git"'
_WHY_CODE = ("Argo CD's code: pkg/apis/application/v1alpha1/app_project_types.go in argoproj/argo-cd v3.5.1 "
             "(%s). ")


_TRACKED = "annotations: {argocd.argoproj.io/tracking-id: '%s:%s'}"
_CHILD = _APP.replace("metadata: {name: web, namespace: argocd}", "metadata: {name: web, namespace: argocd, "
                      + _TRACKED % ("root", "argoproj.io/Application:argocd/web") + "}") % ("%s", "")


def _ex(sources: str = _REPO, ns: str = "web", extra: str = "", project: str = "web", app_extra: str = "") -> str:
    return _PROJECT % (sources, ns, extra) + _APP % (project, app_extra)


_CRB = ("\n---\n# rendered by apps/web\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
        "metadata: {name: web-admin, " + _TRACKED % ("web", "rbac.authorization.k8s.io/ClusterRoleBinding:/web-admin")
        + "}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}\n"
        "subjects: [{kind: ServiceAccount, name: web, namespace: web}]\n")
_CREATE_NS = "\n  syncPolicy: {syncOptions: [CreateNamespace=true]}"
_NS_ALLOWED = "\n  clusterResourceWhitelist: [{group: '', kind: Namespace}]"

RULES = [
    Rule("argocd/project-missing", Severity.ERROR,
         "an Application whose project is neither in the repo nor declared as existing in the cluster",
         "Argo CD refuses to reconcile an Application whose AppProject does not exist (`application references "
         "project ... which does not exist`). Projects created outside this repository are declared in "
         "`existingProjects` of clusters/<name>/cluster.yaml; `default` always exists.",
         _APP % ("webb", ""), _ex(), check_project_exists),
    Rule("argocd/project-source", Severity.ERROR,
         "a source repoURL the Application's project does not permit (sourceRepos, with `!` negation)",
         _WHY_CODE % "IsSourcePermitted" + "Both URLs are normalized like git.NormalizeGitURL (case, `.git`, "
         "scp-like SSH) and matched as globs with `/` as separator; a `!pattern` that does not match refuses. "
         "The sync fails with `application repo ... is not permitted in project`.",
         _ex(sources='"https://git.example/other.git"'), _ex(), check_source),
    Rule("argocd/project-destination", Severity.ERROR,
         "a destination (server or name, namespace) the project does not permit, for the Application or "
         "any namespaced object it renders",
         _WHY_CODE % "IsDestinationPermitted, isDestinationMatched" + "Server, name and namespace are globs, "
         "`!` denies; every namespaced resource is checked against the destinations too (IsResourcePermitted). "
         "The sync fails with `application destination ... is not permitted in project`.",
         _ex(ns="web-staging"), _ex(), check_destination),
    Rule("argocd/project-cluster-resource", Severity.ERROR,
         "a cluster-scoped kind (ClusterRoleBinding, Namespace, ...) not in the project's clusterResourceWhitelist, "
         "or in its blacklist",
         _WHY_CODE % "IsGroupKindNamePermitted; isNamedResourceInList in types.go" + "A project without a "
         "cluster allow list permits no cluster-scoped kind at all; group and kind match like filepath.Match. "
         "A chart that adds a ClusterRoleBinding to a least-privilege project fails its sync instead of "
         "granting itself rights.",
         _ex() + _CRB,
         _ex(extra="\n  clusterResourceWhitelist: [{group: rbac.authorization.k8s.io, kind: ClusterRoleBinding}]") + _CRB,
         check_cluster_kind),
    Rule("argocd/project-namespaced-resource", Severity.ERROR,
         "a namespaced kind the project's namespaceResourceWhitelist leaves out or its blacklist names",
         _WHY_CODE % "IsGroupKindNamePermitted; isResourceInList in types.go" + "No allow list permits every "
         "namespaced kind, an empty one none; the deny list wins over the allow list.",
         _ex(extra="\n  namespaceResourceBlacklist: [{group: '', kind: Secret}]")
         + "---\n# rendered by apps/web\napiVersion: v1\nkind: Secret\nmetadata: {name: web, namespace: web, "
         + _TRACKED % ("web", "/Secret:web/web") + "}\n",
         _ex() + "---\n# rendered by apps/web\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: web, namespace: web, "
         + _TRACKED % ("web", "/ConfigMap:web/web") + "}\n",
         check_namespaced_kind),
    Rule("argocd/project-create-namespace", Severity.ERROR,
         "`CreateNamespace=true` in an Application whose project does not permit the kind Namespace",
         "With CreateNamespace=true Argo CD creates the destination namespace itself, as a cluster-scoped "
         "resource of the project; without `{group: '', kind: Namespace}` in clusterResourceWhitelist the "
         "sync fails before any resource is applied.",
         _ex(app_extra=_CREATE_NS), _ex(extra=_NS_ALLOWED, app_extra=_CREATE_NS), check_create_namespace),
    Rule("argocd/app-of-apps-project", Severity.ERROR,
         "an Application rendered by an app-of-apps in project `default`, or in a project the cluster does not "
         "allow for app-of-apps children (`appOfAppsProjects`)",
         "Whoever can change the app-of-apps' values can then deploy anything anywhere: `default` permits every "
         "source, destination and cluster-scoped kind, so one chart change grants itself cluster-admin. Argo CD's "
         "cluster bootstrapping docs call the app-of-apps an admin-only tool for this reason. "
         "clusters/<name>/cluster.yaml `appOfAppsProjects` lists the projects children may use (listing `default` "
         "allows it).",
         "# rendered by the app-of-apps `root`\n" + _CHILD % "default",
         _PROJECT % (_REPO, "web", "") + "# rendered by the app-of-apps `root`\n" + _CHILD % "web",
         check_app_of_apps_project),
]
