"""refs/: what objects name by name or port must exist: Services select pods and target their ports,
pods read ConfigMaps and run as ServiceAccounts that are rendered, in-cluster URLs name a Service
and a port it exposes, and NodePorts are in range and unique."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Set
from typing import Iterable, Iterator

from ..findings import Problem, Severity
from ..model import Manifest, containers, pod_labels, pod_template, port_number, sequence
from .base import Context, Rule, node_ports
from .examples import example_deployment
from .secrets import pod_refs, qualified

CATEGORY = "refs"

NODE_PORT_RANGE = (30000, 32767)
#: ConfigMaps every namespace has (the cluster CA, projected into service-account token volumes).
BUILTIN_CONFIGMAPS = frozenset({"kube-root-ca.crt"})
_URL = re.compile(r"\bhttps?://(?:[^@/\s]*@)?([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?):(\d{1,5})(?![\d])")


def _spec(m: Manifest) -> dict:
    s = m.doc.get("spec")
    return s if isinstance(s, dict) else {}


def _selector(m: Manifest) -> dict:
    sel = _spec(m).get("selector")
    return sel if isinstance(sel, dict) else {}


def _selected(service: Manifest, ctx: Context) -> list[Manifest]:
    """The workloads (not hooks) in the Service's namespace whose pod template matches its selector."""
    return ctx.workloads_selected_by(service.namespace, _selector(service))


