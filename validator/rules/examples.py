"""Example objects for the rules' documentation: a hardened Deployment that passes every policy rule.

The pod-level families (resources, probes, secrets, refs, security) start from it and change one
thing, so each failing example fails for one reason only.
"""

from __future__ import annotations

import textwrap

#: A Deployment that passes every policy rule; the examples of the pod-level families
#: (resources, probes, secrets, refs, security) start from it and change one thing.
_POD_FIELDS = {
    "securityContext": "{runAsNonRoot: true, runAsUser: 1001, seccompProfile: {type: RuntimeDefault}}",
}
_CONTAINER_FIELDS = {
    "ports": "[{name: http, containerPort: 8080}]",
    "resources": "requests: {cpu: 100m, memory: 128Mi}\nlimits: {cpu: 500m, memory: 256Mi}",
    "livenessProbe": "{httpGet: {path: /health, port: http}}",
    "readinessProbe": "{httpGet: {path: /ready, port: http}}",
    "securityContext": "allowPrivilegeEscalation: false\nreadOnlyRootFilesystem: true\n"
                       "capabilities: {drop: [ALL]}",
}


def _fields(fields: dict, indent: str) -> str:
    out = ""
    for key, value in fields.items():
        if value is None:
            continue
        if "\n" in value or (": " in value and value[0] not in "{['\""):  # block mapping
            out += f"{indent}{key}:\n" + textwrap.indent(value.rstrip("\n") + "\n", indent + "  ")
        else:
            out += f"{indent}{key}: {value}\n"
    return out


def example_deployment(name: str = "web", pod: dict | None = None, container: dict | None = None,
                       kind: str = "Deployment") -> str:
    """The hardened example workload, with pod-spec and container fields replaced (None drops one).

    Field values are YAML text: flow style on one line, or block style over several lines.
    """
    pod_fields = {**_POD_FIELDS, **(pod or {})}
    container = container or {}
    # fields the hardened container lacks (env, volumeMounts, ...) come first, after the image
    container_fields = {k: v for k, v in container.items() if k not in _CONTAINER_FIELDS}
    container_fields.update({k: container.get(k, v) for k, v in _CONTAINER_FIELDS.items()})
    first = f"        - name: {name}\n          image: ghcr.io/acme/{name}:1.4.2\n"
    return (f"apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n"
            f"  selector: {{matchLabels: {{app: {name}}}}}\n"
            f"  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n"
            + _fields(pod_fields, "      ")
            + "      containers:\n" + first + _fields(container_fields, "          "))
