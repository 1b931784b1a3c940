"""probes/: a long-running container tells Kubernetes when it is alive and when it is ready, on a
port it really listens on."""

from __future__ import annotations

from typing import Iterable

from ..findings import Problem, Severity
from ..model import LONG_RUNNING_KINDS, WORKLOAD_KINDS, Container, Manifest, containers, port_number
from .base import Context, Rule
from .examples import example_deployment

CATEGORY = "probes"

PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
HANDLERS = ("httpGet", "tcpSocket", "grpc")


def _serving(m: Manifest, ctx: Context) -> Iterable[Container]:
    """Containers that run as long as the pod: regular containers and native sidecars of a
    long-running workload, or of a plain Pod that restarts and that a Service sends traffic to
    (not hooks, Jobs, CronJobs or other plain Pods: they are meant to finish)."""
    if m.is_hook():
        return
    if m.kind == "Pod":
        spec = m.doc.get("spec") if isinstance(m.doc.get("spec"), dict) else {}
        if spec.get("restartPolicy", "Always") != "Always" or \
                not ctx.services_selecting(m.namespace, m.metadata.get("labels") or {}):
            return
    elif m.kind not in LONG_RUNNING_KINDS:
        return
    yield from (c for c in containers(m) if c.long_running)


def _missing(m: Manifest, ctx: Context, probe: str, advice: str) -> Iterable[Problem]:
    for c in _serving(m, ctx):
        if not isinstance(c.spec.get(probe), dict):
            yield Problem(f"{c.label} of long-running {m.kind} {m.name} has no {probe}; {advice}",
                          c.path + (probe,))


def check_liveness(m: Manifest, ctx: Context) -> Iterable[Problem]:
    yield from _missing(m, ctx, "livenessProbe",
                        "add one (e.g. httpGet /health) so the kubelet restarts the container when it hangs")


def check_readiness(m: Manifest, ctx: Context) -> Iterable[Problem]:
    yield from _missing(m, ctx, "readinessProbe",
                        "add one (e.g. httpGet /ready) so the Service sends traffic only to ready pods "
                        "and a rolling update waits for them")


def _describe_ports(ports: list[dict]) -> str:
    if not ports:
        return "it declares no ports"
    shown = [f"{p['name']} {p.get('containerPort')}" if p.get("name") else str(p.get("containerPort"))
             for p in ports]
    return "its ports: " + ", ".join(shown)


