"""capacity/: everything a cluster's workloads request, all at once, against what its nodes offer.

A per-cluster sum, not a per-object property, so these are cluster-level rules: they see every
object of one cluster (the apps, and Argo CD's own install in the ``argocd`` namespace once it is
rendered) and the ``capacity`` the cluster declares in ``clusters/<name>/cluster.yaml``::

    capacity: {cpu: "4", memory: 8Gi, pods: 110, nodes: 1}   # pods and nodes optional

What counts, per workload (pods × effective pod request, as the scheduler sees it):
- Deployment, ReplicaSet, StatefulSet: ``spec.replicas`` (1 when absent; an autoscaler's
  ``maxReplicas`` when a HorizontalPodAutoscaler targets it, since it may scale that far);
- DaemonSet: one pod per node (``capacity.nodes``, 1 on minikube);
- Job and CronJob: ``parallelism`` pods (1 when absent): they run alongside the services, at any time;
- a bare Pod: one; hooks Argo CD never runs (Helm test hooks, ``Skip``) count nothing;
- the rolling-update surge: a Deployment's ``maxSurge`` (25 % by default, rounded up; none with
  ``Recreate``), a DaemonSet's (0 by default). Argo CD syncs every app at once, so every surge is
  counted together: the budget must hold the moment all of them roll.
The effective pod request is Kubernetes': the containers plus native sidecars, or the largest
init container plus the sidecars if that is more; a container with a limit and no request
requests its limit.
"""

from __future__ import annotations

import math
from typing import Iterable

from ..findings import Severity
from ..model import Manifest, containers
from ..record import Record
from .base import ClusterProblem, Context, Rule
from .resources import parse_quantity

CATEGORY = "capacity"

RESOURCES = ("cpu", "memory")
#: Above this share of capacity, a warning: no room left for a rollout gone long, a debug pod, a spike.
HEADROOM = 0.8
#: A workload whose one pod takes at least this share of a resource is blamed for its request,
#: otherwise for its replica count (where the finding points).
LARGE_POD = 0.1

_REPLICATED = ("Deployment", "ReplicaSet", "StatefulSet")


class Row(Record):
    """What one workload asks of the cluster."""
    workload: Manifest
    replicas: int
    surge: int
    request: dict[str, float]                  # one pod's effective request: cpu in cores, memory in bytes
    paths: dict[str, tuple]                    # where replicas / each request is set in the object

    def __init__(self, workload: Manifest, replicas: int, surge: int, request: dict[str, float],
                 paths: dict[str, tuple] | None = None) -> None:
        self.workload = workload
        self.replicas = replicas
        self.surge = surge
        self.request = request
        self.paths = {} if paths is None else paths

    @property
    def pods(self) -> int:
        return self.replicas + self.surge

    def total(self, resource: str) -> float:
        return self.pods if resource == "pods" else self.pods * self.request.get(resource, 0.0)


class Budget(Record):
    """Who asks for what on one cluster, against its declared capacity."""
    cluster: str
    capacity: dict[str, float]      # parsed; only the resources the cluster declares
    rows: list[Row]
    problems: list[str]             # capacity values that are not quantities

    def __init__(self, cluster: str, capacity: dict[str, float], rows: list[Row],
                 problems: list[str] | None = None) -> None:
        self.cluster = cluster
        self.capacity = capacity
        self.rows = rows
        self.problems = [] if problems is None else problems

    def used(self, resource: str) -> float:
        return sum(r.total(resource) for r in self.rows)

    def share(self, resource: str) -> float | None:
        cap = self.capacity.get(resource)
        return None if not cap else self.used(resource) / cap

    def as_dict(self) -> dict:
        def pct(v: float, r: str) -> float | None:
            return round(100 * v / self.capacity[r], 1) if self.capacity.get(r) else None
        return {
            "cluster": self.cluster,
            "capacity": self.capacity,
            "rows": [{"app": r.workload.app, "kind": r.workload.kind, "namespace": r.workload.namespace,
                      "name": r.workload.name, "replicas": r.replicas, "surge": r.surge,
                      "cpu": round(r.request.get("cpu", 0.0), 3), "memory": round(r.request.get("memory", 0.0)),
                      "totalCpu": round(r.total("cpu"), 3), "totalMemory": round(r.total("memory")),
                      "percentCpu": pct(r.total("cpu"), "cpu"), "percentMemory": pct(r.total("memory"), "memory")}
                     for r in self.rows],
            "total": {"pods": self.used("pods"), "cpu": round(self.used("cpu"), 3), "memory": round(self.used("memory")),
                      **{f"percent{k.capitalize()}": (round(100 * s, 1) if s is not None else None)
                         for k in ("cpu", "memory", "pods") for s in [self.share(k)]}},
        }