def _labels_text(labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def check_service_selector(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if m.kind != "Service" or not _selector(m) or _spec(m).get("type") == "ExternalName":
        return
    if _selected(m, ctx):
        return
    sel = _selector(m)
    ns = m.namespace
    pods = ctx.workloads_in(ns)
    near = ""
    if pods:
        best = max(pods, key=lambda w: sum(1 for k, v in sel.items()
                                           if str(pod_labels(w).get(k)) == str(v)))
        labels = pod_labels(best)
        differ = {k: labels.get(k, "<unset>") for k, v in sel.items() if str(labels.get(k)) != str(v)}
        near = f" (closest: {best.kind} {best.name} with {_labels_text(differ)})"
    yield Problem(f"Service {qualified(ns, m.name)} selects {_labels_text(sel)}, but no pod template "
                  f"in namespace {ns or '(none)'} has these labels{near}; fix spec.selector or the pod "
                  "labels", ("spec", "selector"))


def check_target_port(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if m.kind != "Service" or not _selector(m):
        return
    workloads = _selected(m, ctx)
    for i, port in enumerate(sequence(_spec(m).get("ports"))):
        if not isinstance(port, dict):
            continue
        target = port.get("targetPort", port.get("port"))
        if target in (None, ""):
            continue
        number = port_number(target)
        for w in workloads:
            ports = [p for c in containers(w) if c.long_running for p in c.ports()]
            if number is None:
                ok = any(p.get("name") == target for p in ports)
            else:
                ok = any(port_number(p.get("containerPort")) == number for p in ports)
            if ok:
                continue
            declared = ", ".join(f"{p['name']} {p.get('containerPort')}" if p.get("name")
                                 else str(p.get("containerPort")) for p in ports) or "none"
            what = f"port name {target!r}" if number is None else f"port {number}"
            yield Problem(f"Service {qualified(m.namespace, m.name)} port {port.get('port')} targets "
                          f"{what}, but {w.kind} {qualified(w.namespace, w.name)} has no such container "
                          f"port (its ports: {declared}); fix targetPort or the container's ports",
                          ("spec", "ports", i, "targetPort" if "targetPort" in port else "port"))


def check_missing_configmap(m: Manifest, ctx: Context) -> Iterable[Problem]:
    ns = m.namespace
    for ref in pod_refs(m, "ConfigMap"):
        if ref.optional or ref.name in BUILTIN_CONFIGMAPS:
            continue
        cm = ctx.find("ConfigMap", ns, ref.name)
        if cm is None:
            yield Problem(f"{ref.what} references ConfigMap {qualified(ns, ref.name)}, which is not "
                          "rendered in that namespace; fix the name or add the ConfigMap", ref.path)
            continue
        keys = set()
        for field in ("data", "binaryData"):
            if isinstance(cm.doc.get(field), dict):
                keys.update(str(k) for k in cm.doc[field])
        for key, path in ref.keys:
            if key not in keys:
                yield Problem(f"{ref.what} reads key {key!r} of ConfigMap {qualified(ns, ref.name)}, which "
                              f"holds {', '.join(sorted(keys)) or 'no keys'}; fix the key or add it", path)


def check_missing_serviceaccount(m: Manifest, ctx: Context) -> Iterable[Problem]:
    found = pod_template(m)
    if not found:
        return
    pod, base = found
    for field in ("serviceAccountName", "serviceAccount"):
        name = pod.get(field)
        if isinstance(name, str) and name and name != "default":
            if ctx.find("ServiceAccount", m.namespace, name) is None:
                yield Problem(f"{m.kind} {m.name} runs as ServiceAccount {qualified(m.namespace, name)}, "
                              "which is not rendered in that namespace; the pods are never created "
                              "(forbidden: serviceaccount not found). Render it or fix the name",
                              base + (field,))
            return


def check_node_port(m: Manifest, ctx: Context) -> Iterable[Problem]:
    mine = node_ports(m)
    if not mine:
        return
    lo, hi = NODE_PORT_RANGE
    for i, n in mine:
        path = ("spec", "ports", i, "nodePort")
        if not lo <= n <= hi:
            yield Problem(f"Service {qualified(m.namespace, m.name)} nodePort {n} is outside the "
                          f"NodePort range {lo}-{hi}; the API server rejects it", path)
            continue
        me = (m.namespace or "", m.name, i)
        holders = sorted({*ctx.services_with_node_port(n), me})  # ``m`` counts even if not in ctx
        if len(holders) > 1 and me != holders[0]:
            first_ns, first_name, _ = holders[0]
            yield Problem(f"Service {qualified(m.namespace, m.name)} nodePort {n} is already used by "
                          f"Service {qualified(first_ns or None, first_name)}; NodePorts are cluster-wide, "
                          "pick another one", path)


# --- in-cluster URLs -------------------------------------------------------------------------

def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def service_of_host(host: str, own_namespace: str | None, namespaces: Set[str]) -> tuple[str | None, str] | None:
    """(namespace, service) that an in-cluster host name resolves to, or None when the host is not
    one we can attribute (localhost, an IP, an external name)."""
    host = host.lower().rstrip(".")
    if not host or host == "localhost" or _is_ip(host):
        return None
    labels = host.split(".")
    if len(labels) == 1:
        return own_namespace, labels[0]
    svc, ns, rest = labels[0], labels[1], labels[2:]
    if ns in namespaces and rest in ([], ["svc"], ["svc", "cluster", "local"]):
        return ns, svc
    return None


def _service_ports(service: Manifest) -> set[int]:
    ports = set()
    headless = _spec(service).get("clusterIP") == "None"
    for p in sequence(_spec(service).get("ports")):
        if isinstance(p, dict):
            for field in ("port", "targetPort") if headless else ("port",):
                n = port_number(p.get(field))
                if n is not None:
                    ports.add(n)
    return ports


def _check_urls(text: str, where: str, m: Manifest, ctx: Context, path: tuple) -> Iterator[Problem]:
    for match in _URL.finditer(text):
        url, host, port = match.group(0), match.group(1), int(match.group(2))
        target = service_of_host(host, m.namespace, ctx.namespaces)
        if target is None:
            continue
        ns, name = target
        service = ctx.find("Service", ns, name)
        if service is None:
            yield Problem(f"{where} points at {url}, but there is no Service {qualified(ns, name)}; "
                          "fix the host or render the Service", path)
            continue
        if _spec(service).get("type") == "ExternalName":
            continue
        exposed = _service_ports(service)
        if port not in exposed:
            shown = ", ".join(str(p) for p in sorted(exposed)) or "no ports"
            yield Problem(f"{where} points at {url}, but Service {qualified(ns, name)} exposes {shown}; "
                          "fix the port", path)


def _url_texts(m: Manifest) -> Iterator[tuple[str, str, tuple]]:
    """(text, what it is, path) of every ConfigMap value and container env value holding a URL."""
    if m.kind == "ConfigMap":
        data = m.doc.get("data")
        for key, value in (data.items() if isinstance(data, dict) else ()):
            if isinstance(value, str) and "://" in value:
                yield value, f"ConfigMap {qualified(m.namespace, m.name)} {key}", ("data", key)
    for c in containers(m):
        for i, env in enumerate(sequence(c.spec.get("env"))):
            if isinstance(env, dict) and isinstance(env.get("value"), str) and "://" in env["value"]:
                yield (env["value"], f"{m.kind} {qualified(m.namespace, m.name)} {c.label} env {env.get('name')}",
                       c.path + ("env", i, "value"))


def references(m: Manifest, namespaces: set[str]) -> Iterator[tuple[str, str | None, str]]:
    """(kind, namespace, name) of every object ``m`` names: Services its in-cluster URLs point at,
    Secrets and ConfigMaps its pods read. (A Service's selector names pods by label: see ``selected``.)"""
    for text, _, _ in _url_texts(m):
        for match in _URL.finditer(text):
            target = service_of_host(match.group(1), m.namespace, namespaces)
            if target is not None:
                yield "Service", target[0], target[1]
    for kind in ("Secret", "ConfigMap"):
        for ref in pod_refs(m, kind):
            if not ref.optional:
                yield kind, m.namespace, ref.name


def selected(service: Manifest, ctx: Context) -> list[Manifest] | None:
    """The workloads a Service's selector matches; None when it has no selector."""
    if service.kind != "Service" or not _selector(service) or _spec(service).get("type") == "ExternalName":
        return None
    return _selected(service, ctx)


def check_in_cluster_url(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for text, where, path in _url_texts(m):
        yield from _check_urls(text, where, m, ctx, path)


# --- examples -------------------------------------------------------------------------------

def _service(name: str = "web", selector: str = "{app: web}", ports: str = "[{port: 80, targetPort: http}]",
             extra: str = "") -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n{extra}"
            f"  selector: {selector}\n  ports: {ports}\n")


def _with(*docs: str) -> str:
    return "---\n".join(docs)


_CM_ENV = {"envFrom": "[{configMapRef: {name: web-config}}]",
           "env": "[{name: LOG_LEVEL, valueFrom: {configMapKeyRef: {name: web-config, key: %s}}}]"}


def _cm_reader(key: str) -> str:
    return example_deployment(container={**_CM_ENV, "env": _CM_ENV["env"] % key})


_CONFIG = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config}\ndata: {%s}\n"
_NODEPORT = "[{port: 80, targetPort: http, nodePort: %d}]"

RULES = [
    Rule("refs/service-selector", Severity.ERROR,
         "a Service whose selector matches the pod template labels of no workload in its namespace",
         "A Service that selects nothing has no endpoints: every request to it fails, while Argo CD "
         "shows the app Synced and Healthy. Usually a label renamed on one side only. Services "
         "without a selector (endpoints managed by hand) are not checked.",
         _with(_service(selector="{app: wbe}"), example_deployment()),
         _with(_service(), example_deployment()),
         check_service_selector),
    Rule("refs/target-port", Severity.ERROR,
         "a Service targetPort (name or number; default: the port) that is not a container port of the "
         "pods it selects",
         "Traffic sent to a port the container does not declare goes nowhere (a named targetPort "
         "that no container defines never resolves), so the Service has no working endpoint.",
         _with(_service(ports="[{port: 80, targetPort: web}]"), example_deployment()),
         _with(_service(), example_deployment()),
         check_target_port),
    Rule("refs/missing-configmap", Severity.ERROR,
         "a configMapKeyRef, envFrom configMapRef, configMap volume or projected configMap naming a "
         "ConfigMap (or a key) not rendered in that namespace",
         "A pod that reads a missing ConfigMap or key never starts (CreateContainerConfigError), and "
         "a configMap volume never mounts. References marked `optional: true` are not checked.",
         _with(_CONFIG % "LOG_LEVEL: info", _cm_reader("LOGLEVEL")),
         _with(_CONFIG % "LOG_LEVEL: info", _cm_reader("LOG_LEVEL")),
         check_missing_configmap),
    Rule("refs/missing-serviceaccount", Severity.ERROR,
         "a pod spec whose serviceAccountName (other than `default`) is not rendered in its namespace",
         "The ReplicaSet controller cannot create pods for a ServiceAccount that does not exist "
         "(`error looking up service account`): the Deployment stays at zero ready replicas.",
         example_deployment(pod={"serviceAccountName": "web"}),
         _with("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web}\n"
               "automountServiceAccountToken: false\n",
               example_deployment(pod={"serviceAccountName": "web"})),
         check_missing_serviceaccount),
    Rule("refs/nodeport", Severity.ERROR,
         "a nodePort outside 30000-32767, or the same nodePort used by two Services of a cluster",
         "The API server rejects a nodePort outside the cluster's range, and the second Service that "
         "asks for a nodePort already allocated (`provided port is already allocated`): its sync fails.",
         _with(_service(ports=_NODEPORT % 3000, extra="  type: NodePort\n"), example_deployment()),
         _with(_service(ports=_NODEPORT % 30000, extra="  type: NodePort\n"), example_deployment()),
         check_node_port),
    Rule("refs/in-cluster-url", Severity.ERROR,
         "an http(s)://host:port URL in a ConfigMap or env value naming an in-cluster Service that is "
         "not rendered or does not expose that port",
         "Service names and ports change in one chart and are copied by hand into another's config: "
         "a stale `http://todo-backend:8002` deploys fine and fails only at the first request. Hosts "
         "`name`, `name.ns`, `name.ns.svc` and `name.ns.svc.cluster.local` are checked (ns must be a "
         "namespace of the cluster's objects); localhost, IPs and external names are ignored.",
         _with(_CONFIG % "API_URL: 'http://web:8080/api'", _service(), example_deployment()),
         _with(_CONFIG % "API_URL: 'http://web:80/api'", _service(), example_deployment()),
         check_in_cluster_url),
]
