"""Issue 12: where findings point (validator/provenance.py, policy.point), their related locations in
every output format, partial renders after a values error (validator/partialrender.py) and
refs/not-checked. Fixtures only; the end-to-end cases on a copy of this repo are in test_repo.py."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from gitops_validate import report
from gitops_validate.findings import RENDERED_BY, Finding, Location, Severity
from gitops_validate.model import ClusterFacts, Manifest
from gitops_validate.partialrender import _as_override, _fall_back, valid_part
from gitops_validate.policy import evaluate
from gitops_validate.provenance import ValueIndex, template_line, template_reference, values_line, where
from gitops_validate.render import RenderRequest
from gitops_validate.rules import REGISTRY, Context
from gitops_validate.suppress import fingerprint
from gitops_validate.yamlio import load_all

TEMPLATE = "chart/templates/deployment.yaml"


def write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(textwrap.dedent(text))


def rendered(doc: str, tmp_path: Path, value_files: tuple[str, ...] = ()) -> Manifest:
    m = Manifest(yaml.safe_load(textwrap.dedent(doc)), TEMPLATE, None)  # no line: rendered, not read
    m.values = ValueIndex.of(tmp_path, "chart", list(value_files))
    return m


# --- findings and their related locations in each format ----------------------------------------

FINDING = Finding("resources/request-exceeds-limit", Severity.ERROR, "requests 256Mi but is limited to 128Mi",
                  "values/v.yaml", 3, None, "web", (Location(TEMPLATE, 40, RENDERED_BY),))


def test_a_baseline_fingerprint_does_not_change_with_the_related_location():
    """Before, the template was named in the message; a baseline written then still matches."""
    before = Finding(FINDING.rule, FINDING.severity, FINDING.message + f" (set here, rendered by {TEMPLATE})",
                     FINDING.file, FINDING.line, None, "web")
    assert fingerprint(FINDING) == fingerprint(before)
    # a related location of another kind is not part of the identity either
    other = Finding("refs/in-cluster-url", Severity.ERROR, "m", "a.yaml", 1, None, "web")
    assert fingerprint(other) == fingerprint(Finding(*[getattr(other, f) for f in ("rule", "severity", "message",
                                                        "file", "line", "object", "app")],
                                                     (Location("b.yaml", 2, "URL at"),)))


def test_related_locations_in_json_sarif_text_and_github():
    summary = report.Summary.of([FINDING], 1, 1, 0.1)
    out = io.StringIO()
    report.as_json([FINDING], summary, out)
    assert json.loads(out.getvalue())["findings"][0]["related"] == [
        {"file": TEMPLATE, "line": 40, "label": "rendered by"}]
    out = io.StringIO()
    report.sarif([FINDING], summary, out, rules_url="https://example.invalid/rules.md")
    sarif = json.loads(out.getvalue())
    schema_file = Path(__file__).resolve().parents[1] / ".tools" / "sarif" / "sarif-2.1.0.json"
    if not schema_file.is_file():
        pytest.fail(f"{schema_file} is missing: run `make setup`")
    jsonschema.validate(sarif, json.loads(schema_file.read_text()))
    result = sarif["runs"][0]["results"][0]
    assert result["relatedLocations"] == [{"id": 0, "message": {"text": "rendered by"}, "physicalLocation": {
        "artifactLocation": {"uri": TEMPLATE, "uriBaseId": "%SRCROOT%"}, "region": {"startLine": 40}}}]
    out = io.StringIO()
    report.text([FINDING], summary, out, colour=False)
    assert f"(set at values/v.yaml:3, rendered by {TEMPLATE}:40)" in out.getvalue()
    out = io.StringIO()
    report.github([FINDING], summary, out)
    assert out.getvalue().startswith("::error file=values/v.yaml,line=3,")
    assert f"set at values/v.yaml:3, rendered by {TEMPLATE}:40)" in out.getvalue()
    plain = Finding("images/latest-tag", Severity.ERROR, "m", "a.yaml", 1)
    out = io.StringIO()
    report.sarif([plain], summary, out, rules_url="https://example.invalid/rules.md")
    assert "relatedLocations" not in json.loads(out.getvalue())["runs"][0]["results"][0]
    assert plain.as_dict()["related"] == [] and plain.where() == ""


# --- provenance: value file line, template line --------------------------------------------------

def test_a_value_points_at_its_line_with_the_template_line_that_renders_it(tmp_path):
    write(tmp_path, "chart/values.yaml", """\
        image: {repository: web, pullPolicy: IfNotPresent}
        resources: {limits: {memory: 1Gi}}
        """)
    write(tmp_path, "v.yaml", "image:\n  pullPolicy: Always\n")
    write(tmp_path, TEMPLATE, """\
        spec:
          containers:
            - name: web
              imagePullPolicy: {{ .Values.image.pullPolicy }}
              {{- with .Values.resources }}
              resources:
                {{- toYaml . | nindent 12 }}
              {{- end }}
        """)
    m = rendered("spec: {containers: [{name: web, imagePullPolicy: Always, resources: {limits: {memory: 1Gi}}}]}",
                 tmp_path, ("v.yaml",))
    # the key differs (imagePullPolicy vs pullPolicy): found through the template line that reads it
    place = where(m, ("spec", "containers", 0, "imagePullPolicy"), tmp_path)
    assert (place.file, place.line, place.overridden) == ("v.yaml", 2, True)
    assert place.related == (Location(TEMPLATE, 4, RENDERED_BY),)
    # same key, chart default: the chart's values.yaml, and the `with` that reads .Values.resources
    place = where(m, ("spec", "containers", 0, "resources", "limits", "memory"), tmp_path)
    assert (place.file, place.line, place.overridden) == ("chart/values.yaml", 2, False)
    assert place.related == (Location(TEMPLATE, 5, RENDERED_BY),)


def test_template_lines(tmp_path):
    write(tmp_path, TEMPLATE, """\
        spec:
          ports:
            - name: http
              targetPort: http
          {{- with .Values.resource }}
          resources:
            {{- toYaml . | nindent 4 }}
          {{- end }}
          other:
            port: {{ .Values.service.port | quote }}
        """)
    # `key: value` written once in the template
    assert template_line(tmp_path, TEMPLATE, ("spec", "ports", 0, "targetPort"), "http") == 4
    # a field the object lacks: the `with` that left it out
    obj = {"spec": {"ports": []}}
    assert template_line(tmp_path, TEMPLATE, ("spec", "resources", "limits"), None, obj=obj) == 5
    assert template_line(tmp_path, TEMPLATE, ("spec", "ports", 0, "name"), "web") is None  # not spelt out
    assert template_reference(tmp_path, TEMPLATE, "port") == ("service", "port")
    assert template_reference(tmp_path, TEMPLATE, "targetPort") is None
    assert values_line(tmp_path, TEMPLATE, ("resource", "limits", "cpu")) == 5  # nearest parent read
    assert values_line(tmp_path, TEMPLATE, ("serviceAccount", "name")) is None


def test_booleans_are_indexed(tmp_path):
    write(tmp_path, "chart/values.yaml", "podSecurityContext:\n  runAsNonRoot: false\n  runAsUser: 1001\n")
    index = ValueIndex.of(tmp_path, "chart", [])
    obj = {"spec": {"securityContext": {"runAsNonRoot": False}}}
    assert index.locate(obj, (("spec", "securityContext", "runAsNonRoot"),)) == ("chart/values.yaml", 2)


def test_the_index_is_built_only_when_a_finding_needs_it(tmp_path):
    write(tmp_path, "chart/values.yaml", "a: 1\n")
    index = ValueIndex.of(tmp_path, "chart", [])
    assert index._source is not None and not index._setters  # nothing read yet
    index.locate({"a": 1}, (("a",),))
    assert index._source is None and index._setters


# --- the side an override changed ---------------------------------------------------------------

def _two_apps(tmp_path: Path, backend_port: str, url_port: str) -> list[Manifest]:
    write(tmp_path, "back/values.yaml", "service: {port: 8001}\n")
    write(tmp_path, "back/templates/service.yaml", "spec:\n  ports:\n    - port: {{ .Values.service.port }}\n")
    write(tmp_path, "front/values.yaml", "config: {API: 'http://api:8001'}\n")
    write(tmp_path, "front/templates/configmap.yaml", "data:\n  {{- toYaml .Values.config | nindent 2 }}\n")
    write(tmp_path, "cluster/back.yaml", f"service: {{port: {backend_port}}}\n")
    write(tmp_path, "cluster/front.yaml", f"config: {{API: 'http://api:{url_port}'}}\n")
    svc = Manifest({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "n"},
                    "spec": {"ports": [{"port": int(backend_port)}]}}, "back/templates/service.yaml", None)
    svc.values = ValueIndex.of(tmp_path, "back", ["cluster/back.yaml"])
    cm = Manifest({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "front", "namespace": "n"},
                   "data": {"API": f"http://api:{url_port}"}}, "front/templates/configmap.yaml", None)
    cm.values = ValueIndex.of(tmp_path, "front", ["cluster/front.yaml"])
    return [svc, cm]


def test_a_port_mismatch_points_at_the_side_the_override_changed(tmp_path):
    objs = _two_apps(tmp_path, "8002", "8001")  # the backend's port changed
    [f] = evaluate(objs, Context(tuple(objs)), rules=[REGISTRY["refs/in-cluster-url"]], repo=tmp_path)
    assert (f.file, f.line) == ("cluster/back.yaml", 1), f
    assert f.related == (Location("back/templates/service.yaml", 3, RENDERED_BY),
                         Location("cluster/front.yaml", 1, "URL at"))
    objs = _two_apps(tmp_path, "8001", "8002")  # the URL changed
    [f] = evaluate(objs, Context(tuple(objs)), rules=[REGISTRY["refs/in-cluster-url"]], repo=tmp_path)
    assert (f.file, f.line) == ("cluster/front.yaml", 1), f
    assert f.related[-1].label == "Service port at" and f.related[-1].file == "cluster/back.yaml"


def test_a_renamed_declared_secret_key_points_at_the_declaration():
    deploy = yaml.safe_load("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: api, namespace: todo}
        spec:
          template:
            spec:
              containers:
                - name: api
                  env:
                    - name: JWT_SECRET
                      valueFrom: {secretKeyRef: {name: api-secrets, key: JWT_SECRET}}
        """)
    m = Manifest(deploy, "apps/api/templates/deployment.yaml", None)
    facts = ClusterFacts(name="m", directory="clusters/m",
                         external_secrets={("todo", "api-secrets"): frozenset({"DATABASE_URL", "JWT_SECRETS"})},
                         external_secret_lines={("todo", "api-secrets"): {"": 5, "DATABASE_URL": 6, "JWT_SECRETS": 7}})
    [f] = evaluate([m], Context((m,), facts), rules=[REGISTRY["secrets/missing-key"]], repo=Path("/nonexistent"))
    assert (f.file, f.line) == ("clusters/m/cluster.yaml", 7), f
    assert f.related == (Location("apps/api/templates/deployment.yaml", None, "read by"),)
    # no declared key looks like a rename: the reader is where to look
    facts.external_secrets[("todo", "api-secrets")] = frozenset({"DATABASE_URL"})
    [f] = evaluate([m], Context((m,), facts), rules=[REGISTRY["secrets/missing-key"]], repo=Path("/nonexistent"))
    assert f.file == "apps/api/templates/deployment.yaml" and f.related == ()