# --- what one workload asks for ---------------------------------------------------------------

def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _counted(m: Manifest) -> bool:
    """Argo CD applies it (and so the scheduler sees its pods)."""
    helm_hook = str(m.annotations.get("helm.sh/hook", ""))
    argo_hook = str(m.annotations.get("argocd.argoproj.io/hook", ""))
    return not (helm_hook.startswith("test") and not argo_hook) and "Skip" not in argo_hook


def _pod_request(m: Manifest) -> tuple[dict[str, float], dict[str, tuple]]:
    """The scheduler's request of one pod, and where each resource is set (its largest container)."""
    regular: dict[str, float] = {r: 0.0 for r in RESOURCES}
    sidecars: dict[str, float] = {r: 0.0 for r in RESOURCES}
    init_max: dict[str, float] = {r: 0.0 for r in RESOURCES}
    paths: dict[str, tuple] = {}
    biggest: dict[str, float] = {r: -1.0 for r in RESOURCES}
    for c in containers(m):
        res = _mapping(c.spec.get("resources"))
        req, lim = _mapping(res.get("requests")), _mapping(res.get("limits"))
        for r in RESOURCES:
            section, raw = ("requests", req.get(r)) if req.get(r) is not None else ("limits", lim.get(r))
            value = parse_quantity(raw) if raw is not None else None
            value = value if value is not None and value > 0 else 0.0
            if c.sidecar:
                sidecars[r] += value
            elif c.init:
                init_max[r] = max(init_max[r], value)
            else:
                regular[r] += value
            if value > biggest[r]:
                biggest[r], paths[r] = value, c.path + ("resources", section, r)
    return {r: max(regular[r] + sidecars[r], init_max[r] + sidecars[r]) for r in RESOURCES}, paths


def _surge(m: Manifest, replicas: int) -> int:
    spec = _mapping(m.doc.get("spec"))
    if m.kind == "Deployment":
        strategy = _mapping(spec.get("strategy"))
        if strategy.get("type") == "Recreate":
            return 0
        default = "25%"
    elif m.kind == "DaemonSet":
        strategy = _mapping(spec.get("updateStrategy"))
        if strategy.get("type") == "OnDelete":
            return 0
        default = 0
    else:
        return 0
    rolling = _mapping(strategy.get("rollingUpdate"))
    surge = rolling.get("maxSurge", default)
    if isinstance(surge, str) and surge.endswith("%") and surge[:-1].isdigit():
        return math.ceil(replicas * int(surge[:-1]) / 100)  # Kubernetes rounds a surge up
    return _int(surge, 0)


def workload_rows(ctx: Context, nodes: int) -> list[Row]:
    """Every workload of the cluster with what it asks for. One pass over the cluster's objects."""
    scaled: dict[tuple, int] = {}
    workloads: list[Manifest] = []
    for m in ctx.objects:
        if m.kind == "HorizontalPodAutoscaler":
            spec = _mapping(m.doc.get("spec"))
            target = _mapping(spec.get("scaleTargetRef"))
            scaled[(m.namespace, target.get("kind"), target.get("name"))] = _int(spec.get("maxReplicas"), 1)
        elif m.kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod") and _counted(m):
            workloads.append(m)
    rows = []
    for m in workloads:
        spec = _mapping(m.doc.get("spec"))
        replica_path: tuple = ("spec", "replicas")
        if m.kind in _REPLICATED:
            hpa = scaled.get((m.namespace, m.kind, m.name))
            replicas = hpa if hpa is not None and "replicas" not in spec else _int(spec.get("replicas"), 1)
        elif m.kind == "DaemonSet":
            replicas = nodes
        elif m.kind == "Job":
            replicas, replica_path = _int(spec.get("parallelism"), 1), ("spec", "parallelism")
        elif m.kind == "CronJob":
            replicas = _int(_mapping(_mapping(spec.get("jobTemplate")).get("spec")).get("parallelism"), 1)
            replica_path = ("spec", "jobTemplate", "spec", "parallelism")
        else:
            replicas = 1
        request, paths = _pod_request(m)
        rows.append(Row(m, replicas, _surge(m, replicas), request, {"replicas": replica_path, **paths}))
    return sorted(rows, key=lambda r: (r.workload.app or "", r.workload.kind, r.workload.namespace or "", r.workload.name))


def budget(ctx: Context) -> Budget | None:
    """The cluster's budget, summed once per run (the rules and `--capacity` read the same one);
    None when the context is not a cluster's."""
    return ctx.derived("capacity.budget", lambda: _budget(ctx))  # type: ignore[return-value]


