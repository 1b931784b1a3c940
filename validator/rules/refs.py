"""refs/: what objects name by name or port must exist: Services select pods and target their ports,
pods read ConfigMaps and run as ServiceAccounts that are rendered, in-cluster URLs name a Service
and a port it exposes, and NodePorts are in range and unique."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Set
from typing import Iterable, Iterator

from ..findings import Problem, Severity
from ..model import Manifest, containers, pod_labels, pod_template, port_number, selector_matches, sequence
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
    near, path = "", ("spec", "selector")
    if pods:
        best = max(pods, key=lambda w: sum(1 for k, v in sel.items()
                                           if str(pod_labels(w).get(k)) == str(v)))
        labels = pod_labels(best)
        differ = {k: labels.get(k, "<unset>") for k, v in sel.items() if str(labels.get(k)) != str(v)}
        near = f" (closest: {best.kind} {best.name} with {_labels_text(differ)})"
        path += tuple(differ)[:1]  # the label that differs: where it is set
    yield Problem(f"Service {qualified(ns, m.name)} selects {_labels_text(sel)}, but no pod template "
                  f"in namespace {ns or '(none)'} has these labels{near}; fix spec.selector or the pod "
                  "labels", path)


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
            if number is not None and not ports:
                continue  # no declared ports: the app may listen on any, Kubernetes routes there anyway
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
    target = _host_target(host, own_namespace)
    if target is None or (target[2] and target[0] not in namespaces):
        return None
    return target[0], target[1]


def _host_target(host: str, own_namespace: str | None) -> tuple[str | None, str, bool] | None:
    """``service_of_host`` without the namespace set: (namespace, service, whether that holds only
    when the namespace is one of the cluster's: `svc.ns...`), or None."""
    host = host.lower().rstrip(".")
    if not host or host == "localhost" or _is_ip(host):
        return None
    labels = host.split(".")
    if len(labels) == 1:
        return own_namespace, labels[0], False
    svc, ns, rest = labels[0], labels[1], labels[2:]
    if rest in ([], ["svc"], ["svc", "cluster", "local"]):
        return ns, svc, True
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
            # an app that did not render may hold the Service: say it was not checked, never guess
            missing = sorted(app for app, where_ns in ctx.unrendered if where_ns == ns)
            if missing:
                yield Problem(f"{where} points at {url}: not checked, {', '.join(missing)} did not render "
                              f"(namespace {ns}); fix the findings of {'that app' if len(missing) == 1 else 'those apps'} "
                              "first", path, rule=NOT_CHECKED)
            else:
                yield Problem(f"{where} points at {url}, but there is no Service {qualified(ns, name)}; "
                              "fix the host or render the Service", path)
            continue
        if _spec(service).get("type") == "ExternalName":
            continue
        exposed = _service_ports(service)
        if port not in exposed:
            shown = ", ".join(str(p) for p in sorted(exposed)) or "no ports"
            ports = sequence(_spec(service).get("ports"))
            # the Service's port is the other place to fix: the finding points at whichever an override changed
            port_path = ("spec", "ports", 0, "port") if len(ports) == 1 else ("spec", "ports")
            yield Problem(f"{where} points at {url}, but Service {qualified(ns, name)} exposes {shown}; "
                          "fix the port", path, also=((service, port_path, "Service port at"),), label="URL at")


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
    for kind, ns, name, conditional in reference_candidates(m):
        if not conditional or ns in namespaces:
            yield kind, ns, name


def reference_candidates(m: Manifest) -> list[list]:
    """``references`` whatever the cluster's namespaces are: [kind, namespace, name, conditional],
    where conditional means "only when namespace is one of the cluster's" (a URL host `svc.ns`).
    Plain JSON data of the object alone: the result cache keeps it with the object, so that a
    path-scoped run's widening does not walk every unchanged object again."""
    out: list[list] = []
    for text, _, _ in _url_texts(m):
        for match in _URL.finditer(text):
            target = _host_target(match.group(1), m.namespace)
            if target is not None:
                out.append(["Service", target[0], target[1], target[2]])
    for kind in ("Secret", "ConfigMap"):
        for ref in pod_refs(m, kind):
            if not ref.optional:
                out.append([kind, m.namespace, ref.name, False])
    return out


def selected(service: Manifest, ctx: Context) -> list[Manifest] | None:
    """The workloads a Service's selector matches; None when it has no selector."""
    if service.kind != "Service" or not _selector(service) or _spec(service).get("type") == "ExternalName":
        return None
    return _selected(service, ctx)


#: Reported by check_in_cluster_url for a URL into an app that did not render, once per object.
NOT_CHECKED = "refs/not-checked"


def check_in_cluster_url(m: Manifest, ctx: Context) -> Iterable[Problem]:
    skipped: list[Problem] = []
    for text, where, path in _url_texts(m):
        for problem in _check_urls(text, where, m, ctx, path):
            if problem.rule == NOT_CHECKED:
                skipped.append(problem)
            else:
                yield problem
    if skipped:
        more = f" ({len(skipped) - 1} more URL(s) of this object not checked either)" if len(skipped) > 1 else ""
        yield Problem(skipped[0].message + more, skipped[0].path, rule=NOT_CHECKED)


# --- Ingress, HPA, PodDisruptionBudget, workload selectors ---------------------------------------

def _ingress_backends(m: Manifest) -> Iterator[tuple[dict, tuple]]:
    """(backend.service, its path) of an Ingress: the default backend and every rule path."""
    spec = _spec(m)
    default = spec.get("defaultBackend")
    if isinstance(default, dict) and isinstance(default.get("service"), dict):
        yield default["service"], ("spec", "defaultBackend", "service")
    for i, rule in enumerate(spec.get("rules") or []):
        http = rule.get("http") if isinstance(rule, dict) else None
        for j, p in enumerate((http.get("paths") or []) if isinstance(http, dict) else []):
            backend = p.get("backend") if isinstance(p, dict) else None
            if isinstance(backend, dict) and isinstance(backend.get("service"), dict):
                yield backend["service"], ("spec", "rules", i, "http", "paths", j, "backend", "service")


def check_ingress_backend(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if m.kind != "Ingress":
        return
    ns = m.namespace
    for svc, path in _ingress_backends(m):
        name = svc.get("name")
        if not isinstance(name, str) or not name:
            continue
        service = ctx.find("Service", ns, name)
        if service is None:
            yield Problem(f"Ingress {qualified(ns, m.name)} routes to Service {qualified(ns, name)}, which is "
                          "not rendered in that namespace; fix the backend's service name", path + ("name",))
            continue
        port = svc.get("port")
        if not isinstance(port, dict):
            continue
        ports = [p for p in _spec(service).get("ports") or [] if isinstance(p, dict)]
        shown = ", ".join(f"{p['name']} {p.get('port')}" if p.get("name") else str(p.get("port"))
                          for p in ports) or "no ports"
        if port.get("name") not in (None, ""):
            if not any(p.get("name") == port["name"] for p in ports):
                yield Problem(f"Ingress {qualified(ns, m.name)} routes to port name {port['name']!r} of Service "
                              f"{qualified(ns, name)}, which has no port of that name (its ports: {shown})",
                              path + ("port", "name"))
        elif port_number(port.get("number")) is not None:
            if not any(port_number(p.get("port")) == port_number(port["number"]) for p in ports):
                yield Problem(f"Ingress {qualified(ns, m.name)} routes to port {port['number']} of Service "
                              f"{qualified(ns, name)}, which does not expose it (its ports: {shown})",
                              path + ("port", "number"))


#: Kinds an HPA can scale that are always checked; any other kind only when objects of it are rendered.
SCALABLE_KINDS = ("Deployment", "StatefulSet", "ReplicaSet", "ReplicationController")


def check_hpa_target(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if m.kind != "HorizontalPodAutoscaler":
        return
    ref = _spec(m).get("scaleTargetRef")
    if not isinstance(ref, dict) or not isinstance(ref.get("kind"), str) or not isinstance(ref.get("name"), str):
        return
    kind, name, ns = ref["kind"], ref["name"], m.namespace
    if kind not in SCALABLE_KINDS and not ctx.in_namespace(kind, ns):
        return  # a custom resource (an Argo Rollout, ...) we cannot see
    if ctx.find(kind, ns, name) is None:
        yield Problem(f"HorizontalPodAutoscaler {qualified(ns, m.name)} scales {kind} {qualified(ns, name)}, "
                      "which is not rendered in that namespace; the autoscaler does nothing "
                      "(FailedGetScale). Fix scaleTargetRef", ("spec", "scaleTargetRef", "name"))


def _selector_text(sel: dict) -> str:
    parts = [f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()] \
        if isinstance(sel.get("matchLabels"), dict) else []
    for e in sel.get("matchExpressions") or [] if isinstance(sel.get("matchExpressions"), list) else []:
        if isinstance(e, dict):
            values = ",".join(map(str, e.get("values") or [])) if isinstance(e.get("values"), list) else ""
            parts.append(f"{e.get('key')} {e.get('operator')}" + (f" ({values})" if values else ""))
    return ", ".join(parts) or "everything"


def check_pdb_selector(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if m.kind != "PodDisruptionBudget":
        return
    sel = _spec(m).get("selector")
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        return  # no selector, or {} (every pod of the namespace in policy/v1)
    if ctx.workloads_selected(m.namespace, sel):
        return
    yield Problem(f"PodDisruptionBudget {qualified(m.namespace, m.name)} selects {_selector_text(sel)}, but no "
                  f"pod template in namespace {m.namespace or '(none)'} has these labels; it protects "
                  "nothing. Fix spec.selector", ("spec", "selector"))


#: Workloads whose spec.selector must select their own pod template (the API server checks it).
SELECTING_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})


def check_workload_selector(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if m.kind not in SELECTING_KINDS or "selector" not in _spec(m):
        return  # a missing selector is a schema/invalid finding (required field)
    sel = _spec(m).get("selector")
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        yield Problem(f"{m.kind} {qualified(m.namespace, m.name)} has an empty spec.selector; the API "
                      "server rejects it. Select the pod template's labels", ("spec", "selector"))
        return
    labels = pod_labels(m)
    if not selector_matches(sel, labels):
        shown = _labels_text(labels) if isinstance(labels, dict) and labels else "none"
        yield Problem(f"{m.kind} {qualified(m.namespace, m.name)} selects {_selector_text(sel)}, but its pod "
                      f"template's labels ({shown}) do not match; the API server rejects it "
                      "(`selector` does not match template `labels`)", ("spec", "selector"))


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


def _ingress(service: str = "web", port: str = "{name: http}") -> str:
    return ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n"
            "  rules:\n  - http:\n      paths:\n      - path: /\n        pathType: Prefix\n"
            f"        backend: {{service: {{name: {service}, port: {port}}}}}\n")


def _hpa(target: str) -> str:
    return ("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n"
            f"  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {target}}}\n"
            "  minReplicas: 2\n  maxReplicas: 5\n")


def _pdb(selector: str) -> str:
    return ("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n"
            f"spec: {{minAvailable: 1, selector: {selector}}}\n")


_NAMED_PORT = "[{name: http, port: 80, targetPort: http}]"


def _selecting(selector: str) -> str:
    """The example Deployment with its spec.selector replaced."""
    return example_deployment().replace("  selector: {matchLabels: {app: web}}\n", f"  selector: {selector}\n")


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
         "that no container defines never resolves), so the Service has no working endpoint. A "
         "numeric targetPort is checked only against pods that declare their ports.",
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
    Rule(NOT_CHECKED, Severity.WARNING,
         "an in-cluster URL that was not checked because the app that would render its Service did not "
         "render (a values error, a helm failure)",
         "When one app cannot render, what it would have rendered is unknown: reporting the other apps' "
         "URLs into it as errors would bury the one finding that matters under a cascade. Those URLs are "
         "skipped and listed once per referring object, as a warning, so nobody reads the run as a full "
         "pass. A URL into a namespace where every app rendered is checked as usual. Reported by the "
         "check of refs/in-cluster-url, when the pipeline could not render an app.",
         "# clusters/minikube/values/todo-backend.yaml does not parse, so todo-backend did not render:\n"
         + _CONFIG % "API_URL: 'http://todo-backend:8001/api'",
         "# todo-backend rendered (its Service exposes 8001):\n"
         + _with(_CONFIG % "API_URL: 'http://web:80/api'", _service(), example_deployment())),
    Rule("refs/ingress-backend", Severity.ERROR,
         "an Ingress backend naming a Service that is not rendered in its namespace, or a port (name or "
         "number) that Service does not expose",
         "The ingress controller answers 503 for a backend whose Service or port does not exist, while "
         "the Ingress itself is accepted and Argo CD shows it Healthy. Usually a Service or its port "
         "renamed in one chart only.",
         _with(_ingress(port="{number: 8080}"), _service(ports=_NAMED_PORT), example_deployment()),
         _with(_ingress(), _service(ports=_NAMED_PORT), example_deployment()),
         check_ingress_backend),
    Rule("refs/hpa-target", Severity.ERROR,
         "a HorizontalPodAutoscaler whose scaleTargetRef names a Deployment, StatefulSet or ReplicaSet "
         "that is not rendered in its namespace",
         "An autoscaler without its target scales nothing (`FailedGetScale`), and the workload it was "
         "meant for keeps a fixed replica count under load. Custom kinds (an Argo Rollout) are checked "
         "only when objects of that kind are rendered.",
         _with(_hpa("wbe"), example_deployment()),
         _with(_hpa("web"), example_deployment()),
         check_hpa_target),
    Rule("refs/pdb-selector", Severity.ERROR,
         "a PodDisruptionBudget whose selector (matchLabels, matchExpressions) matches the pod template "
         "of no workload in its namespace",
         "A PodDisruptionBudget that selects no pod protects nothing: a node drain evicts every replica "
         "at once. Usually labels renamed in the workload only.",
         _with(_pdb("{matchLabels: {app: wbe}}"), example_deployment()),
         _with(_pdb("{matchExpressions: [{key: app, operator: In, values: [web]}]}"), example_deployment()),
         check_pdb_selector),
    Rule("refs/workload-selector", Severity.ERROR,
         "a Deployment, StatefulSet, DaemonSet or ReplicaSet whose spec.selector (matchLabels, "
         "matchExpressions) does not match its own pod template labels, or is empty",
         "The API server rejects such a workload (`selector does not match template labels`), so the "
         "sync fails; kubeconform's schemas cannot see it. The selector is also immutable: fixing it "
         "later means deleting the workload.",
         _selecting("{matchLabels: {app: web, tier: api}}"),
         _selecting("{matchExpressions: [{key: app, operator: Exists}]}"),
         check_workload_selector),
]
