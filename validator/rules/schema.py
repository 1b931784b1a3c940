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
]
