"""Policy rules: the documented examples, edge cases of every rule, and the registry's shape."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml

from gitops_validate.model import CLUSTER_SCOPED, ClusterFacts, Manifest
from gitops_validate.policy import SKIP_ANNOTATION, evaluate
from gitops_validate.rules import POLICY_RULES, REGISTRY, Context
from gitops_validate.rules.resources import example_deployment, parse_quantity
from gitops_validate.rules.secrets import looks_secret

MY_FAMILIES = ("resources", "probes", "secrets", "refs", "security")


# --- helpers --------------------------------------------------------------------------------

def load(text: str, namespace: str | None = "default") -> list[Manifest]:
    """Manifests of a multi-document YAML text, namespaced kinds defaulted to ``namespace``."""
    out = []
    for doc in yaml.safe_load_all(textwrap.dedent(text)):
        if not isinstance(doc, dict):
            continue
        meta = doc.setdefault("metadata", {})
        if doc.get("kind") not in CLUSTER_SCOPED and "namespace" not in meta and namespace is not None:
            meta["namespace"] = namespace
        out.append(Manifest(doc=doc, file="x.yaml"))
    return out


def run(rule_id: str, text: str | list[Manifest], external: dict | None = None,
        namespace: str | None = "default") -> list:
    manifests = load(text, namespace) if isinstance(text, str) else text
    ctx = Context(objects=tuple(manifests),
                  facts=ClusterFacts(name="t", external_secrets=external or {}))
    return evaluate(manifests, ctx, rules=[REGISTRY[rule_id]])


def messages(rule_id: str, text, **kw) -> list[str]:
    return [f.message for f in run(rule_id, text, **kw)]


def deploy(**kw) -> str:
    return example_deployment(**kw)


# --- 1. every rule's examples ---------------------------------------------------------------

CHECKED = sorted(r.id for r in REGISTRY.values() if r.check is not None)
#: images/registry does nothing without a configured list; the examples pull from ghcr.io.
EXAMPLE_REGISTRIES = ("ghcr.io",)


def example_context(manifests: list[Manifest]) -> Context:
    # An example that starts with an Application (an app-of-apps) lists what it renders after it.
    if manifests and manifests[0].kind == "Application":
        for m in manifests[1:]:
            m.app = manifests[0].name
    return Context(objects=tuple(manifests), facts=ClusterFacts(name="t"),
                   allowed_registries=EXAMPLE_REGISTRIES)


@pytest.mark.parametrize("rule_id", CHECKED)
def test_bad_example_fires(rule_id):
    rule = REGISTRY[rule_id]
    manifests = load(rule.bad)
    ctx = example_context(manifests)
    assert any(f.rule == rule_id for f in evaluate(manifests, ctx, rules=[rule]))


@pytest.mark.parametrize("rule_id", CHECKED)
def test_good_example_passes(rule_id):
    rule = REGISTRY[rule_id]
    manifests = load(rule.good)
    ctx = example_context(manifests)
    assert evaluate(manifests, ctx, rules=[rule]) == []


@pytest.mark.parametrize("rule_id", sorted(r.id for r in REGISTRY.values() if r.category in MY_FAMILIES))
def test_good_example_passes_every_policy_rule(rule_id):
    """The examples of the pod-level families are fully hardened: they are what users copy."""
    manifests = load(REGISTRY[rule_id].good)
    ctx = example_context(manifests)
    assert [(f.rule, f.message) for f in evaluate(manifests, ctx, rules=POLICY_RULES)] == []


# --- 3. the registry's shape ------------------------------------------------------------------

def test_registry_shape():
    ids = [r.id for r in REGISTRY.values()]
    assert len(ids) == len(set(ids))
    for r in REGISTRY.values():
        assert re.fullmatch(r"[a-z]+/[a-z0-9-]+", r.id), r.id
        for field in ("summary", "why", "bad", "good"):
            assert getattr(r, field).strip(), f"{r.id} has no {field}"
        assert "\n" not in r.summary.strip(), f"{r.id} summary is more than one line"


def test_my_families_are_registered():
    expected = {
        "resources/missing-requests", "resources/missing-limits", "resources/request-exceeds-limit",
        "probes/missing-liveness", "probes/missing-readiness", "probes/unknown-port",
        "secrets/missing-secret", "secrets/missing-key", "secrets/data-in-git", "secrets/literal-value",
        "refs/service-selector", "refs/target-port", "refs/missing-configmap",
        "refs/missing-serviceaccount", "refs/nodeport", "refs/in-cluster-url",
        "security/run-as-non-root", "security/privilege-escalation", "security/capabilities",
        "security/seccomp", "security/privileged", "security/host-namespaces",
        "security/read-only-root-filesystem",
    }
    assert expected <= set(REGISTRY)
    assert REGISTRY["security/read-only-root-filesystem"].severity.value == "warning"
    assert all(REGISTRY[i].severity.value == "error" for i in expected - {"security/read-only-root-filesystem"})


# --- resources/ ------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("100m", 0.1), ("0.5", 0.5), ("1", 1.0), (1, 1.0), (0.25, 0.25), ("500m", 0.5),
    ("128Mi", 128 * 2 ** 20), ("1Gi", 2 ** 30), ("1024Mi", 2 ** 30), ("1G", 1e9), ("500M", 5e8),
    ("1e3", 1000.0), ("1E3", 1000.0), ("1k", 1000.0), ("1Ki", 1024.0), ("134217728", 134217728.0),
    ("1E", 1e18), (" 2Gi ", 2 * 2 ** 30), (".5", 0.5), ("+1", 1.0),
])
def test_parse_quantity(value, expected):
    assert parse_quantity(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["128mb", "1gi", "", "Mi", "1.2.3", "abc", None, True, [1], {"a": 1}])
def test_parse_quantity_rejects(value):
    assert parse_quantity(value) is None


_INIT = ("- name: migrate\n  image: ghcr.io/acme/migrate:1.0\n"
         "  securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, "
         "capabilities: {drop: [ALL]}}\n")


def test_missing_requests_names_what_is_missing():
    msgs = messages("resources/missing-requests",
                    deploy(container={"resources": "requests: {cpu: 100m}\nlimits: {cpu: '1', memory: 1Gi}"}))
    assert len(msgs) == 1
    assert "memory request" in msgs[0] and "cpu" not in msgs[0].split("has no")[1].split(";")[0]
    assert "resources.requests.memory" in msgs[0]


def test_missing_requests_and_limits_on_init_container():
    text = deploy(pod={"initContainers": _INIT + "  resources: {limits: {cpu: 100m, memory: 64Mi}}"})
    req = run("resources/missing-requests", text)
    assert len(req) == 1 and "initContainer 'migrate'" in req[0].message
    assert "cpu request and memory request" in req[0].message
    assert run("resources/missing-limits", text) == []
    text = deploy(pod={"initContainers": _INIT})
    assert "initContainer 'migrate'" in messages("resources/missing-limits", text)[0]


def test_missing_limits_when_no_resources_at_all():
    msgs = messages("resources/missing-limits", deploy(container={"resources": None}))
    assert msgs == ["container 'web' has no cpu limit and memory limit; set resources.limits.cpu, "
                    "resources.limits.memory"]


def test_invalid_quantity_is_reported():
    msgs = messages("resources/missing-requests",
                    deploy(container={"resources": "requests: {cpu: 100m, memory: 128mb}\n"
                                                   "limits: {cpu: 500m, memory: 1Gi}"}))
    assert len(msgs) == 1 and "'128mb' is not a Kubernetes quantity" in msgs[0]


@pytest.mark.parametrize("requests, limits, fires", [
    ("{cpu: '1', memory: 1Gi}", "{cpu: 500m, memory: 1Gi}", True),       # 1 cpu > 500m
    ("{cpu: 500m, memory: 1Gi}", "{cpu: '1', memory: 1024Mi}", False),   # 1Gi == 1024Mi
    ("{cpu: 1000m, memory: 1Gi}", "{cpu: 1, memory: 1G}", True),         # 1Gi > 1G
    ("{cpu: '0.5', memory: 500M}", "{cpu: 500m, memory: 512Mi}", False),
    ("{cpu: 100m, memory: 1e3}", "{cpu: 100m, memory: '1000'}", False),
    ("{cpu: 100m, memory: 1025Mi}", "{cpu: 100m, memory: 1Gi}", True),
])
def test_request_exceeds_limit(requests, limits, fires):
    text = deploy(container={"resources": f"requests: {requests}\nlimits: {limits}"})
    assert bool(run("resources/request-exceeds-limit", text)) is fires


def test_request_exceeds_limit_names_the_resource():
    text = deploy(container={"resources": "requests: {cpu: '1', memory: 128Mi}\n"
                                          "limits: {cpu: 500m, memory: 256Mi}"})
    [f] = run("resources/request-exceeds-limit", text)
    assert "container 'web' requests 1 cpu but is limited to 500m" in f.message


def test_resources_ignore_non_workloads():
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n"
    for rid in ("resources/missing-requests", "resources/missing-limits", "resources/request-exceeds-limit"):
        assert run(rid, text) == []


# --- probes/ ---------------------------------------------------------------------------------

def test_missing_probes_on_deployment():
    text = deploy(container={"livenessProbe": None, "readinessProbe": None})
    assert "has no livenessProbe" in messages("probes/missing-liveness", text)[0]
    assert "has no readinessProbe" in messages("probes/missing-readiness", text)[0]


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet", "ReplicaSet"])
def test_missing_probes_on_other_long_running_kinds(kind):
    assert run("probes/missing-liveness", deploy(kind=kind, container={"livenessProbe": None}))


def _pod(spec_containers: str, annotations: str = "", kind: str = "Pod") -> str:
    return (f"apiVersion: v1\nkind: {kind}\nmetadata: {{name: p{annotations}}}\n"
            f"spec:\n  restartPolicy: Never\n  containers:\n{textwrap.indent(spec_containers, '    ')}")


def test_probes_not_required_for_pods_jobs_and_hooks():
    pod = _pod("- name: t\n  image: busybox:1.37.0\n")
    assert run("probes/missing-liveness", pod) == []
    job = ("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n"
           "      restartPolicy: Never\n      containers: [{name: j, image: 'busybox:1.37.0'}]\n")
    assert run("probes/missing-readiness", job) == []
    cron = ("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '@daily'\n"
            "  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n"
            "          containers: [{name: c, image: 'busybox:1.37.0'}]\n")
    assert run("probes/missing-liveness", cron) == []
    hook = deploy(container={"livenessProbe": None, "readinessProbe": None}).replace(
        "metadata: {name: web}", "metadata: {name: web, annotations: {helm.sh/hook: pre-install}}", 1)
    assert run("probes/missing-liveness", hook) == []
    assert run("probes/missing-readiness", hook) == []
    argo_hook = hook.replace("helm.sh/hook: pre-install", "argocd.argoproj.io/hook: PreSync")
    assert run("probes/missing-liveness", argo_hook) == []


_SIDECAR = ("- name: proxy\n  image: ghcr.io/acme/proxy:1.0\n  restartPolicy: Always\n"
            "  ports: [{name: metrics, containerPort: 9090}]\n")


def test_native_sidecar_needs_probes_plain_init_container_does_not():
    text = deploy(pod={"initContainers": _SIDECAR})
    live = messages("probes/missing-liveness", text)
    assert len(live) == 1 and "initContainer 'proxy'" in live[0]
    assert len(messages("probes/missing-readiness", text)) == 1
    plain = deploy(pod={"initContainers": _SIDECAR.replace("  restartPolicy: Always\n", "")})
    assert run("probes/missing-liveness", plain) == []
    probed = deploy(pod={"initContainers": _SIDECAR + "  livenessProbe: {tcpSocket: {port: metrics}}\n"
                                                       "  readinessProbe: {httpGet: {path: /, port: 9090}}\n"})
    assert run("probes/missing-liveness", probed) == []
    assert run("probes/unknown-port", probed) == []


@pytest.mark.parametrize("probe, fires", [
    ("{httpGet: {path: /health, port: http}}", False),          # by name
    ("{httpGet: {path: /health, port: 8080}}", False),          # by number
    ("{httpGet: {path: /health, port: '8080'}}", False),        # number as a string
    ("{httpGet: {path: /health, port: htp}}", True),            # misspelt name
    ("{httpGet: {path: /health, port: 8081}}", True),           # wrong number
    ("{tcpSocket: {port: http}}", False),
    ("{tcpSocket: {port: 9000}}", True),
    ("{grpc: {port: 8080}}", False),
    ("{grpc: {port: 50051}}", True),
    ("{exec: {command: [true]}}", False),
])
def test_probe_port(probe, fires):
    text = deploy(container={"livenessProbe": probe})
    assert bool(run("probes/unknown-port", text)) is fires


def test_probe_port_startup_probe_and_no_ports_declared():
    text = deploy(container={"ports": None, "livenessProbe": "{httpGet: {path: /health, port: 8080}}",
                             "readinessProbe": "{exec: {command: [true]}}",
                             "startupProbe": "{tcpSocket: {port: 8080}}"})
    msgs = messages("probes/unknown-port", text)
    assert len(msgs) == 2
    assert any("startupProbe tcpSocket probes port 8080" in m and "declares no ports" in m for m in msgs)


def test_probe_port_applies_to_hooks_and_pods():
    pod = _pod("- name: t\n  image: busybox:1.37.0\n  ports: [{name: http, containerPort: 80}]\n"
               "  readinessProbe: {httpGet: {path: /, port: web}}\n",
               ", annotations: {helm.sh/hook: test}")
    [f] = run("probes/unknown-port", pod)
    assert "port name 'web'" in f.message and "http 80" in f.message
    assert f.file == "x.yaml"


# --- secrets/ --------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, expected", [
    ("password", "hunter2", True),
    ("DB_PASSWORD", "hunter2", True),
    ("db-password", "hunter2", True),
    ("postgresql.auth.password", "x", True),
    ("adminPasswd", "x", True),
    ("GROQ_API_KEY", "gsk_123", True),
    ("apiKey", "k", True),
    ("JWT_SECRET", "s3cret", True),
    ("jwtSecret", "s3cret", True),
    ("AWS_SECRET_KEY", "abc", True),
    ("aws_access_key", "AKIA", True),
    ("sshPrivateKey", "-----BEGIN", True),
    ("oauth.clientSecret", "x", True),
    ("DATABASE_URL", "postgres://u:p@h/db", True),
    ("databaseUrl", "postgres://u:p@h/db", True),
    ("connectionString", "Server=x", True),
    ("gcpCredentials", "{...}", True),
    ("github_token", "ghp_x", True),
    ("refreshToken", "x", True),
    # not secret-looking names
    ("existingSecret", "todo-backend-secrets", False),
    ("secretName", "tls-cert", False),
    ("keys", "DATABASE_URL", False),
    ("secret", "x", False),
    ("tokenPath", "/var/run/token", False),
    ("passwordPolicy", "strict", False),
    ("LOG_LEVEL", "info", False),
    ("BACKEND_URL", "http://todo-backend:8001", False),
    # values that are not literal secrets
    ("password", "", False),
    ("password", "   ", False),
    ("password", None, False),
    ("password", 1234, False),
    ("password", True, False),
    ("password", {"name": "db"}, False),
    ("password", ["a"], False),
    ("DB_PASSWORD", "$(POSTGRES_PASSWORD)", False),
    ("DATABASE_URL", "postgres://app:$(DB_PASSWORD)@db:5432/app", False),
])
def test_looks_secret(key, value, expected):
    assert looks_secret(key, value) is expected


_SECRET_ENV = "[{name: DATABASE_URL, valueFrom: {secretKeyRef: {name: %s, key: %s%s}}}]"
_EXTERNAL = {("default", "backend-secrets"): frozenset({"DATABASE_URL", "JWT_SECRET"})}


def test_missing_secret_and_external_declaration():
    text = deploy(container={"env": _SECRET_ENV % ("backend-secrets", "DATABASE_URL", "")})
    [f] = run("secrets/missing-secret", text)
    assert "Secret default/backend-secrets" in f.message and "env DATABASE_URL" in f.message
    assert run("secrets/missing-secret", text, external=_EXTERNAL) == []
    # declared in another namespace does not count
    assert run("secrets/missing-secret", text, external={("prod", "backend-secrets"): frozenset()})


def test_missing_secret_suggests_close_name():
    text = deploy(container={"env": _SECRET_ENV % ("backend-secret", "DATABASE_URL", "")})
    [f] = run("secrets/missing-secret", text, external=_EXTERNAL)
    assert "did you mean 'backend-secrets'" in f.message


def test_missing_secret_optional_skipped():
    text = deploy(container={"env": _SECRET_ENV % ("nope", "X", ", optional: true"),
                             "envFrom": "[{secretRef: {name: nope2, optional: true}}]"})
    assert run("secrets/missing-secret", text) == []
    assert run("secrets/missing-key", text) == []


def test_missing_secret_every_kind_of_reference():
    text = deploy(
        pod={"imagePullSecrets": "[{name: regcred}]",
             "volumes": "- name: certs\n  secret: {secretName: tls}\n"
                        "- name: bundle\n  projected:\n    sources:\n"
                        "      - secret: {name: proj}\n      - configMap: {name: kube-root-ca.crt}\n"},
        container={"envFrom": "[{secretRef: {name: envsec}}]"})
    msgs = messages("secrets/missing-secret", text)
    assert len(msgs) == 4
    for what, name in (("imagePullSecrets", "regcred"), ("volume 'certs'", "tls"),
                       ("projected volume 'bundle'", "proj"), ("envFrom", "envsec")):
        assert any(m.startswith(what) or f"{what} references" in m for m in msgs if f"/{name}," in m), name
    present = text + "".join(f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {n}}}\n"
                             for n in ("regcred", "tls", "proj", "envsec"))
    assert run("secrets/missing-secret", present) == []
    external = {("default", n): frozenset() for n in ("regcred", "tls", "proj", "envsec")}
    assert run("secrets/missing-secret", text, external=external) == []


def test_missing_secret_reported_at_the_reference_path():
    manifests = load(deploy(container={"env": _SECRET_ENV % ("x", "y", "")}))
    ctx = Context(objects=tuple(manifests), facts=ClusterFacts(name="t"))
    problems = list(REGISTRY["secrets/missing-secret"].check(manifests[0], ctx))
    assert problems[0].path == ("spec", "template", "spec", "containers", 0, "env", 0,
                                "valueFrom", "secretKeyRef", "name")


def test_missing_key_external_and_rendered():
    text = deploy(container={"env": _SECRET_ENV % ("backend-secrets", "DATABASE_UR", "")})
    [f] = run("secrets/missing-key", text, external=_EXTERNAL)
    assert "'DATABASE_UR'" in f.message and "DATABASE_URL, JWT_SECRET" in f.message
    good = deploy(container={"env": _SECRET_ENV % ("backend-secrets", "JWT_SECRET", "")})
    assert run("secrets/missing-key", good, external=_EXTERNAL) == []
    # a declaration without keys: the keys are unknown, nothing to check
    assert run("secrets/missing-key", text, external={("default", "backend-secrets"): frozenset()}) == []
    # a missing Secret is missing-secret's business, not missing-key's
    assert run("secrets/missing-key", text) == []
    rendered = text + ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: backend-secrets}\n"
                       "data: {DATABASE_URL: eA==}\n")
    assert run("secrets/missing-key", rendered)
    fixed = good + ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: backend-secrets}\n"
                    "stringData: {JWT_SECRET: x}\n")
    assert run("secrets/missing-key", fixed) == []


def test_missing_key_in_volume_items_and_projected_items():
    text = deploy(pod={"volumes": "- name: certs\n  secret:\n    secretName: tls\n"
                                  "    items: [{key: tls.crt, path: a}, {key: tls.kye, path: b}]\n"
                                  "- name: bundle\n  projected:\n    sources:\n"
                                  "      - secret: {name: tls, items: [{key: ca.crt, path: ca}]}\n"})
    external = {("default", "tls"): frozenset({"tls.crt", "tls.key"})}
    msgs = messages("secrets/missing-key", text, external=external)
    assert len(msgs) == 2
    assert any("volume 'certs'" in m and "'tls.kye'" in m for m in msgs)
    assert any("projected volume 'bundle'" in m and "'ca.crt'" in m for m in msgs)


def test_data_in_git():
    base = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
    [f] = run("secrets/data-in-git", base + "data: {password: aHVudGVyMg==}\n")
    assert "keys: password" in f.message and "aHVudGVy" not in f.message
    assert run("secrets/data-in-git", base + "stringData: {a: b}\n")
    assert len(run("secrets/data-in-git", base + "data: {a: YQ==}\nstringData: {b: c}\n")) == 2
    assert run("secrets/data-in-git", base + "type: Opaque\n") == []
    assert run("secrets/data-in-git", base + "data: {}\n") == []
    token = base + "type: kubernetes.io/service-account-token\n"
    assert run("secrets/data-in-git", token) == []
    assert run("secrets/data-in-git", token + "data: {token: eA==}\n")
    # rendered by a chart (helm labels/annotations do not exempt it)
    helm = base.replace("{name: s}", "{name: s, labels: {app.kubernetes.io/managed-by: Helm}}")
    assert run("secrets/data-in-git", helm + "stringData: {JWT_SECRET: x}\n")


def test_literal_value():
    text = deploy(container={"env": "[{name: DB_PASSWORD, value: hunter2}, {name: LOG_LEVEL, value: info},"
                                    " {name: API_TOKEN, value: '$(TOKEN)'}, {name: JWT_SECRET, value: ''}]"})
    [f] = run("secrets/literal-value", text)
    assert "env DB_PASSWORD" in f.message and "hunter2" not in f.message
    init = deploy(pod={"initContainers": _INIT + "  env: [{name: GROQ_API_KEY, value: gsk_live}]\n"})
    [f] = run("secrets/literal-value", init)
    assert "initContainer 'migrate'" in f.message


# --- refs/ -----------------------------------------------------------------------------------

def _svc(name="web", selector="{app: web}", ports="[{port: 80, targetPort: http}]", extra="",
         namespace=None) -> str:
    ns = f", namespace: {namespace}" if namespace else ""
    sel = f"  selector: {selector}\n" if selector else ""
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}{ns}}}\nspec:\n{extra}{sel}"
            f"  ports: {ports}\n")


def test_service_selector():
    [f] = run("refs/service-selector", _svc(selector="{app: api}") + "---\n" + deploy())
    assert "selects app=api" in f.message and "closest: Deployment web" in f.message
    assert run("refs/service-selector", _svc() + "---\n" + deploy()) == []
    # a selector with more labels than the pods have
    assert run("refs/service-selector", _svc(selector="{app: web, tier: fe}") + "---\n" + deploy())


def test_service_without_selector_is_fine():
    assert run("refs/service-selector", _svc(selector=None)) == []
    assert run("refs/target-port", _svc(selector=None, ports="[{port: 80, targetPort: nope}]")) == []
    external = _svc(selector=None, extra="  type: ExternalName\n  externalName: db.example.com\n")
    assert run("refs/service-selector", external) == []


def test_service_selector_ignores_other_namespaces_and_hooks():
    other = deploy().replace("metadata: {name: web}", "metadata: {name: web, namespace: other}", 1)
    assert run("refs/service-selector", _svc() + "---\n" + other)
    hook = deploy().replace("metadata: {name: web}", "metadata: {name: web, annotations: {helm.sh/hook: test}}", 1)
    assert run("refs/service-selector", _svc() + "---\n" + hook)


@pytest.mark.parametrize("ports, fires", [
    ("[{port: 80, targetPort: http}]", False),
    ("[{port: 80, targetPort: 8080}]", False),
    ("[{port: 8080}]", False),                    # targetPort defaults to port
    ("[{port: 80}]", True),
    ("[{port: 80, targetPort: htp}]", True),
    ("[{port: 80, targetPort: 9090}]", True),
])
def test_target_port(ports, fires):
    assert bool(run("refs/target-port", _svc(ports=ports) + "---\n" + deploy())) is fires


def test_target_port_message_and_sidecar_port():
    text = _svc(ports="[{port: 80, targetPort: metrics}]") + "---\n" + deploy()
    [f] = run("refs/target-port", text)
    assert "targets port name 'metrics'" in f.message and "Deployment default/web" in f.message
    with_sidecar = _svc(ports="[{port: 80, targetPort: metrics}]") + "---\n" + deploy(
        pod={"initContainers": _SIDECAR})
    assert run("refs/target-port", with_sidecar) == []


_CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {LOG_LEVEL: info}\n"
_CM_KEY = "[{name: LOG_LEVEL, valueFrom: {configMapKeyRef: {name: cfg, key: %s%s}}}]"


def test_missing_configmap_references():
    text = deploy(pod={"volumes": "- name: conf\n  configMap: {name: nginx}\n"
                                  "- name: all\n  projected:\n    sources:\n      - configMap: {name: proj}\n"
                                  "      - configMap: {name: kube-root-ca.crt}\n"},
                  container={"envFrom": "[{configMapRef: {name: cfg}}]",
                             "env": _CM_KEY % ("LOG_LEVEL", "")})
    msgs = messages("refs/missing-configmap", text)
    assert len(msgs) == 4  # nginx, proj, cfg twice (envFrom and env); kube-root-ca.crt is built in
    assert any("volume 'conf'" in m and "ConfigMap default/nginx" in m for m in msgs)
    assert any("projected volume 'all'" in m for m in msgs)
    with_cm = text + "---\n" + _CM + "".join(
        f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {n}}}\n" for n in ("nginx", "proj"))
    assert run("refs/missing-configmap", with_cm) == []


def test_missing_configmap_key_and_optional():
    bad = deploy(container={"env": _CM_KEY % ("LOGLEVEL", "")}) + "---\n" + _CM
    [f] = run("refs/missing-configmap", bad)
    assert "reads key 'LOGLEVEL'" in f.message and "holds LOG_LEVEL" in f.message
    binary = deploy(container={"env": _CM_KEY % ("blob", "")}) + "---\n" + _CM + "binaryData: {blob: AA==}\n"
    assert run("refs/missing-configmap", binary) == []
    optional = deploy(container={"env": _CM_KEY % ("NOPE", ", optional: true"),
                                 "envFrom": "[{configMapRef: {name: missing, optional: true}}]"})
    assert run("refs/missing-configmap", optional) == []


def test_missing_configmap_in_other_namespace():
    cm = _CM.replace("{name: cfg}", "{name: cfg, namespace: other}")
    assert run("refs/missing-configmap", deploy(container={"envFrom": "[{configMapRef: {name: cfg}}]"})
               + "---\n" + cm)


def test_missing_serviceaccount():
    text = deploy(pod={"serviceAccountName": "api"})
    [f] = run("refs/missing-serviceaccount", text)
    assert "ServiceAccount default/api" in f.message
    assert run("refs/missing-serviceaccount",
               text + "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: api}\n") == []
    assert run("refs/missing-serviceaccount", deploy(pod={"serviceAccountName": "default"})) == []
    assert run("refs/missing-serviceaccount", deploy()) == []


def test_nodeport_range():
    [f] = run("refs/nodeport", _svc(ports="[{port: 80, nodePort: 3000}]", extra="  type: NodePort\n"))
    assert "outside the NodePort range 30000-32767" in f.message
    assert run("refs/nodeport", _svc(ports="[{port: 80, nodePort: 32767}]", extra="  type: NodePort\n")) == []


def test_nodeport_clash_reported_once_on_the_later_service():
    a = _svc(name="a", ports="[{port: 80, nodePort: 30000}]", extra="  type: NodePort\n", namespace="x")
    b = _svc(name="b", ports="[{port: 80, nodePort: 30000}]", extra="  type: NodePort\n", namespace="y")
    for text in (a + "---\n" + b, b + "---\n" + a):
        findings = run("refs/nodeport", text)
        assert len(findings) == 1
        assert findings[0].object.name == "b" and "already used by Service x/a" in findings[0].message
    c = _svc(name="c", ports="[{port: 80, nodePort: 30001}]", extra="  type: NodePort\n", namespace="y")
    assert run("refs/nodeport", a + "---\n" + c) == []


def test_nodeport_clash_within_one_service():
    text = _svc(ports="[{name: a, port: 80, nodePort: 30080}, {name: b, port: 81, nodePort: 30080}]",
                extra="  type: NodePort\n")
    assert len(run("refs/nodeport", text)) == 1


def _url_objects(url: str, namespace: str = "todo", port: int = 8001) -> str:
    backend = (f"apiVersion: v1\nkind: Service\nmetadata: {{name: todo-backend, namespace: todo}}\n"
               f"spec:\n  ports: [{{port: {port}}}]\n")
    cm = (f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: todo-frontend-config, namespace: {namespace}}}\n"
          f"data: {{BACKEND_URL: '{url}'}}\n")
    return backend + "---\n" + cm


@pytest.mark.parametrize("url, fires", [
    ("http://todo-backend:8001", False),
    ("http://todo-backend:8002", True),
    ("http://todo-backend:8001/api/v1", False),
    ("https://todo-backend:8002/x", True),
    ("http://todo-backend.todo:8001", False),
    ("http://todo-backend.todo:9999", True),
    ("http://todo-backend.todo.svc:8001", False),
    ("http://todo-backend.todo.svc.cluster.local:8001", False),
    ("http://todo-backend.todo.svc.cluster.local:8002", True),
    ("http://todo-api.todo.svc.cluster.local:8001", True),    # no such Service
    ("http://todo-api:8001", True),
    ("http://api.example.com:8001", False),                     # external
    ("https://todo-backend.example.org:443", False),             # ns 'example' is not ours
    ("http://localhost:3000", False),
    ("http://127.0.0.1:8002", False),
    ("http://todo-backend", False),                              # no port: not checked
    ("http://localhost:3000,http://todo-backend:8002", True),    # every URL of a value
    ("http://admin:1234@todo-backend:8001", False),              # user info is not the host
    ("http://admin:1234@todo-backend:8002", True),
])
def test_in_cluster_url(url, fires):
    assert bool(run("refs/in-cluster-url", _url_objects(url))) is fires


def test_in_cluster_url_message_and_bare_host_namespace():
    [f] = run("refs/in-cluster-url", _url_objects("http://todo-backend:8002"))
    assert f.message.startswith("ConfigMap todo/todo-frontend-config BACKEND_URL points at "
                                "http://todo-backend:8002, but Service todo/todo-backend exposes 8001")
    # a bare host resolves in the object's own namespace: todo-backend is not in 'web'
    text = _url_objects("http://todo-backend:8001", namespace="web")
    [f] = run("refs/in-cluster-url", text)
    assert "no Service web/todo-backend" in f.message
    # ... but <svc>.<ns> reaches across namespaces
    assert run("refs/in-cluster-url", _url_objects("http://todo-backend.todo:8001", namespace="web")) == []


def test_in_cluster_url_in_env_values():
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec:\n  ports: [{port: 80}]\n"
    bad = deploy(container={"env": "[{name: API, value: 'http://api:8080'}, {name: X, value: plain}]"})
    [f] = run("refs/in-cluster-url", svc + "---\n" + bad)
    assert "container 'web' env API points at http://api:8080" in f.message
    good = deploy(container={"env": "[{name: API, value: 'http://api.default.svc:80/v1'}]"})
    assert run("refs/in-cluster-url", svc + "---\n" + good) == []


# --- security/ -------------------------------------------------------------------------------

def _sc(pod: str | None = None, container: str | None = None, init: str | None = None) -> str:
    p = {} if pod is None else {"securityContext": pod}
    c = {} if container is None else {"securityContext": container}
    if init is not None:
        p["initContainers"] = init
    return deploy(pod=p, container=c)


def test_run_as_non_root():
    assert run("security/run-as-non-root", deploy()) == []
    # container-level only
    ok = _sc(pod="{seccompProfile: {type: RuntimeDefault}}",
             container="{runAsNonRoot: true, allowPrivilegeEscalation: false}")
    assert run("security/run-as-non-root", ok) == []
    msgs = messages("security/run-as-non-root", _sc(pod="{seccompProfile: {type: RuntimeDefault}}"))
    assert len(msgs) == 1 and "may run as root" in msgs[0]
    # the container overrides the pod
    msgs = messages("security/run-as-non-root", _sc(container="{runAsNonRoot: false}"))
    assert len(msgs) == 1 and "runAsNonRoot: false" in msgs[0]
    msgs = messages("security/run-as-non-root", _sc(container="{runAsUser: 0}"))
    assert len(msgs) == 1 and "uid 0" in msgs[0]
    msgs = messages("security/run-as-non-root", _sc(pod="{runAsNonRoot: true, runAsUser: 0}"))
    assert len(msgs) == 1 and "pod as uid 0" in msgs[0]
    msgs = messages("security/run-as-non-root", _sc(pod="{runAsNonRoot: false}"))
    assert len(msgs) == 1  # reported once, on the pod


def test_init_containers_and_hooks_are_checked():
    text = deploy(pod={"initContainers": "- name: migrate\n  image: ghcr.io/acme/migrate:1.0\n"})
    for rid in ("security/privilege-escalation", "security/capabilities", "security/read-only-root-filesystem"):
        msgs = messages(rid, text)
        assert len(msgs) == 1 and "initContainer 'migrate'" in msgs[0], rid
    hook = _pod("- name: t\n  image: busybox:1.37.0\n", ", annotations: {helm.sh/hook: test}")
    for rid in ("security/run-as-non-root", "security/privilege-escalation", "security/capabilities",
                "security/seccomp"):
        assert run(rid, hook), rid


def test_privilege_escalation_must_be_explicitly_false():
    assert run("security/privilege-escalation", _sc(container="{capabilities: {drop: [ALL]}}"))
    assert run("security/privilege-escalation", _sc(container="{allowPrivilegeEscalation: true}"))
    assert run("security/privilege-escalation", deploy()) == []


@pytest.mark.parametrize("caps, count", [
    ("{drop: [ALL]}", 0),
    ("{drop: [ALL], add: [NET_BIND_SERVICE]}", 0),
    ("{drop: [NET_RAW]}", 1),
    ("{drop: [ALL], add: [SYS_ADMIN, NET_BIND_SERVICE]}", 1),
    ("{add: [NET_ADMIN]}", 2),
    ("{}", 1),
])
def test_capabilities(caps, count):
    text = _sc(container=f"{{allowPrivilegeEscalation: false, capabilities: {caps}}}")
    assert len(run("security/capabilities", text)) == count


@pytest.mark.parametrize("pod, container, count", [
    ("{runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}", None, 0),
    ("{runAsNonRoot: true, seccompProfile: {type: Localhost, localhostProfile: p.json}}", None, 0),
    ("{runAsNonRoot: true}", "{seccompProfile: {type: RuntimeDefault}}", 0),
    ("{runAsNonRoot: true}", None, 1),
    ("{runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}", "{seccompProfile: {type: Unconfined}}", 1),
    ("{runAsNonRoot: true, seccompProfile: {type: Unconfined}}", None, 1),
    ("{runAsNonRoot: true, seccompProfile: {type: Unconfined}}", "{seccompProfile: {type: RuntimeDefault}}", 1),
])
def test_seccomp(pod, container, count):
    assert len(run("security/seccomp", _sc(pod=pod, container=container))) == count


def test_seccomp_every_container_when_pod_level_unset():
    init = "- name: migrate\n  image: ghcr.io/acme/migrate:1.0\n  securityContext: {seccompProfile: {type: RuntimeDefault}}\n"
    text = _sc(pod="{runAsNonRoot: true}", container="{seccompProfile: {type: RuntimeDefault}}", init=init)
    assert run("security/seccomp", text) == []
    text = _sc(pod="{runAsNonRoot: true}", init=init)
    msgs = messages("security/seccomp", text)
    assert len(msgs) == 1 and "container 'web'" in msgs[0]


def test_privileged_and_host_namespaces():
    assert run("security/privileged", _sc(container="{privileged: true}"))
    assert run("security/privileged", _sc(container="{privileged: false}")) == []
    text = deploy(pod={"hostPID": "true", "hostIPC": "true", "hostNetwork": "false"},
                  container={"ports": "[{name: http, containerPort: 8080, hostPort: 80}]"})
    msgs = messages("security/host-namespaces", text)
    assert len(msgs) == 3
    assert any("hostPID" in m for m in msgs) and any("hostPort 80" in m for m in msgs)
    assert run("security/host-namespaces", deploy()) == []


def test_read_only_root_filesystem_is_a_warning():
    [f] = run("security/read-only-root-filesystem", _sc(container="{readOnlyRootFilesystem: false}"))
    assert f.severity.value == "warning"


def test_security_on_cronjob():
    cron = ("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '@daily'\n"
            "  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n"
            "          containers: [{name: c, image: 'busybox:1.37.0'}]\n")
    [f] = run("security/privilege-escalation", cron)
    assert f.object.kind == "CronJob" and "container 'c'" in f.message
    assert f.line is None and f.file == "x.yaml"


# --- the skip annotation ---------------------------------------------------------------------

def _annotated(annotation: str) -> str:
    return deploy(container={"livenessProbe": None}).replace(
        "metadata: {name: web}",
        "metadata:\n  name: web\n  annotations:\n    " + SKIP_ANNOTATION + ": " + annotation, 1)


def test_skip_annotation_with_reason_skips():
    text = _annotated("'probes/missing-liveness: a queue worker, the kubelet restart on exit is enough'")
    assert run("probes/missing-liveness", text) == []


def test_skip_annotation_without_reason_does_not_skip():
    text = _annotated("probes/missing-liveness")
    [f] = run("probes/missing-liveness", text)
    assert "gives no reason, so it is not skipped" in f.message


def test_skip_annotation_only_skips_the_named_rule():
    text = _annotated("'resources/missing-limits: not this one'")
    assert run("probes/missing-liveness", text)


def test_several_rules_skipped():
    text = deploy(container={"livenessProbe": None, "readinessProbe": None}).replace(
        "metadata: {name: web}",
        "metadata:\n  name: web\n  annotations:\n    " + SKIP_ANNOTATION + ": |\n"
        "      probes/missing-liveness: worker\n      probes/missing-readiness: worker, no traffic\n", 1)
    assert run("probes/missing-liveness", text) == []
    assert run("probes/missing-readiness", text) == []


# --- issue 12: references the peers check (Ingress, HPA, PDB, workload selector) --------------

_SVC = ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n"
        "  ports: [{name: http, port: 80, targetPort: http}]\n")


def _ingress(service: str, port: str, default: bool = False) -> str:
    backend = f"{{service: {{name: {service}, port: {port}}}}}"
    if default:
        return ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\n"
                f"spec:\n  defaultBackend: {backend}\n")
    return ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  rules:\n"
            "  - host: web.local\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: "
            f"{backend}}}\n")


@pytest.mark.parametrize("service, port, default, expected", [
    ("web", "{name: http}", False, None),
    ("web", "{number: 80}", False, None),
    ("web", "{number: 80}", True, None),
    ("wbe", "{number: 80}", False, "Service default/wbe, which is not rendered"),
    ("wbe", "{number: 80}", True, "Service default/wbe, which is not rendered"),
    ("web", "{name: htp}", False, "port name 'htp' of Service default/web, which has no port of that name"),
    ("web", "{number: 8080}", False, "port 8080 of Service default/web, which does not expose it"),
])
def test_ingress_backend(service, port, default, expected):
    found = messages("refs/ingress-backend", _ingress(service, port, default) + "---\n" + _SVC)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0]


def test_ingress_backend_other_namespace_and_resource_backend():
    svc = load(_SVC, namespace="other")
    ing = load(_ingress("web", "{number: 80}"))
    assert len(run("refs/ingress-backend", ing + svc)) == 1  # a Service elsewhere does not count
    resource = ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: s}\nspec:\n"
                "  defaultBackend: {resource: {apiGroup: k8s.example.com, kind: Bucket, name: b}}\n")
    assert run("refs/ingress-backend", resource) == []


def _hpa(kind: str, name: str) -> str:
    return ("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n"
            f"  scaleTargetRef: {{apiVersion: apps/v1, kind: {kind}, name: {name}}}\n  maxReplicas: 3\n")


def test_hpa_target():
    assert messages("refs/hpa-target", _hpa("Deployment", "web") + "---\n" + deploy()) == []
    [msg] = messages("refs/hpa-target", _hpa("Deployment", "api") + "---\n" + deploy())
    assert "scales Deployment default/api, which is not rendered" in msg
    # the right name but the wrong kind
    assert messages("refs/hpa-target", _hpa("StatefulSet", "web") + "---\n" + deploy())
    # a custom kind nothing renders: not ours to judge; rendered ones are checked
    assert messages("refs/hpa-target", _hpa("Rollout", "web")) == []
    rollout = "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: other}\n"
    assert messages("refs/hpa-target", _hpa("Rollout", "web") + "---\n" + rollout)


def _pdb(selector: str) -> str:
    return ("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n"
            f"spec: {{maxUnavailable: 1, selector: {selector}}}\n")


@pytest.mark.parametrize("selector, fires", [
    ("{matchLabels: {app: web}}", False),
    ("{matchLabels: {app: api}}", True),
    ("{matchExpressions: [{key: app, operator: In, values: [api, web]}]}", False),
    ("{matchExpressions: [{key: app, operator: NotIn, values: [web]}]}", True),
    ("{matchExpressions: [{key: app, operator: Exists}]}", False),
    ("{matchExpressions: [{key: tier, operator: Exists}]}", True),
    ("{matchExpressions: [{key: tier, operator: DoesNotExist}]}", False),
    ("{matchLabels: {app: web}, matchExpressions: [{key: app, operator: DoesNotExist}]}", True),
    ("{matchExpressions: [{key: app, operator: Bogus, values: [web]}]}", True),
    ("{}", False),  # policy/v1: every pod of the namespace
])
def test_pdb_selector(selector, fires):
    assert bool(run("refs/pdb-selector", _pdb(selector) + "---\n" + deploy())) is fires


def test_pdb_selector_ignores_hooks_and_other_namespaces():
    hook = deploy().replace("metadata: {name: web}",
                            "metadata: {name: web, annotations: {helm.sh/hook: pre-install}}")
    assert run("refs/pdb-selector", _pdb("{matchLabels: {app: web}}") + "---\n" + hook)
    assert run("refs/pdb-selector", load(_pdb("{matchLabels: {app: web}}")) + load(deploy(), namespace="x"))


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"])
@pytest.mark.parametrize("selector, fires", [
    ("{matchLabels: {app: web}}", False),
    ("{matchLabels: {app: api}}", True),
    ("{matchLabels: {app: web, tier: front}}", True),
    ("{matchExpressions: [{key: app, operator: In, values: [web]}]}", False),
    ("{matchExpressions: [{key: app, operator: NotIn, values: [web]}]}", True),
    ("{}", True),
])
def test_workload_selector(kind, selector, fires):
    text = deploy(kind=kind).replace("  selector: {matchLabels: {app: web}}\n", f"  selector: {selector}\n")
    assert bool(run("refs/workload-selector", text)) is fires


def test_workload_selector_missing_is_left_to_the_schema_and_jobs_are_not_checked():
    text = deploy().replace("  selector: {matchLabels: {app: web}}\n", "")
    assert run("refs/workload-selector", text) == []
    job = deploy(kind="Job").replace("  selector: {matchLabels: {app: web}}\n", "  selector: {matchLabels: {x: y}}\n")
    assert run("refs/workload-selector", job) == []


# --- issue 12: schema/ checks the OpenAPI schemas cannot express ---------------------------------

@pytest.mark.parametrize("name, ok", [
    ("http", True), ("http-main", True), ("h2c", True), ("a", True), ("x" * 15, True),
    ("x" * 16, False), ("HTTP", False), ("http_main", False), ("8080", False), ("-http", False),
    ("http-", False), ("http--main", False), ("", False),
])
def test_port_name(name, ok):
    text = deploy(container={"ports": f"[{{name: '{name}', containerPort: 8080}}]",
                             "livenessProbe": "{tcpSocket: {port: 8080}}",
                             "readinessProbe": "{tcpSocket: {port: 8080}}"})
    assert (run("schema/port-name", text) == []) is ok


def test_port_name_service_and_probe():
    svc = ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n"
           "  ports: [{name: Web_Port, port: 80, targetPort: http_x}]\n")
    found = messages("schema/port-name", svc)
    assert len(found) == 2 and any("targetPort 'http_x'" in m for m in found)
    assert any("port name 'Web_Port' is not a DNS label" in m for m in found)
    probe = deploy(container={"livenessProbe": "{httpGet: {path: /h, port: Http}}"})
    [msg] = messages("schema/port-name", probe)
    assert "livenessProbe port 'Http'" in msg


@pytest.mark.parametrize("field, value, fires", [
    ("containerPort", 8080, False), ("containerPort", 0, True), ("containerPort", 65536, True),
    ("containerPort", 65535, False), ("hostPort", 0, False), ("hostPort", 70000, True),
    ("hostPort", -1, True),
])
def test_port_range_container(field, value, fires):
    ports = "[{name: http, containerPort: 8080, %s: %d}]" % (field, value) if field == "hostPort" \
        else "[{name: http, containerPort: %d}]" % value
    assert bool(run("schema/port-range", deploy(container={"ports": ports}))) is fires


def test_port_range_service_and_probe():
    svc = ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n"
           "  ports: [{port: 70000, targetPort: 0}, {port: 80, targetPort: 99999}, {port: 81, nodePort: 99}]\n")
    found = messages("schema/port-range", svc)
    assert len(found) == 2 and "port 70000" in found[0] and "targetPort 99999" in found[1]
    probe = deploy(container={"readinessProbe": "{tcpSocket: {port: 0}}"})
    assert messages("schema/port-range", probe)


def test_duplicate_env():
    env = "[{name: A, value: '1'}, {name: B, value: '2'}, {name: A, valueFrom: {fieldRef: {fieldPath: x}}}]"
    [msg] = messages("schema/duplicate-env", deploy(container={"env": env}))
    assert "sets env A twice (entries 0 and 2)" in msg
    assert messages("schema/duplicate-env", deploy(container={"env": "[{name: A, value: '1'}, {name: a}]"})) == []
    # the same name in two containers is fine
    two = deploy(container={"env": "[{name: A, value: '1'}]"})
    assert messages("schema/duplicate-env", two) == []


# --- issue 12: secrets in ConfigMaps and literal env values ------------------------------------
# Every secret-looking value is built by concatenation: no such literal lands in git.
_PEM_VALUE = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIE\n-----END " + "RSA PRIVATE KEY-----\n"
_TOKENS = {
    "a GitHub token": "gh" + "p_" + "A1b2" * 9,
    "a GitHub token (fine-grained)": "github" + "_pat_" + "A1b2" * 12,
    "a Slack token": "xo" + "xb-" + "1234-5678-abcd",
    "an AWS access key id": "AK" + "IA" + "ABCDEFGH12345678",
    "a Groq API key": "gs" + "k_" + "a1B2" * 8,
    "an OpenAI or Anthropic API key": "s" + "k-" + "proj-" + "a1B2" * 8,
}
_URL_WITH_LOGIN = "postgres://app" + ":" + "s3" + "cr3t" + "@db.example.com:5432/app"


@pytest.mark.parametrize("key, value, expected", [
    ("NEXTAUTH_SECRET", "x", True), ("BETTER_AUTH_SECRET", "x", True), ("SECRET_KEY_BASE", "x", True),
    ("SMTP_PASS", "x", True), ("dbPass", "x", True), ("JWT_SECRET", "x", True),
    ("BYPASS", "x", False), ("SECRET_NAME", "x", False), ("SECRET", "x", False),
    ("useSecret", "true", False), ("AUTH_SECRET_PATH", "/run/s", False),
    ("CERT", _PEM_VALUE, True), ("BACKEND_URL", _URL_WITH_LOGIN, True),
    ("BACKEND_URL", "postgres://app:$(DB_PASSWORD)@db/app", False),
    ("BACKEND_URL", "postgres://app:${DB_PASSWORD}@db/app", False),
    ("BACKEND_URL", "https://user@example.com/x", False),
    ("NOTE", "the ghp_ prefix marks GitHub tokens", False),
    *[("VALUE", token, True) for token in _TOKENS.values()],
])
def test_looks_secret_names_and_values(key, value, expected):
    assert looks_secret(key, value) is expected


def _configmap(key: str, value: str) -> list[Manifest]:
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
           "data": {"LOG_LEVEL": "info", key: value}}
    return [Manifest(doc=doc, file="x.yaml")]


@pytest.mark.parametrize("what, value", [("a private key", _PEM_VALUE), ("a URL with a password", _URL_WITH_LOGIN),
                                         *[(w.split(" (")[0], v) for w, v in _TOKENS.items()]])
def test_configmap_data_secret_values(what, value):
    [f] = run("secrets/configmap-data", _configmap("SOMETHING", value))
    assert f"key SOMETHING is {what};" in f.message


def test_configmap_data_secret_names_and_clean_data():
    [f] = run("secrets/configmap-data", _configmap("NEXTAUTH_SECRET", "x"))
    assert "looks like a secret (by its name)" in f.message
    assert run("secrets/configmap-data", _configmap("BACKEND_URL", "http://todo-backend:8001")) == []
    assert run("secrets/configmap-data", _configmap("DATABASE_PASSWORD", "")) == []


def test_literal_env_private_key_whatever_the_name():
    d = load(deploy(container={"env": "[{name: CERT, value: x}]"}))
    d[0].doc["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = _PEM_VALUE
    [f] = run("secrets/literal-value", d)
    assert "is a private key" in f.message
    assert messages("secrets/literal-value", deploy(container={"env": "[{name: BETTER_AUTH_SECRET, value: abc}]"}))


# --- issue 12: identical liveness and readiness probes ------------------------------------------

@pytest.mark.parametrize("live, ready, fires", [
    ("{httpGet: {path: /health, port: http}}", "{httpGet: {path: /health, port: http}}", True),
    ("{httpGet: {path: /health, port: http}}", "{httpGet: {path: /ready, port: http}}", False),
    ("{httpGet: {path: /h, port: http}, periodSeconds: 10}", "{httpGet: {path: /h, port: http}, periodSeconds: 10}", True),
    ("{httpGet: {path: /h, port: http}, failureThreshold: 6}", "{httpGet: {path: /h, port: http}}", False),
    ("{tcpSocket: {port: http}}", "{tcpSocket: {port: http}}", True),
    ("{exec: {command: [ok]}}", "{exec: {command: [ok]}}", True),
])
def test_identical_probes(live, ready, fires):
    text = deploy(container={"livenessProbe": live, "readinessProbe": ready})
    found = run("probes/identical", text)
    assert bool(found) is fires
    assert all(f.severity.value == "warning" for f in found)


# --- issue 12: values/unknown-key follows the chart's schema -------------------------------------

def test_typo_hint_both_directions():
    from gitops_validate.schema import _typo_of
    siblings = ["replicaCount", "image", "resources", "limits", "requests", "NEXT_PUBLIC_FEATURE_CHAT"]
    assert _typo_of("replicaCont", siblings) == "replicaCount"
    assert _typo_of("limit", siblings) == "limits"
    assert _typo_of("Image", siblings) == "image"
    assert _typo_of("replica_count", siblings) == "replicaCount"   # same key but for case and '_'
    assert _typo_of("NEXT_PUBLIC_FEATURE_TODO", siblings) is None  # a new key, not a typo
    assert _typo_of("maxSurge", siblings) is None
    assert _typo_of("tag", ["tags", "env"]) == "tags" and _typo_of("tag", ["env"]) is None


def test_schema_opens_maps():
    from gitops_validate.schema import _schema_child
    root = {"definitions": {"m": {"type": "object", "additionalProperties": {"type": "string"}}},
            "properties": {"config": {"$ref": "#/definitions/m"},
                           "labels": {"patternProperties": {r"^app\.": {"type": "string"}}},
                           "closed": {"additionalProperties": False, "properties": {"a": {}}},
                           "silent": {"properties": {"a": {}}}}}
    assert _schema_child(root, "config", root)[0]
    config = _schema_child(root, "config", root)[1]
    assert _schema_child(config, "ANY_NEW_KEY", root) == (True, {"type": "string"})
    labels = _schema_child(root, "labels", root)[1]
    assert _schema_child(labels, "app.kubernetes.io/name", root)[0]
    assert not _schema_child(labels, "team", root)[0]
    closed = _schema_child(root, "closed", root)[1]
    assert _schema_child(closed, "a", root)[0] and not _schema_child(closed, "b", root)[0]
    # no additionalProperties at all does not open a map: a typo there would pass unseen
    assert not _schema_child(_schema_child(root, "silent", root)[1], "b", root)[0]
    # a $ref loop is bounded
    loop = {"definitions": {"a": {"$ref": "#/definitions/a"}}, "properties": {"x": {"$ref": "#/definitions/a"}}}
    assert _schema_child(_schema_child(loop, "x", loop)[1], "y", loop) == (False, None)


# --- issue 12: misses found by scoring the peers' corpora (scripts/score_peers.py) ----------------

def test_probe_on_a_udp_port_is_flagged():
    ports = "[{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]"
    bad = deploy(container={"ports": ports, "livenessProbe": "{tcpSocket: {port: dns}}",
                            "readinessProbe": "{tcpSocket: {port: 5353}}"})
    found = messages("probes/unknown-port", bad)
    assert len(found) == 2 and all("protocol other than TCP" in m for m in found)
    both = "[{name: dns, containerPort: 5353, protocol: UDP}, {name: dns-tcp, containerPort: 5353}]"
    ok = deploy(container={"ports": both, "livenessProbe": "{tcpSocket: {port: dns-tcp}}",
                           "readinessProbe": "{tcpSocket: {port: 5353}}"})
    assert messages("probes/unknown-port", ok) == []


_POD = ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: web}}\nspec:\n%s"
        "  containers: [{name: web, image: 'web:1.0'}]\n")


@pytest.mark.parametrize("rule_id", ["probes/missing-liveness", "probes/missing-readiness"])
def test_plain_pod_needs_probes_only_when_a_service_sends_it_traffic(rule_id):
    service = _SVC.replace("name: http, port: 80, targetPort: http", "port: 80")
    assert run(rule_id, _POD % "" + "---\n" + service)                       # selected, restarts
    assert run(rule_id, _POD % "") == []                                       # nobody sends traffic
    assert run(rule_id, _POD % "  restartPolicy: Never\n" + "---\n" + service) == []  # meant to finish
    other = service.replace("selector: {app: web}", "selector: {app: api}")
    assert run(rule_id, _POD % "" + "---\n" + other) == []


def test_identical_probes_on_a_plain_pod():
    pod = _POD.replace("image: 'web:1.0'}", "image: 'web:1.0', livenessProbe: {tcpSocket: {port: 80}}, "
                                             "readinessProbe: {tcpSocket: {port: 80}}}") % ""
    assert run("probes/identical", pod)


def test_well_known_credential_names_and_mangled_private_keys():
    assert looks_secret("AZURE_BATCH_KEY", "x") and looks_secret("OCI_CLI_KEY_CONTENT", "x")
    assert not looks_secret("AZURE_REGION", "westeurope") and not looks_secret("CACHE_KEY", "users")
    mangled = "---BEGIN OPENSSH " + "PRIVATE KEY---\nxxxxx\n---END  OPENSSH " + "PRIVATE KEY---\n"
    assert looks_secret("the_good_stuff", mangled)
    assert not looks_secret("NOTE", "a public key starts with -----BEGIN PUBLIC KEY-----")


def test_numeric_target_port_is_not_judged_on_pods_that_declare_no_ports():
    """Kubernetes routes a numeric targetPort to an undeclared port too (kube-score's corpus agrees)."""
    svc = _SVC.replace("targetPort: http", "targetPort: 8080")
    assert run("refs/target-port", svc + "---\n" + deploy(container={"ports": None})) == []
    assert run("refs/target-port", svc + "---\n" + deploy(container={"ports": "[{name: http, containerPort: 9090}]"}))
    named = _SVC  # a named targetPort never resolves without a declared port of that name
    assert run("refs/target-port", named + "---\n" + deploy(container={"ports": None}))


# --- issue 12: provenance of rendered fields (validator/provenance.py) ---------------------------

def test_value_index_points_only_at_an_unambiguous_value(tmp_path):
    from gitops_validate.provenance import ValueIndex
    (tmp_path / "chart").mkdir()
    (tmp_path / "chart/values.yaml").write_text(
        "resources:\n  requests: {memory: 256Mi}\n  limits: {memory: 1Gi}\nprobe: {port: http}\n"
        "other: {port: http}\nreadinessProbe: {httpGet: {path: /ready}}\n")
    (tmp_path / "v.yaml").write_text("resources:\n  limits:\n    memory: 128Mi\nreadinessProbe: null\n")
    index = ValueIndex.of(tmp_path, "chart", ["v.yaml"])
    obj = {"spec": {"resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "128Mi"}}, "port": "http"}}
    req, lim = ("spec", "resources", "requests", "memory"), ("spec", "resources", "limits", "memory")
    assert index.locate(obj, (lim,)) == ("v.yaml", 3)
    assert index.locate(obj, (req, lim)) == ("v.yaml", 3)      # the override that changed something
    assert index.locate(obj, (req,)) == ("chart/values.yaml", 2)
    assert index.locate(obj, (("spec", "port"),)) is None       # 'http' under 'port' twice: ambiguous
    assert index.locate(obj, (("spec", "readinessProbe"),)) == ("v.yaml", 4)  # removed by null
    assert index.locate(obj, (("spec", "resources"),)) is None  # not a scalar