def _budget(ctx: Context) -> Budget | None:
    facts = ctx.facts
    if facts is None:
        return None
    declared = facts.capacity if isinstance(facts.capacity, dict) else {}
    capacity: dict[str, float] = {}
    problems = []
    for key in (*RESOURCES, "pods"):
        if key in declared:
            value = parse_quantity(declared[key]) if not isinstance(declared[key], bool) else None
            if value is None or value <= 0:
                problems.append(f"capacity.{key} {declared[key]!r} is not a positive Kubernetes quantity")
            else:
                capacity[key] = value
    nodes = _int(declared.get("nodes"), 1) or 1
    return Budget(facts.name, capacity, workload_rows(ctx, nodes), problems)


# --- the rules ---------------------------------------------------------------------------------

def _fmt(resource: str, value: float) -> str:
    if resource == "cpu":
        milli = round(value * 1000)
        return f"{milli // 1000}" if milli % 1000 == 0 else f"{milli}m"
    if resource == "memory":
        for unit, size in (("Gi", 2 ** 30), ("Mi", 2 ** 20), ("Ki", 2 ** 10)):
            if value >= size and (value / size == int(value / size) or unit == "Ki" or value >= 10 * size):
                n = value / size
                return f"{n:.0f}{unit}" if n == int(n) else f"{n:.1f}{unit}"
        return f"{value:.0f}"
    return f"{value:.0f}"


def _value_line(ctx: Context, row: Row, what: str) -> tuple[str, int] | None:
    """The value-file line that set the blamed value (conventional chart keys), last file first."""
    m = row.workload
    keys = [("replicaCount",), ("replicas",)] if what == "replicas" else [("resources", "requests", what)]
    for file, doc in reversed(ctx.values.get(m.app or "", ())):
        data = doc.data if isinstance(doc.data, dict) else {}
        for key in keys:
            value: object = data
            for k in key:
                value = value.get(k) if isinstance(value, dict) else None
            if value is None:
                continue
            if what == "replicas" and value == row.replicas or \
                    what != "replicas" and parse_quantity(value) in (row.request.get(what),):
                return file, doc.line_of(key)
    return None


def _blame(ctx: Context, b: Budget, resource: str) -> ClusterProblem:
    """Where a finding about ``resource`` points: the biggest contributor's value line if we find
    it, else the field in its rendered object; cluster.yaml's capacity line when nothing asks."""
    rows = [r for r in b.rows if r.total(resource) > 0]
    if not rows:
        cf = ctx.facts
        return ClusterProblem("", None, (), f"{cf.directory}/cluster.yaml" if cf and cf.directory else None,
                              cf.capacity_lines.get(resource) if cf else None)
    top = max(rows, key=lambda r: r.total(resource))
    what = resource
    if resource == "pods" or top.request.get(resource, 0.0) < LARGE_POD * b.capacity[resource]:
        what = "replicas"
    found = _value_line(ctx, top, what)
    path = top.paths.get(what, ())
    return ClusterProblem("", top.workload, path, *(found or (None, None)))


def _describe(b: Budget, resource: str, ctx: Context, top: Manifest | None) -> str:
    cf = ctx.facts
    where = f"{cf.directory}/cluster.yaml" if cf and cf.directory else "cluster.yaml"
    used, cap = b.used(resource), b.capacity[resource]
    msg = (f"cluster {b.cluster}: the workloads request {_fmt(resource, used)} {resource} "
           f"({100 * used / cap:.0f}% of capacity.{resource} {_fmt(resource, cap)} in {where}, "
           "counting rolling-update surge)")
    if top is not None:
        row = next(r for r in b.rows if r.workload is top)
        msg += (f"; the most is {top.kind} {top.namespace}/{top.name}"
                + (f" (app {top.app})" if top.app else "")
                + f": {row.replicas} + {row.surge} surge pods"
                + (f" × {_fmt(resource, row.request.get(resource, 0.0))}" if resource != "pods" else ""))
    return msg


