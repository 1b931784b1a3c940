"""refs/ (network): NetworkPolicies select pods that exist, and the app's own traffic paths get through
the policies in force: outside traffic to a NodePort's pods, and a caller's in-cluster URL to the
callee's pods (the callee's ingress and the caller's egress, and the caller's DNS lookups).

Kubernetes semantics: a pod is isolated in a direction once a policy that selects it lists that
direction in policyTypes; then only what some selecting policy's rules allow gets through. Peers
are matched by labels (pods: the rendered pod templates; namespaces: their name label and the
labels of a rendered Namespace). ipBlock peers never match a pod (pod addresses are not known in
advance), only outside traffic.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from ..findings import Problem, Severity
from ..model import WORKLOAD_KINDS, Manifest, containers, dig, pod_labels, pod_template
from ..record import Frozen
from .base import Context, Rule
from .examples import example_deployment
from .probes import port_number
from .refs import _URL, service_of_host
from .secrets import pod_refs, qualified

CATEGORY = "refs"

NAME_LABEL = "kubernetes.io/metadata.name"
OUTSIDE = None  # a peer outside the cluster (NodePort or load-balancer clients)


class Pod(Frozen):
    """The pods of one workload: where they run and their labels."""
    workload: Manifest
    namespace: str | None
    labels: dict

    def __init__(self, workload: Manifest, namespace: str | None, labels: dict) -> None:
        self._assign(workload, namespace, labels)

    @property
    def what(self) -> str:
        return f"{self.workload.kind} {qualified(self.namespace, self.workload.name)}"


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _spec(m: Manifest) -> dict:
    return _dict(m.doc.get("spec"))


def matches(selector: object, labels: dict) -> bool:
    """A LabelSelector (matchLabels, matchExpressions) against labels; {} matches everything."""
    if not isinstance(selector, dict):
        return False
    for k, v in _dict(selector.get("matchLabels")).items():
        if k not in labels or str(labels[k]) != str(v):
            return False
    for e in _list(selector.get("matchExpressions")):
        if not isinstance(e, dict):
            return False
        key, op, values = e.get("key"), e.get("operator"), [str(v) for v in _list(e.get("values"))]
        present = key in labels
        if op == "In" and not (present and str(labels[key]) in values):
            return False
        if op == "NotIn" and present and str(labels[key]) in values:
            return False
        if (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def _workloads(ctx: Context, namespace: str | None, hooks: bool) -> Iterator[Manifest]:
    for kind in sorted(WORKLOAD_KINDS):
        for w in ctx.in_namespace(kind, namespace):
            if hooks or not w.is_hook():
                yield w


def _pods(ctx: Context, namespace: str | None, selector: object, hooks: bool = False) -> list[Pod]:
    pairs = _dict(selector.get("matchLabels")) if isinstance(selector, dict) else {}
    if not pairs:
        candidates: Iterable[Manifest] = _workloads(ctx, namespace, hooks)
    else:  # only the workloads carrying the selector's labels (the index), by kind as above
        candidates = sorted(ctx.workloads_labelled(namespace, pairs, hooks=hooks), key=lambda w: w.kind)
    out = []
    for w in candidates:
        labels = pod_labels(w)
        if isinstance(labels, dict) and matches(selector, labels):
            out.append(Pod(w, namespace, labels))
    return out


def _namespace_labels(ctx: Context, namespace: str | None) -> dict:
    ns = ctx.find("Namespace", None, namespace or "")
    labels = dict((ns.metadata.get("labels") or {}) if ns else {})
    labels[NAME_LABEL] = namespace or ""
    return labels


def _policy_types(policy: Manifest) -> list[str]:
    spec = _spec(policy)
    types = spec.get("policyTypes")
    if isinstance(types, list):
        return [str(t) for t in types]
    return ["Ingress"] + (["Egress"] if "egress" in spec else [])


def _in_force(ctx: Context, pod: Pod, direction: str, ruled: bool = False) -> list[Manifest]:
    """The policies that isolate `pod` in `direction` ("Ingress" or "Egress"); with `ruled`, only
    those that have rules for that direction (the others allow nothing).

    Through an index: a namespace where every app ships a default deny (`podSelector: {}`) would
    otherwise cost each pod a pass over all of them."""
    if not isinstance(pod.namespace, (str, type(None))):
        return [p for p in ctx.in_namespace("NetworkPolicy", pod.namespace)
                if direction in _policy_types(p) and matches(_spec(p).get("podSelector"), pod.labels)
                and (not ruled or _rules(p, direction))]
    every, every_ruled = ctx.derived(("network.every-pod", pod.namespace, direction),  # type: ignore[misc]
                                     lambda: _selecting_every_pod(ctx, pod.namespace, direction))
    found = [p for p in ctx.selector_candidates("NetworkPolicy", pod.namespace, pod.labels)
             if direction in _policy_types(p) and matches(_spec(p).get("podSelector"), pod.labels)
             and (not ruled or _rules(p, direction))]
    return found + (every_ruled if ruled else every)


def _rules(policy: Manifest, direction: str) -> list:
    return _list(_spec(policy).get("ingress" if direction == "Ingress" else "egress"))


def _selecting_every_pod(ctx: Context, namespace: str | None, direction: str) -> tuple[list, list]:
    """(policies of the namespace that select every pod in `direction`, those of them with rules)."""
    every = [p for p in ctx.selecting_every_pod("NetworkPolicy", namespace) if direction in _policy_types(p)]
    return every, [p for p in every if _rules(p, direction)]


def _peer_matches(peer: object, policy_ns: str | None, other: Pod | None, ctx: Context) -> bool:
    if not isinstance(peer, dict):
        return False
    if "ipBlock" in peer:
        return other is OUTSIDE
    if other is OUTSIDE:
        return False
    if "namespaceSelector" in peer:
        if not matches(peer["namespaceSelector"], _namespace_labels(ctx, other.namespace)):
            return False
    elif other.namespace != policy_ns:
        return False
    return "podSelector" not in peer or matches(peer["podSelector"], other.labels)


def _port_matches(ports: object, number: int, name: str | None, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports if isinstance(ports, list) else []:
        if not isinstance(p, dict) or str(p.get("protocol", "TCP")) != protocol:
            continue
        port = p.get("port")
        if port is None:
            return True
        n = port_number(port)
        if n is None:
            if name is not None and port == name:
                return True
        elif n == number or (isinstance(p.get("endPort"), int) and n <= number <= p["endPort"]):
            return True
    return False


def allowed(ctx: Context, pod: Pod, direction: str, other: Pod | None, number: int, name: str | None,
            protocol: str = "TCP") -> tuple[bool, list[Manifest]]:
    """Whether `pod` may receive from (Ingress) or send to (Egress) `other` on the port, and the
    policies in force when it may not. `name` is the port's name on the receiving pod (a policy may name ports)."""
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for p in _in_force(ctx, pod, direction, ruled=True):   # only a policy with rules can allow
        for rule in _list(_spec(p).get(rules_key)):
            if not isinstance(rule, dict) or not _port_matches(rule.get("ports"), number, name, protocol):
                continue
            peers = _list(rule.get(peers_key))
            if not rule.get(peers_key) or any(_peer_matches(peer, p.namespace, other, ctx) for peer in peers):
                return True, []
    policies = _in_force(ctx, pod, direction)
    return not policies, policies