def check_probe_port(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for c in containers(m):
        ports = c.ports()
        names = {p["name"] for p in ports if isinstance(p.get("name"), str) and p["name"]}
        numbers = {port_number(p.get("containerPort")) for p in ports}
        # httpGet, tcpSocket and grpc probes connect over TCP: a UDP or SCTP port always fails them
        tcp = [p for p in ports if str(p.get("protocol") or "TCP").upper() == "TCP"]
        tcp_names = {p.get("name") for p in tcp if p.get("name")}
        tcp_numbers = {port_number(p.get("containerPort")) for p in tcp}
        for probe in PROBES:
            spec = c.spec.get(probe)
            if not isinstance(spec, dict):
                continue
            for handler in HANDLERS:
                h = spec.get(handler)
                if not isinstance(h, dict) or h.get("port") in (None, ""):
                    continue
                port = h["port"]
                if not isinstance(port, (str, int)):
                    continue  # the schema stage reports a port that is neither a name nor a number
                number = port_number(port)
                path = c.path + (probe, handler, "port")
                if number is None and port not in names:
                    yield Problem(f"{c.label} {probe} {handler} uses port name {port!r}, which is not a "
                                  f"port of the container ({_describe_ports(ports)}); name the port or "
                                  "fix the probe", path)
                elif number is not None and number not in numbers:
                    yield Problem(f"{c.label} {probe} {handler} probes port {number}, which is not a "
                                  f"container port ({_describe_ports(ports)}); declare it under ports "
                                  "or probe the port the app listens on", path)
                elif (port not in tcp_names) if number is None else (number not in tcp_numbers):
                    yield Problem(f"{c.label} {probe} {handler} probes port {port!r}, which the container "
                                  "declares with a protocol other than TCP; probes connect over TCP, so it "
                                  "always fails. Probe a TCP port", path)


#: Probe fields that decide what is probed and when; two probes equal in all of them are identical.
_PROBE_FIELDS = HANDLERS + ("exec", "initialDelaySeconds", "periodSeconds", "timeoutSeconds",
                            "failureThreshold")


def check_identical_probes(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for c in containers(m):  # any kind: whoever set both probes meant them to differ
        if not c.long_running:
            continue
        live, ready = c.spec.get("livenessProbe"), c.spec.get("readinessProbe")
        if not isinstance(live, dict) or not isinstance(ready, dict):
            continue
        if all(live.get(f) == ready.get(f) for f in _PROBE_FIELDS) and any(live.get(h) for h in HANDLERS + ("exec",)):
            yield Problem(f"{c.label} of {m.kind} {m.name} has identical liveness and readiness probes; when "
                          "a dependency is slow the pod is restarted instead of only taken out of the "
                          "Service. Give liveness its own cheap endpoint (e.g. /health) or a larger "
                          "failureThreshold", c.path + ("livenessProbe",))


RULES = [
    Rule("probes/missing-liveness", Severity.ERROR,
         "a container of a long-running workload, of a Service-selected plain Pod, or a native sidecar, "
         "without a livenessProbe",
         "Without a liveness probe a process that deadlocks or hangs keeps its pod Running forever: "
         "Kubernetes only restarts containers that exit. Hooks, Jobs, CronJobs and plain Pods are "
         "not checked: they are meant to finish, except a plain Pod that restarts (restartPolicy "
         "Always) and that a Service selects: it serves.",
         example_deployment(container={"livenessProbe": None}),
         example_deployment(),
         check_liveness, kinds=WORKLOAD_KINDS),
    Rule("probes/missing-readiness", Severity.ERROR,
         "a container of a long-running workload, of a Service-selected plain Pod, or a native sidecar, "
         "without a readinessProbe",
         "Without a readiness probe a pod receives Service traffic as soon as its process starts, "
         "before the app listens, and a rolling update (and Argo CD's health check) treats a pod that "
         "never becomes able to serve as ready: a broken release replaces a good one.",
         example_deployment(container={"readinessProbe": None}),
         example_deployment(),
         check_readiness, kinds=WORKLOAD_KINDS),
    Rule("probes/unknown-port", Severity.ERROR,
         "a liveness, readiness or startup probe on a port (name or number) the container does not "
         "declare, or declares as UDP or SCTP",
         "A probe on a misspelt port name is rejected by the API server; a probe on a port nothing "
         "listens on fails forever, so the pod never becomes ready (readiness) or is restarted in a "
         "loop (liveness), and so does a TCP, HTTP or gRPC probe on a UDP port. Probing the "
         "declared, named port keeps the probe and the app in step.",
         example_deployment(container={"livenessProbe": "{httpGet: {path: /health, port: htp}}",
                                       "readinessProbe": "{tcpSocket: {port: 8081}}"}),
         example_deployment(container={"livenessProbe": "{httpGet: {path: /health, port: http}}",
                                       "readinessProbe": "{tcpSocket: {port: 8080}}"}),
         check_probe_port, kinds=WORKLOAD_KINDS),
    Rule("probes/identical", Severity.WARNING,
         "a container whose liveness and readiness probes are the same check with the same timing",
         "Readiness says \"do not send me traffic now\", liveness says \"restart me\". When both run "
         "the same check (often a /ready that also pings the database), a slow dependency restarts "
         "every pod at once instead of draining them from the Service, and the restarts make the "
         "outage worse. Use a cheap liveness endpoint, or at least a longer liveness failure window.",
         example_deployment(container={"livenessProbe": "{httpGet: {path: /ready, port: http}}"}),
         example_deployment(),
         check_identical_probes, kinds=WORKLOAD_KINDS),
]
