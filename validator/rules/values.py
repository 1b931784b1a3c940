"""values/: value files must fit the chart. Emitted by the schema stage (values) and the renderer."""

from __future__ import annotations

from ..findings import Severity
from .base import Rule

CATEGORY = "values"

RULES = [
    Rule("values/schema", Severity.ERROR,
         "the layered values (chart defaults, then each value file in order) fail the chart's "
         "`values.schema.json`",
         "Helm refuses to render such values, so Argo CD shows a ComparisonError and deploys "
         "nothing. The finding points at the value file and line that set the bad value.",
         "# clusters/minikube/values/todo-backend.yaml\nreplicaCount: two\n",
         "# clusters/minikube/values/todo-backend.yaml\nreplicaCount: 2\n"),
    Rule("values/unknown-key", Severity.ERROR,
         "a key in an override value file that neither the chart's `values.yaml` nor its "
         "`values.schema.json` has",
         "Helm ignores keys no template reads: a misspelt `resources.limit` ships with no limit at "
         "all and nobody notices. Maps the chart leaves open accept any key: empty in `values.yaml` "
         "(`podAnnotations: {}`), or opened by the schema (`additionalProperties` true or a schema, "
         "a matching `patternProperties`). \"Did you mean\" names a sibling only when the key is a "
         "likely typo of it (the same but for case and `_ - .`, or at most two edits away).",
         "resources:\n  limit: {cpu: 500m}   # did you mean 'limits'?\n",
         "resources:\n  limits: {cpu: 500m}\n"),
    Rule("values/render-failed", Severity.ERROR,
         "`helm template` fails for the app (a template error, a `required` value, a bad schema)",
         "What Helm cannot render Argo CD cannot sync; the message is Helm's own.",
         "# templates/deployment.yaml\nimage: {{ required \"image.tag\" .Values.image.tag }}\n"
         "# values: image.tag missing\n",
         "# values\nimage:\n  tag: 1.0.0\n"),
]