def near_miss(ctx: Context, policies: list[Manifest], direction: str, other: Pod, number: int,
              name: str | None) -> tuple[Manifest, tuple] | None:
    """The policy and field to fix when a rule in force almost admits the traffic: it names the
    peer but another port (the port's path), or the port but another peer (the first pod label
    that differs). None when no rule comes that close."""
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for p in policies:
        for i, rule in enumerate(_list(_spec(p).get(rules_key))):
            if not isinstance(rule, dict):
                continue
            peers = _list(rule.get(peers_key))
            port_ok = _port_matches(rule.get("ports"), number, name, "TCP")
            peer_ok = any(_peer_matches(q, p.namespace, other, ctx) for q in peers)  # named, not "any peer"
            if peer_ok and not port_ok:
                j = next((j for j, q in enumerate(_list(rule.get("ports"))) if isinstance(q, dict) and "port" in q), 0)
                return p, ("spec", rules_key, i, "ports", j, "port")
            if port_ok and not peer_ok and other is not OUTSIDE:
                for k, q in enumerate(peers):
                    labels = dig(q, "podSelector", "matchLabels") if isinstance(q, dict) else None
                    for key, value in (labels.items() if isinstance(labels, dict) else ()):
                        if str(other.labels.get(key)) != str(value):
                            return p, ("spec", rules_key, i, peers_key, k, "podSelector", "matchLabels", key)
    return None