def test_a_blocked_path_points_at_the_policy_rule_that_almost_admits_it():
    # read from a file: the policy's lines are known
    [doc] = list(load_all(textwrap.dedent("""\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: front, namespace: n}
        spec:
          podSelector: {matchLabels: {app: front}}
          policyTypes: [Egress]
          egress:
            - ports: [{port: 53, protocol: UDP}]
            - to: [{podSelector: {matchLabels: {app: back}}}]
              ports: [{port: 8002}]
        """)))
    policy = Manifest(doc.data, "policy.yaml", doc.line, yaml=doc)
    objs = [policy] + [Manifest(yaml.safe_load(textwrap.dedent(t)), "objs.yaml", None) for t in (
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: front, namespace: n}
        spec:
          template:
            metadata: {labels: {app: front}}
            spec: {containers: [{name: front, image: front:1, env: [{name: API, value: 'http://back:8001'}]}]}
        """,
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: back, namespace: n}
        spec:
          template:
            metadata: {labels: {app: back}}
            spec: {containers: [{name: back, image: back:1, ports: [{name: http, containerPort: 8001}]}]}
        """,
        """\
        apiVersion: v1
        kind: Service
        metadata: {name: back, namespace: n}
        spec: {selector: {app: back}, ports: [{port: 8001, targetPort: http}]}
        """)]
    [f] = evaluate(objs, Context(tuple(objs)), rules=[REGISTRY["refs/traffic-blocked"]])
    assert (f.file, f.line) == ("policy.yaml", 10), f   # the port of the rule that names the backend
    assert f.related == (Location("objs.yaml", None, "the caller"),)


