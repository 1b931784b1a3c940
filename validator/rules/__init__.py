"""The rule registry: one explicit table of every rule, family by family."""

from __future__ import annotations

from . import (argocd, capacity, images, kustomize, network, probes, projects, refs, resources, schema, secrets, security,
               values, yamlfile)
from .base import Check, ClusterProblem, Context, Rule

FAMILIES = (yamlfile, schema, values, resources, probes, secrets, refs, network, images, security, argocd, kustomize,
            projects, capacity)

REGISTRY: dict[str, Rule] = {}
for _family in FAMILIES:
    for _rule in _family.RULES:
        assert _rule.id not in REGISTRY, f"duplicate rule id {_rule.id}"
        assert _rule.category == _family.CATEGORY, f"{_rule.id} declared in {_family.__name__}"
        REGISTRY[_rule.id] = _rule

POLICY_RULES = tuple(r for r in REGISTRY.values() if r.check is not None)
CLUSTER_RULES = tuple(r for r in REGISTRY.values() if r.cluster_check is not None)

__all__ = ["REGISTRY", "POLICY_RULES", "CLUSTER_RULES", "Rule", "Context", "Check", "ClusterProblem"]