def _over(ctx: Context, above: float | None) -> Iterable[ClusterProblem]:
    b = budget(ctx)
    if b is None:
        return
    if above is None:  # the error rule also reports a capacity it cannot read: fail closed
        cf = ctx.facts
        for p in b.problems:
            key = p.split()[0].split(".", 1)[1]
            yield ClusterProblem(f"{p}; the cluster's capacity is not checked",
                                 file=f"{cf.directory}/cluster.yaml" if cf and cf.directory else None,
                                 line=cf.capacity_lines.get(key) if cf else None)
    for resource in (*RESOURCES, "pods"):
        share = b.share(resource)
        if share is None:
            continue
        if (above is None and share > 1.0) or (above is not None and above < share <= 1.0):
            blame = _blame(ctx, b, resource)
            msg = _describe(b, resource, ctx, blame.subject)
            msg += ("; the pods beyond it stay Pending" if above is None else
                    f"; above {above:.0%}, a slow rollout or one extra pod no longer fits")
            msg += " (`gitops-validate --capacity` prints the budget)"
            yield ClusterProblem(msg, blame.subject, blame.path, blame.file, blame.line)


def check_exceeded(ctx: Context) -> Iterable[ClusterProblem]:
    yield from _over(ctx, None)


def check_headroom(ctx: Context) -> Iterable[ClusterProblem]:
    yield from _over(ctx, HEADROOM)


def format_table(b: Budget) -> str:
    """The budget as a Markdown table (the README shows minikube's)."""
    def pct(v: float, r: str) -> str:
        return f"{100 * v / b.capacity[r]:.1f}%" if b.capacity.get(r) else "-"
    lines = ["| app | workload | replicas | surge | cpu/pod | memory/pod | cpu | memory | % cpu | % memory |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in b.rows:
        m = r.workload
        lines.append(f"| {m.app or '-'} | {m.kind} {m.namespace + '/' if m.namespace else ''}{m.name} | {r.replicas} "
                     f"| {r.surge} | {_fmt('cpu', r.request['cpu'])} | {_fmt('memory', r.request['memory'])} "
                     f"| {_fmt('cpu', r.total('cpu'))} | {_fmt('memory', r.total('memory'))} "
                     f"| {pct(r.total('cpu'), 'cpu')} | {pct(r.total('memory'), 'memory')} |")
    lines.append(f"| **total** | | {sum(r.replicas for r in b.rows)} | {sum(r.surge for r in b.rows)} | | "
                 f"| **{_fmt('cpu', b.used('cpu'))}** | **{_fmt('memory', b.used('memory'))}** "
                 f"| **{pct(b.used('cpu'), 'cpu')}** | **{pct(b.used('memory'), 'memory')}** |")
    cap = ", ".join(f"{k} {_fmt(k, v)}" for k, v in b.capacity.items()) or "none declared"
    return f"Capacity of cluster {b.cluster}: {cap}\n\n" + "\n".join(lines) + "\n"


_CLUSTER = "# clusters/minikube/cluster.yaml\ncapacity: {cpu: \"4\", memory: 8Gi}\n---\n"

RULES = [
    Rule("capacity/exceeded", Severity.ERROR,
         "the cluster's workloads request more cpu, memory or pods than its declared capacity",
         "The scheduler places a pod only where its requests fit. When the sum of every workload's "
         "requests × replicas, plus the extra pods of a rolling update (maxSurge), plus Argo CD's own "
         "pods, exceeds what the cluster declares in `clusters/<name>/cluster.yaml` (`capacity`), the "
         "pods that do not fit stay Pending: the sync never turns Healthy, and a rollout can stall "
         "half-way with old and new pods mixed. The finding points at the biggest contributor's "
         "replica count or request (its value-file line when the chart uses `replicaCount` / "
         "`resources.requests`), and `gitops-validate --capacity` prints the whole budget.",
         _CLUSTER + "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 20\n"
         "  template:\n    spec:\n      containers:\n        - name: web\n"
         "          resources: {requests: {cpu: 200m, memory: 256Mi}}\n",
         _CLUSTER + "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n"
         "  template:\n    spec:\n      containers:\n        - name: web\n"
         "          resources: {requests: {cpu: 200m, memory: 256Mi}}\n",
         cluster_check=check_exceeded),
    Rule("capacity/headroom", Severity.WARNING,
         f"the cluster's workloads request more than {HEADROOM:.0%} of its declared capacity",
         "A cluster filled to the brim has no room for what does not show in git: a rollout that "
         "takes longer, a debug pod, a Job run by hand, the node's own daemons. Above "
         f"{HEADROOM:.0%} of the declared cpu, memory or pods, plan more capacity or smaller requests.",
         _CLUSTER + "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 13\n"
         "  strategy: {type: Recreate}\n"
         "  template:\n    spec:\n      containers:\n        - name: web\n"
         "          resources: {requests: {cpu: 250m, memory: 256Mi}}\n",
         _CLUSTER + "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n"
         "  template:\n    spec:\n      containers:\n        - name: web\n"
         "          resources: {requests: {cpu: 250m, memory: 256Mi}}\n",
         cluster_check=check_headroom),
]