# --- refs/not-checked ------------------------------------------------------------------------------

def _url_objects(host: str) -> list[Manifest]:
    cm = Manifest({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "front", "namespace": "todo"},
                   "data": {"A": f"http://{host}:8001", "B": f"http://{host}:8001/x"}}, "cm.yaml", None)
    return [cm]


def test_a_url_into_an_app_that_did_not_render_is_not_checked_and_says_so_once():
    objs = _url_objects("todo-backend")
    rules = [REGISTRY["refs/in-cluster-url"]]
    fs = evaluate(objs, Context(tuple(objs), unrendered=frozenset({("todo-backend", "todo")})), rules=rules)
    assert [(f.rule, f.severity) for f in fs] == [("refs/not-checked", Severity.WARNING)], fs
    assert "not checked, todo-backend did not render" in fs[0].message and "1 more URL" in fs[0].message
    # an app that did not render in another namespace: the URL is checked as usual
    fs = evaluate(objs, Context(tuple(objs), unrendered=frozenset({("todo-backend", "other")})), rules=rules)
    assert [f.rule for f in fs] == ["refs/in-cluster-url"] * 2
    # turned off in the config: nothing, and never the error instead
    fs = evaluate(objs, Context(tuple(objs), unrendered=frozenset({("todo-backend", "todo")})),
                  {"refs/not-checked": None}, rules=rules)
    assert fs == []


