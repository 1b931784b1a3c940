"""images/: an image must name an immutable version Argo CD can see change."""

from __future__ import annotations

from typing import Iterable

from ..findings import Problem, Severity
from ..model import WORKLOAD_KINDS, Manifest, containers
from .base import Context, Rule

CATEGORY = "images"


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """'reg:5000/team/app:1.2@sha256:..' -> ('reg:5000/team/app', '1.2', 'sha256:..')."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    name, tag = image, None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = image.rsplit(":", 1)
    return name, tag, digest


def registry_of(name: str) -> str:
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def check_tag(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for c in containers(m):
        image = c.spec.get("image")
        if not isinstance(image, str) or not image:
            yield Problem(f"{c.label} has no image", c.path + ("image",))
            continue
        _, tag, digest = split_image(image)
        if digest:
            continue
        if tag is None:
            yield Problem(f"{c.label} image {image!r} has no tag (means 'latest'); pin a version",
                          c.path + ("image",))
        elif tag == "latest":
            yield Problem(f"{c.label} image {image!r} uses the mutable tag 'latest'; pin a version",
                          c.path + ("image",))


def check_pull_policy(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for c in containers(m):
        image = c.spec.get("image")
        if c.spec.get("imagePullPolicy") == "Always" and isinstance(image, str):
            _, tag, digest = split_image(image)
            if digest or (tag and tag != "latest"):
                yield Problem(f"{c.label} pulls the pinned image {image!r} on every start "
                              "(imagePullPolicy: Always); IfNotPresent is enough",
                              c.path + ("imagePullPolicy",))


def check_registry(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if not ctx.allowed_registries:
        return
    for c in containers(m):
        image = c.spec.get("image")
        if not isinstance(image, str):
            continue
        name, _, _ = split_image(image)
        reg = registry_of(name)
        local = "/" not in name  # a bare name: an image built into the cluster (minikube)
        if not local and not any(name.startswith(a) or reg == a for a in ctx.allowed_registries):
            yield Problem(f"{c.label} image {image!r} is from {reg}, not an allowed registry "
                          f"({', '.join(ctx.allowed_registries)})", c.path + ("image",))


_POD = """apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
    - name: web
      image: %s
"""

RULES = [
    Rule("images/latest-tag", Severity.ERROR,
         "an image with the tag `latest` or no tag at all",
         "Argo CD compares manifests, not registries: a new image pushed under the same tag is "
         "invisible to it, and rolling back to a revision that names `latest` rolls back nothing. "
         "Only an immutable version (or a digest) makes a deploy and a rollback real.",
         _POD % "ghcr.io/acme/web:latest", _POD % "ghcr.io/acme/web:1.4.2",
         check_tag, kinds=WORKLOAD_KINDS),
    Rule("images/pull-always", Severity.WARNING,
         "`imagePullPolicy: Always` with a pinned tag or digest",
         "A pinned image never changes, so pulling it on every start only adds a registry round "
         "trip and makes pods fail to start when the registry is down (or, on minikube, when the "
         "image was only built locally).",
         (_POD % "ghcr.io/acme/web:1.4.2") + "      imagePullPolicy: Always\n",
         (_POD % "ghcr.io/acme/web:1.4.2") + "      imagePullPolicy: IfNotPresent\n",
         check_pull_policy, kinds=WORKLOAD_KINDS),
    Rule("images/registry", Severity.ERROR,
         "an image from a registry not listed in the config's `allowedRegistries`",
         "Pulling only from registries you trust is a supply-chain control; the list lives in "
         "`.gitops-validator.yaml`. Bare names (images built into the cluster) are always allowed. "
         "The rule does nothing while the list is empty.",
         _POD % "evil.example.com/web:1.0", _POD % "ghcr.io/acme/web:1.0",
         check_registry, kinds=WORKLOAD_KINDS),
]
