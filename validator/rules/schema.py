"""schema/: objects must be what the cluster's API accepts. Mostly emitted by the schema stage
(kubeconform); the policy checks below catch what the API server validates but the OpenAPI schemas
cannot express (port name syntax, port ranges, duplicate list entries)."""

from __future__ import annotations

import re
from typing import Iterable

from ..findings import Problem, Severity
from ..model import WORKLOAD_KINDS, Manifest, containers
from .base import Context, Rule
from .examples import example_deployment
from .probes import HANDLERS, PROBES, port_number

CATEGORY = "schema"

_DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: %s
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "web:1.0"%s}]
"""


# --- policy checks ------------------------------------------------------------------------------

#: IANA_SVC_NAME (RFC 6335): 1-15 of [a-z0-9-], at least one letter, no '-' at either end or twice.
_IANA_SVC_NAME = re.compile(r"(?=.*[a-z])(?!-)(?!.*--)[a-z0-9-]{1,15}(?<!-)")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _bad_port_name(name) -> bool:
    return isinstance(name, str) and not _IANA_SVC_NAME.fullmatch(name)


def _named_ports(m: Manifest) -> Iterable[tuple[str, str, tuple]]:
    """(what, name, path) of every port name that must be an IANA_SVC_NAME: container ports,
    probe ports and Service targetPorts given by name."""
    for c in containers(m):
        for i, p in enumerate(c.spec.get("ports") or []):
            if isinstance(p, dict) and "name" in p:
                yield f"{c.label} port name", p["name"], c.path + ("ports", i, "name")
        for probe in PROBES:
            for handler in HANDLERS:
                h = (c.spec.get(probe) or {}).get(handler) if isinstance(c.spec.get(probe), dict) else None
                if isinstance(h, dict) and isinstance(h.get("port"), str) and port_number(h["port"]) is None:
                    yield f"{c.label} {probe} port", h["port"], c.path + (probe, handler, "port")
    if m.kind == "Service" and isinstance(m.doc.get("spec"), dict):
        for i, p in enumerate(m.doc["spec"].get("ports") or []):
            target = p.get("targetPort") if isinstance(p, dict) else None
            if isinstance(target, str) and port_number(target) is None:
                yield "Service targetPort", target, ("spec", "ports", i, "targetPort")


def check_port_name(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for what, name, path in _named_ports(m):
        if _bad_port_name(name):
            yield Problem(f"{m.kind} {m.name} {what} {name!r} is not a valid port name (IANA_SVC_NAME: at "
                          "most 15 characters, lowercase letters, digits and '-', at least one letter, no "
                          "'-' at either end or twice in a row); the API server rejects it", path)
    if m.kind == "Service" and isinstance(m.doc.get("spec"), dict):
        for i, p in enumerate(m.doc["spec"].get("ports") or []):
            name = p.get("name") if isinstance(p, dict) else None
            if isinstance(name, str) and name and not _DNS_LABEL.fullmatch(name):
                yield Problem(f"Service {m.name} port name {name!r} is not a DNS label (at most 63 lowercase "
                              "letters, digits and '-', starting and ending with a letter or digit); the API "
                              "server rejects it", ("spec", "ports", i, "name"))


def _numbered_ports(m: Manifest) -> Iterable[tuple[str, object, tuple, bool]]:
    """(what, value, path, zero allowed) of every port number to range-check. NodePorts have their
    own rule (refs/nodeport)."""
    for c in containers(m):
        for i, p in enumerate(c.spec.get("ports") or []):
            if isinstance(p, dict):
                for field, zero in (("containerPort", False), ("hostPort", True)):
                    if field in p:
                        yield f"{c.label} {field}", p[field], c.path + ("ports", i, field), zero
        for probe in PROBES:
            for handler in HANDLERS:
                h = (c.spec.get(probe) or {}).get(handler) if isinstance(c.spec.get(probe), dict) else None
                if isinstance(h, dict) and "port" in h:
                    yield f"{c.label} {probe} port", h["port"], c.path + (probe, handler, "port"), False
    if m.kind == "Service" and isinstance(m.doc.get("spec"), dict):
        for i, p in enumerate(m.doc["spec"].get("ports") or []):
            if isinstance(p, dict):
                for field, zero in (("port", False), ("targetPort", True)):  # targetPort 0: the port
                    if field in p:
                        yield f"Service {field}", p[field], ("spec", "ports", i, field), zero


def check_port_range(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for what, value, path, zero in _numbered_ports(m):
        number = port_number(value)
        if number is None or (zero and number == 0) or 1 <= number <= 65535:
            continue
        yield Problem(f"{m.kind} {m.name} {what} {number} is not a port number (1-65535); the API server "
                      "rejects it", path)


def check_duplicate_env(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for c in containers(m):
        seen: dict[str, int] = {}
        for i, env in enumerate(c.spec.get("env") or []):
            name = env.get("name") if isinstance(env, dict) else None
            if not isinstance(name, str):
                continue
            if name in seen:
                yield Problem(f"{c.label} sets env {name} twice (entries {seen[name]} and {i}); the last one "
                              "wins silently and server-side apply rejects the duplicate. Keep one",
                              c.path + ("env", i, "name"))
            else:
                seen[name] = i


RULES = [
    Rule("schema/invalid", Severity.ERROR,
         "a field of the wrong type, an unknown field (strict), or a missing required field",
         "The API server rejects such an object at sync time, or worse, drops an unknown field "
         "silently (a typo like `imagePullPolcy` is simply ignored). kubeconform runs in strict mode "
         "against the cluster version's schemas, offline.",
         _DEPLOY % ('"2"', ", imagePullPolcy: Always"), _DEPLOY % ("2", "")),
    Rule("schema/removed-api", Severity.ERROR,
         "a built-in API group/version the cluster's Kubernetes version no longer serves",
         "Removed APIs (for example `extensions/v1beta1` Ingress, `policy/v1beta1` "
         "PodDisruptionBudget) make the sync fail with `no matches for kind`. An object without a "
         "schema is an error, never a skip.",
         "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n"
         "spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}\n",
         "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n"
         "spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}\n"),
    Rule("schema/unknown-kind", Severity.ERROR,
         "a kind that neither Kubernetes nor any CRD in play defines",
         "Without its CRD the cluster cannot store the object; a misspelt kind or a missing CRD "
         "shows up here instead of as a failed sync. CRDs rendered by a chart, and Argo CD's own, "
         "count as in play.",
         "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
         "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: p}\nspec: {}\n"),
    Rule("schema/annotations-too-large", Severity.ERROR,
         "an object whose annotations (keys and values) exceed 256 KiB in total",
         "The API server refuses the object (`metadata.annotations: Too long: must have at most 262144 "
         "bytes`, apimachinery's TotalAnnotationSizeLimitB) although its schema allows any string. A "
         "config file or a certificate bundle inlined into an annotation is the usual cause; put it in "
         "a ConfigMap or a mounted file. (Client-side apply also copies the whole object into the "
         "`last-applied-configuration` annotation, which is why Argo CD offers `ServerSideApply=true` "
         "for very large objects such as CRDs.)",
         "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  annotations:\n"
         "    example.com/bundle: \"...300 KiB of PEM text...\"\n",
         "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  annotations: {example.com/owner: team-web}\n"
         "data:\n  bundle.pem: \"...the PEM text...\"\n"),
    Rule("schema/object-too-large", Severity.ERROR,
         "a ConfigMap or Secret whose data exceeds 1 MiB",
         "ConfigMaps and Secrets live in etcd and are capped at 1 MiB of data (`core.MaxSecretSize`: the "
         "values of `data`, `binaryData` and `stringData`, Secret data counted decoded). The sync fails "
         "with `Too long: must have at most 1048576 bytes`. Ship large files in the image, a volume or "
         "an object store instead.",
         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata:\n  model.bin: \"...2 MiB of text...\"\n",
         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata:\n  settings.json: '{\"level\": \"info\"}'\n"),
    Rule("schema/non-finite-number", Severity.ERROR,
         "a `.nan` or `.inf` value anywhere in an object",
         "YAML can spell NaN and infinity, JSON cannot: the object cannot be sent to the API server "
         "(kubectl and Argo CD fail to convert it) and no schema check can read it. Quote the value "
         "if it is meant as text.",
         "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  annotations: {example.com/ratio: .nan}\n",
         "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  annotations: {example.com/ratio: \".nan\"}\n"),
    Rule("schema/not-kubernetes", Severity.ERROR,
         "a YAML document in a manifest stream that is not a Kubernetes object",
         "Every document Argo CD applies needs `apiVersion`, `kind` and `metadata.name`; anything "
         "else (a values file passed by mistake, a stray list) fails the sync.",
         "replicas: 2\nimage: web:1.0\n",
         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n"),
    Rule("schema/malformed", Severity.ERROR,
         "an object (or Argo CD object) a rule or stage could not read: a field of the wrong type or shape",
         "`spec: \"oops\"` or `containers: 5` is refused by the API server; the validator says so for "
         "the object and the rule that met it, instead of crashing or skipping the object silently. "
         "The other rules go on with what they can read.",
         "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: oops\n",
         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n"),
    Rule("schema/port-name", Severity.ERROR,
         "a container port, probe port or Service targetPort name that is not an IANA_SVC_NAME, or a "
         "Service port name that is not a DNS label",
         "The API server rejects a port name longer than 15 characters, with capitals or underscores, "
         "or without a letter, but the OpenAPI schemas kubeconform checks against do not say so: the "
         "mistake shows up only as a failed sync.",
         example_deployment(container={"ports": "[{name: http_main, containerPort: 8080}]",
                                       "livenessProbe": "{httpGet: {path: /health, port: http_main}}",
                                       "readinessProbe": "{httpGet: {path: /ready, port: http_main}}"}),
         example_deployment(container={"ports": "[{name: http-main, containerPort: 8080}]",
                                       "livenessProbe": "{httpGet: {path: /health, port: http-main}}",
                                       "readinessProbe": "{httpGet: {path: /ready, port: http-main}}"}),
         check_port_name, kinds=WORKLOAD_KINDS | {"Service"}),
    Rule("schema/port-range", Severity.ERROR,
         "a containerPort, hostPort, probe port, Service port or targetPort outside 1-65535",
         "The schemas only say `integer`; the API server rejects a port of 0 or above 65535 at sync "
         "time. NodePorts are checked against the cluster's range by refs/nodeport.",
         example_deployment(container={"ports": "[{name: http, containerPort: 80800}]"}),
         example_deployment(container={"ports": "[{name: http, containerPort: 8080}]"}),
         check_port_range, kinds=WORKLOAD_KINDS | {"Service"}),
    Rule("schema/duplicate-env", Severity.ERROR,
         "a container that sets the same env var name twice in `env`",
         "Only the last entry takes effect, so the value a reviewer reads first is not the one the "
         "app gets; server-side apply (Argo CD's `ServerSideApply=true`) rejects the object outright.",
         example_deployment(container={"env": "[{name: LOG_LEVEL, value: info}, {name: LOG_LEVEL, value: debug}]"}),
         example_deployment(container={"env": "[{name: LOG_LEVEL, value: info}]"}),
         check_duplicate_env, kinds=WORKLOAD_KINDS),
]
