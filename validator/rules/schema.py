"""schema/: objects must be what the cluster's API accepts. Emitted by the schema stage (kubeconform)."""

from __future__ import annotations

from ..findings import Severity
from .base import Rule

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
]