def _blocked_problem(message: str, m: Manifest, base: tuple, miss: tuple[Manifest, tuple] | None) -> Problem:
    """The finding points at the policy rule that almost admits the traffic, when there is one:
    that is what to fix (and what usually changed); the caller is the related location."""
    if miss is None:
        return Problem(message, base)
    return Problem(message, miss[1], at=miss[0], also=((m, base, "the caller"),), label="the policy rule")


def _names(policies: list[Manifest]) -> str:
    return ", ".join(sorted(p.name for p in policies))


def _container_port(pod: Pod, target: object) -> tuple[int, str | None] | None:
    """(number, name) of the container port a Service targetPort (number or name) reaches."""
    number = port_number(target)
    for c in containers(pod.workload):
        for p in c.ports():
            if (number is not None and port_number(p.get("containerPort")) == number) or \
                    (number is None and p.get("name") == target):
                return port_number(p.get("containerPort")) or 0, p.get("name")
    return (number, None) if number is not None else None


def _service_targets(service: Manifest, ctx: Context, port: int | None = None) -> Iterator[tuple[dict, Pod, int, str | None]]:
    """(service port, callee pods, container port number, its name) of a Service (of one port)."""
    spec = _spec(service)
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not selector:
        return
    pods = _pods(ctx, service.namespace, {"matchLabels": selector})
    for sp in _list(spec.get("ports")):
        if not isinstance(sp, dict) or (port is not None and port_number(sp.get("port")) != port):
            continue
        for pod in pods:
            found = _container_port(pod, sp.get("targetPort", sp.get("port")))
            if found:
                yield sp, pod, found[0], found[1]


# --- rule: policies select something -------------------------------------------------------