# --- partial renders ------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {
    "replicaCount": {"type": "integer"},
    "image": {"type": "object", "properties": {"tag": {"type": "string", "not": {"const": "latest"}},
                                               "pullPolicy": {"type": "string"}}, "additionalProperties": False},
    "probe": {"type": ["object", "null"]}}, "additionalProperties": False}


def test_fall_back_replaces_only_the_refused_values():
    chart = {"replicaCount": 2, "image": {"tag": "1.0", "pullPolicy": "IfNotPresent"}, "probe": {"path": "/"}}
    values = {"replicaCount": "two", "image": {"tag": "latest", "pullPolicy": "Always"}}
    fixed = _fall_back(values, chart, jsonschema.Draft7Validator(SCHEMA))
    assert fixed == {"replicaCount": 2, "image": {"tag": "1.0", "pullPolicy": "Always"}}
    # the chart's own default refused: no partial render
    assert _fall_back({"replicaCount": "two"}, {"replicaCount": "two"}, jsonschema.Draft7Validator(SCHEMA)) is None


def test_the_override_document_keeps_deletions():
    chart = {"probe": {"path": "/"}, "image": {"tag": "1.0", "pullPolicy": "IfNotPresent"}}
    values = {"image": {"tag": "1.0", "pullPolicy": "Always"}}   # probe: null in an override
    assert _as_override(chart, values) == {"image": {"tag": "1.0", "pullPolicy": "Always"}, "probe": None}


def test_valid_part_drops_unknown_keys_and_keeps_the_rest(tmp_path):
    write(tmp_path, "chart/values.yaml", "replicaCount: 2\nimage: {tag: '1.0', pullPolicy: IfNotPresent}\nprobe: {path: /}\n")
    (tmp_path / "chart/values.schema.json").write_text(json.dumps(SCHEMA))
    write(tmp_path, "v.yaml", "replicaCont: 3\nimage: {pullPolicy: Always}\nprobe: null\n")
    req = RenderRequest("web", "chart", "web", "n", "1.35", (), ["v.yaml"], None)
    part = valid_part(tmp_path, req)
    assert part is not None and part.value_files == []
    assert yaml.safe_load(part.values_yaml) == {"replicaCount": 2, "image": {"tag": "1.0", "pullPolicy": "Always"},
                                                "probe": None}
    write(tmp_path, "v.yaml", "replicaCount: [3\n")  # does not parse: nothing to salvage
    assert valid_part(tmp_path, req) is None


def test_rules_md_carries_the_accuracy_figures():
    """Issue 12's acceptance: the pointing figure with its edit list, and every disagreement with
    the peers' corpora, are in docs/rules.md (embedded from docs/accuracy.md by `make docs`)."""
    from gitops_validate import docs
    page = docs.render()
    accuracy = page[page.index("\n## Accuracy\n"):]
    assert "findings (" in accuracy and "point at the edited file and line" in accuracy
    assert "| Secret key renamed in the chart |" in accuracy          # a miss stays listed
    assert "Overall recall on shared checks" in accuracy and "Disagreements" in accuracy
    assert (docs.DOC.read_text() == page), "docs/rules.md is stale: run `make docs`"
