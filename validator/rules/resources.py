"""resources/: every container says what it needs (requests) and what it may use at most (limits)."""

from __future__ import annotations

import re
from typing import Iterable

from ..findings import Problem, Severity
from ..model import WORKLOAD_KINDS, Container, Manifest, containers
from .base import Context, Rule
from .examples import example_deployment

CATEGORY = "resources"

#: The resources every container must request and limit.
REQUIRED = ("cpu", "memory")

_SUFFIX = {
    "": 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "E": 1e18, "Ki": 2.0 ** 10, "Mi": 2.0 ** 20, "Gi": 2.0 ** 30, "Ti": 2.0 ** 40, "Pi": 2.0 ** 50,
    "Ei": 2.0 ** 60,
}
# <signedNumber><suffix>, suffix = binarySI | decimalSI | e<signedNumber> (Kubernetes' Quantity grammar).
# The exponent is tried first: "1E3" is 1000, "1E" is one exa.
_QUANTITY = re.compile(
    r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:[eE](?P<exp>[+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?")


def parse_quantity(value: str | int | float) -> float | None:
    """A Kubernetes quantity as a number: '100m' -> 0.1, '1Gi' -> 1073741824.0, '1e3' -> 1000.0.

    None when ``value`` is not a quantity (a typo like '128mb', a boolean, a list, ...).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    match = _QUANTITY.fullmatch(value.strip())
    if not match:
        return None
    number = float(match["num"])
    if match["exp"] is not None:
        return number * 10.0 ** int(match["exp"])
    return number * _SUFFIX[match["suffix"] or ""]


def _resources(c: Container) -> dict:
    r = c.spec.get("resources")
    return r if isinstance(r, dict) else {}


def _check_set(m: Manifest, section: str, noun: str) -> Iterable[Problem]:
    for c in containers(m):
        values = _resources(c).get(section)
        values = values if isinstance(values, dict) else {}
        base = c.path + ("resources", section)
        missing = [r for r in REQUIRED if values.get(r) in (None, "")]
        if missing:
            what = " and ".join(f"{r} {noun}" for r in missing)
            fields = ", ".join(f"resources.{section}.{r}" for r in missing)
            yield Problem(f"{c.label} has no {what}; set {fields}", base)
        for r in REQUIRED:
            if r not in missing and parse_quantity(values[r]) is None:
                yield Problem(f"{c.label} {r} {noun} {values[r]!r} is not a Kubernetes quantity "
                              f"(e.g. {'500m' if r == 'cpu' else '256Mi'}); the API server rejects it",
                              base + (r,))


def check_requests(m: Manifest, ctx: Context) -> Iterable[Problem]:
    yield from _check_set(m, "requests", "request")


def check_limits(m: Manifest, ctx: Context) -> Iterable[Problem]:
    yield from _check_set(m, "limits", "limit")


def check_request_le_limit(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for c in containers(m):
        res = _resources(c)
        requests, limits = res.get("requests"), res.get("limits")
        if not isinstance(requests, dict) or not isinstance(limits, dict):
            continue
        for name, req in requests.items():
            if name not in limits:
                continue
            r, lim = parse_quantity(req), parse_quantity(limits[name])
            if r is not None and lim is not None and r > lim:
                yield Problem(f"{c.label} requests {req} {name} but is limited to {limits[name]}; "
                              f"a request may not exceed its limit (the API server rejects the pod)",
                              c.path + ("resources", "requests", name),
                              related=(c.path + ("resources", "limits", name),))


_RES = "requests: {cpu: %s, memory: %s}\nlimits: {cpu: %s, memory: %s}"

RULES = [
    Rule("resources/missing-requests", Severity.ERROR,
         "a container or initContainer without a cpu or memory request",
         "The scheduler places pods by their requests: a container that requests nothing lands on a "
         "node with no room for it, is the first evicted under pressure (BestEffort), and makes "
         "capacity planning and autoscaling on utilisation impossible.",
         example_deployment(container={"resources": "limits: {cpu: 500m, memory: 256Mi}"}),
         example_deployment(),
         check_requests, kinds=WORKLOAD_KINDS),
    Rule("resources/missing-limits", Severity.ERROR,
         "a container or initContainer without a cpu or memory limit",
         "Without a memory limit one leaking container can take a whole node's memory and get "
         "other workloads OOM-killed; without a cpu limit a busy loop starves its neighbours. On a "
         "small cluster like minikube one runaway pod stalls everything.",
         example_deployment(container={"resources": "requests: {cpu: 100m, memory: 128Mi}"}),
         example_deployment(),
         check_limits, kinds=WORKLOAD_KINDS),
    Rule("resources/request-exceeds-limit", Severity.ERROR,
         "a request larger than its limit (quantities compared by value: 1 = 1000m, 1Gi = 1024Mi)",
         "The API server rejects a pod whose request exceeds its limit, so the Deployment never "
         "gets a ready replica and the sync stays Progressing until it times out.",
         example_deployment(container={"resources": _RES % ("'1'", "1Gi", "500m", "512Mi")}),
         example_deployment(container={"resources": _RES % ("500m", "1Gi", "'1'", "1024Mi")}),
         check_request_le_limit, kinds=WORKLOAD_KINDS),
]