def check_policy_selects_pods(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if m.kind != "NetworkPolicy":
        return
    selector = _spec(m).get("podSelector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return  # {} selects every pod of the namespace (a default policy), present or future
    if _pods(ctx, m.namespace, selector, hooks=True):
        return
    yield Problem(f"NetworkPolicy {qualified(m.namespace, m.name)} selects no pod template in namespace "
                  f"{m.namespace or '(none)'} (podSelector {selector}): it protects nothing, and the "
                  "pods it was written for run without it. Fix spec.podSelector or the pod labels",
                  ("spec", "podSelector"))


# --- rule: the app's own paths get through -------------------------------------------------

def _blocked(direction: str, policies: list[Manifest]) -> str:
    return f"no {direction.lower()} rule of the NetworkPolicies in force ({_names(policies)}) admits it"


def _check_nodeport(m: Manifest, ctx: Context) -> Iterator[Problem]:
    if _spec(m).get("type") not in ("NodePort", "LoadBalancer"):
        return
    for sp, pod, number, name in _service_targets(m, ctx):
        ok, policies = allowed(ctx, pod, "Ingress", OUTSIDE, number, name)
        if not ok:
            yield Problem(f"path blocked: clients outside the cluster -> Service {qualified(m.namespace, m.name)} "
                          f"({_spec(m)['type']} port {sp.get('port')}) -> {pod.what} port {number}: "
                          f"{_blocked('Ingress', policies)}; allow ingress on that port from any source "
                          "(or an ipBlock)", ("spec", "ports"))


def _urls(m: Manifest, ctx: Context) -> Iterator[tuple[str, str, int]]:
    """(url, host, port) of every URL in the workload's env values and the ConfigMaps it reads."""
    texts = []
    for c in containers(m):
        for env in _list(c.spec.get("env")):
            if isinstance(env, dict) and isinstance(env.get("value"), str):
                texts.append(env["value"])
    for ref in pod_refs(m, "ConfigMap"):
        cm = ctx.find("ConfigMap", m.namespace, ref.name)
        data = cm.doc.get("data") if cm else None
        keys = [k for k, _ in ref.keys] or list(data or {})
        texts += [str(data[k]) for k in keys if isinstance(data, dict) and k in data]
    for text in texts:
        for match in _URL.finditer(text):
            yield match.group(0), match.group(1), int(match.group(2))


def _dns_allowed(ctx: Context, caller: Pod) -> bool:
    """Whether some egress rule in force lets the caller send 53/UDP (to whatever peer: the DNS
    pods' labels are not rendered here)."""
    return any(isinstance(rule, dict) and _port_matches(rule.get("ports"), 53, None, "UDP")
               for p in _in_force(ctx, caller, "Egress", ruled=True) for rule in _list(_spec(p).get("egress"))) \
        or not _in_force(ctx, caller, "Egress")


def _check_callers(m: Manifest, ctx: Context) -> Iterator[Problem]:
    found = pod_template(m)
    if m.kind not in WORKLOAD_KINDS or m.is_hook() or not found:
        return
    base = found[1]
    caller = Pod(m, m.namespace, pod_labels(m) if isinstance(pod_labels(m), dict) else {})
    seen = set()
    for url, host, port in _urls(m, ctx):
        labels = host.lower().rstrip(".").split(".")
        target = service_of_host(host, m.namespace, {labels[1]} if len(labels) > 1 else set())
        service = ctx.find("Service", target[0], target[1]) if target else None
        if service is None or (url, host) in seen:
            continue  # not in-cluster, or refs/in-cluster-url reports it
        seen.add((url, host))
        if not _dns_allowed(ctx, caller):
            yield Problem(f"path blocked: {caller.what} cannot look up {host} for {url}: no egress rule "
                          f"of NetworkPolicy {_names(_in_force(ctx, caller, 'Egress'))} admits DNS (53/UDP); "
                          "allow egress to the cluster DNS pods", base)
        for _, callee, number, name in _service_targets(service, ctx, port):
            path = f"{caller.what} -> {url} -> {callee.what} port {number}"
            ok, policies = allowed(ctx, caller, "Egress", callee, number, name)
            if not ok:
                yield _blocked_problem(f"path blocked: {path}: at the caller's egress, {_blocked('Egress', policies)}; "
                                       f"allow egress to the callee's pods on port {number}", m, base,
                                       near_miss(ctx, policies, "Egress", callee, number, name))
            ok, policies = allowed(ctx, callee, "Ingress", caller, number, name)
            if not ok:
                yield _blocked_problem(f"path blocked: {path}: at the callee's ingress, {_blocked('Ingress', policies)}; "
                                       f"allow ingress from the caller's pods on port {number}", m, base,
                                       near_miss(ctx, policies, "Ingress", caller, number, name))


def check_traffic_paths(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if m.kind == "Service":
        yield from _check_nodeport(m, ctx)
    else:
        yield from _check_callers(m, ctx)


# --- examples -------------------------------------------------------------------------------

_POLICY = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: %s}}
  policyTypes: [Ingress]
  ingress: [{ports: [{port: http}]}]
"""
_NODEPORT = ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n"
             "  selector: {app: web}\n  ports: [{port: 80, targetPort: http, nodePort: 30080}]\n")
_DENY = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
"""

RULES = [
    Rule("refs/networkpolicy-selects-nothing", Severity.ERROR,
         "a NetworkPolicy whose podSelector matches the pod template labels of no workload in its namespace",
         "A policy that selects nothing isolates nothing: the pods it was written for accept and send "
         "anything, while the policy in git suggests otherwise. Usually a label renamed on one side "
         "only. A policy with an empty podSelector (every pod of the namespace) is not checked.",
         _POLICY % "wbe" + "---\n" + example_deployment(),
         _POLICY % "web" + "---\n" + example_deployment(),
         check_policy_selects_pods),
    Rule("refs/traffic-blocked", Severity.ERROR,
         "an app's own traffic path that the NetworkPolicies in force block: outside clients to a "
         "NodePort/LoadBalancer Service's pods, or a caller's in-cluster URL (config or env) to the "
         "callee's pods (the callee's ingress, the caller's egress and its DNS lookups)",
         "A default-deny policy plus allow rules is right, but one missing rule breaks the app only at "
         "run time, and only on a cluster whose CNI enforces policies (Calico, not minikube's default): "
         "the frontend times out calling the API while Argo CD shows everything Synced and Healthy. The "
         "message names the path and the policies that block it.",
         _NODEPORT + "---\n" + _DENY + "---\n" + example_deployment(),
         _NODEPORT + "---\n" + _DENY + "---\n" + _POLICY % "web" + "---\n" + example_deployment(),
         check_traffic_paths),
]
