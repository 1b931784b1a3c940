"""The two Helm charts, rendered for real (helm and kubeconform from .tools/bin) and held to DESIGN §2.

Every chart is rendered the way Argo CD renders it:
    helm template . --name-template <app> --namespace todo --kube-version 1.35.1 --include-crds
        --values ../../clusters/minikube/values/<app>.yaml
run in the chart's directory. Each configuration is rendered once per module (see `renders`).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".tools" / "bin"
HELM = BIN / "helm"
KUBECONFORM = BIN / "kubeconform"
SCHEMAS = ROOT / ".tools" / "schemas"
KUBE_VERSION = "1.35.1"
NAMESPACE = "todo"
APPS = ("todo-frontend", "todo-backend")

# DESIGN §2, written out here on purpose: the charts must match the design, not themselves.
FACTS: dict[str, dict[str, Any]] = {
    "todo-frontend": {
        "port": 3000,
        "liveness": ("/health", 30),
        "readiness": ("/health", 10),
        "replicas": 2,
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
        "service": {"type": "NodePort", "port": 3000, "nodePort": 30000},
        "config": {"BACKEND_URL": "http://todo-backend:8001", "NEXT_PUBLIC_FEATURE_CHAT": "true"},
        "writable": {"/tmp", "/app/.next/cache"},
        "secrets": {},
    },
    "todo-backend": {
        "port": 8001,
        "liveness": ("/health", 30),
        "readiness": ("/ready", 10),
        "replicas": 2,
        "requests": {"cpu": "200m", "memory": "256Mi"},
        "limits": {"cpu": "1000m", "memory": "1Gi"},
        "service": {"type": "ClusterIP", "port": 8001},
        "config": {"LLM_PROVIDER": "GROQ", "LOG_LEVEL": "info"},
        "writable": {"/tmp"},
        "secrets": {"todo-backend-secrets": ["DATABASE_URL", "GROQ_API_KEY", "JWT_SECRET"]},
    },
}
UID = 1001
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)
ALL_FEATURES = ("autoscaling.enabled=true", "networkPolicy.enabled=true", "ingress.enabled=true")
# name -> (use the minikube values file, --set flags)
CONFIGS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "defaults": (False, ()),
    "minikube": (True, ()),
    "all-features": (True, ALL_FEATURES),
}


def require_tools() -> None:
    """The real tools, never a skip: without them the tests fail and say how to get them."""
    missing = [str(p) for p in (HELM, KUBECONFORM) if not p.is_file()]
    if not (SCHEMAS / "kubernetes").is_dir():
        missing.append(str(SCHEMAS / "kubernetes"))
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run make setup", pytrace=False)


def values_file(app: str) -> str:
    return f"../../clusters/minikube/values/{app}.yaml"


def helm_template(app: str, *, minikube: bool = True, sets: tuple[str, ...] = (),
                  set_strings: tuple[str, ...] = (), extra_values: tuple[Path, ...] = (),
                  release: str | None = None) -> subprocess.CompletedProcess[str]:
    """`helm template` exactly as Argo CD runs it, plus optional overrides."""
    require_tools()
    cmd = [str(HELM), "template", ".", "--name-template", release or app, "--namespace", NAMESPACE,
           "--kube-version", KUBE_VERSION, "--include-crds"]
    if minikube:
        cmd += ["--values", values_file(app)]
    for path in extra_values:
        cmd += ["--values", str(path)]
    for item in sets:
        cmd += ["--set", item]
    for item in set_strings:
        cmd += ["--set-string", item]
    return subprocess.run(cmd, cwd=ROOT / "apps" / app, capture_output=True, text=True, timeout=60)


def load_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(app: str, **kwargs: Any) -> tuple[str, list[dict[str, Any]]]:
    result = helm_template(app, **kwargs)
    assert result.returncode == 0, f"helm template {app} failed:\n{result.stderr}"
    return result.stdout, load_docs(result.stdout)


class Renders:
    """Each (app, configuration) rendered on first use, then reused by every test of the module."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[str, list[dict[str, Any]]]] = {}

    def text(self, app: str, config: str = "minikube") -> str:
        return self._get(app, config)[0]

    def docs(self, app: str, config: str = "minikube") -> list[dict[str, Any]]:
        return self._get(app, config)[1]

    def _get(self, app: str, config: str) -> tuple[str, list[dict[str, Any]]]:
        if (app, config) not in self._cache:
            minikube, sets = CONFIGS[config]
            self._cache[(app, config)] = render(app, minikube=minikube, sets=sets)
        return self._cache[(app, config)]


@pytest.fixture(scope="module")
def renders() -> Renders:
    require_tools()
    return Renders()


def only(docs: list[dict[str, Any]], kind: str, *, hooks: bool = False) -> list[dict[str, Any]]:
    def is_hook(doc: dict[str, Any]) -> bool:
        return "helm.sh/hook" in (doc.get("metadata", {}).get("annotations") or {})
    return [d for d in docs if d["kind"] == kind and is_hook(d) == hooks]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = only(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_images(docs: list[dict[str, Any]]) -> list[str]:
    images = []
    for doc in docs:
        spec = doc.get("spec") or {}
        pod = spec.get("template", {}).get("spec") if doc["kind"] != "Pod" else spec
        for c in (pod or {}).get("containers", []) + (pod or {}).get("initContainers", []):
            images.append(c["image"])
    return images


# --- lint -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("minikube", [False, True], ids=["chart-defaults", "minikube-values"])
@pytest.mark.parametrize("app", APPS)
def test_helm_lint_strict(app: str, minikube: bool) -> None:
    require_tools()
    cmd = [str(HELM), "lint", "--strict", ".", "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    if minikube:
        cmd += ["--values", values_file(app)]
    result = subprocess.run(cmd, cwd=ROOT / "apps" / app, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("app", APPS)
def test_chart_metadata(app: str) -> None:
    chart = yaml.safe_load((ROOT / "apps" / app / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == app
    assert chart["type"] == "application"
    assert chart["version"] == "0.1.0"
    assert isinstance(chart["appVersion"], str) and chart["appVersion"] not in ("", "latest")


# --- DESIGN §2, field by field, on the Argo CD render --------------------------------------------------

@pytest.mark.parametrize("app", APPS)
def test_service(renders: Renders, app: str) -> None:
    facts = FACTS[app]["service"]
    service = one(renders.docs(app), "Service")
    assert service["metadata"]["name"] == app
    assert service["spec"]["type"] == facts["type"]
    (port,) = service["spec"]["ports"]
    assert port["port"] == facts["port"]
    assert port["targetPort"] == "http"
    assert port.get("nodePort") == facts.get("nodePort")
    deployment = one(renders.docs(app), "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("app", APPS)
def test_deployment_container(renders: Renders, app: str) -> None:
    facts = FACTS[app]
    deployment = one(renders.docs(app), "Deployment")
    assert deployment["metadata"]["name"] == app
    assert deployment["spec"]["replicas"] == facts["replicas"]
    assert deployment["spec"]["revisionHistoryLimit"] > 0
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    c = container(deployment)
    assert c["ports"] == [{"name": "http", "containerPort": facts["port"], "protocol": "TCP"}]
    for probe_name, (path, period) in (("livenessProbe", facts["liveness"]),
                                       ("readinessProbe", facts["readiness"])):
        probe = c[probe_name]
        assert probe["httpGet"] == {"path": path, "port": "http"}, probe_name
        assert probe["periodSeconds"] == period, probe_name
    assert c["resources"] == {"requests": facts["requests"], "limits": facts["limits"]}
    assert c["image"] == f"{app}:1.0.0"
    assert c["imagePullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize("app", APPS)
def test_security_context(renders: Renders, app: str) -> None:
    deployment = one(renders.docs(app), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    c = container(deployment)
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert set(mounts) == FACTS[app]["writable"]
    for name in mounts.values():
        assert volumes[name] == {"name": name, "emptyDir": {}}
    account = one(renders.docs(app), "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.parametrize("app", APPS)
def test_config_map_and_secrets(renders: Renders, app: str) -> None:
    docs = renders.docs(app)
    config_map = one(docs, "ConfigMap")
    assert FACTS[app]["config"].items() <= config_map["data"].items()
    assert all(isinstance(v, str) for v in config_map["data"].values())
    c = container(one(docs, "Deployment"))
    assert c["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    refs: dict[str, list[str]] = {}
    for env in c.get("env", []):
        ref = env["valueFrom"]["secretKeyRef"]
        assert env["name"] == ref["key"]
        refs.setdefault(ref["name"], []).append(ref["key"])
    assert refs == FACTS[app]["secrets"]
    secret_names = set().union(*(FACTS[a]["secrets"] for a in APPS))
    assert not secret_names & set(config_map["data"]), "a secret key in the ConfigMap"


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("app", APPS)
def test_chart_never_renders_a_secret(renders: Renders, app: str, config: str) -> None:
    assert not [d for d in renders.docs(app, config) if d["kind"] == "Secret"]


def test_backend_secret_matches_cluster_facts(renders: Renders) -> None:
    """The Secret the backend reads is the one clusters/minikube/cluster.yaml declares, with its keys."""
    cluster = yaml.safe_load((ROOT / "clusters" / "minikube" / "cluster.yaml").read_text())
    declared = {(s["namespace"], s["name"]): set(s["keys"]) for s in cluster["externalSecrets"]}
    c = container(one(renders.docs("todo-backend"), "Deployment"))
    for env in c["env"]:
        ref = env["valueFrom"]["secretKeyRef"]
        assert ref["key"] in declared[(NAMESPACE, ref["name"])]


@pytest.mark.parametrize("app", APPS)
def test_labels(renders: Renders, app: str) -> None:
    for doc in renders.docs(app, "all-features"):
        labels = doc["metadata"]["labels"]
        hook = "helm.sh/hook" in (doc["metadata"].get("annotations") or {})
        expected = [k for k in STANDARD_LABELS if not (hook and k == "app.kubernetes.io/name")]
        missing = [k for k in expected if k not in labels]
        assert not missing, f"{doc['kind']} {doc['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == app
        assert labels["app.kubernetes.io/version"] == "1.0.0"
        if hook:  # the test Pod must not be selected by the Service or the PDB
            assert "app.kubernetes.io/name" not in labels


@pytest.mark.parametrize("app", APPS)
def test_fullname_when_release_lacks_chart_name(app: str) -> None:
    _, docs = render(app, release="demo")
    assert one(docs, "Service")["metadata"]["name"] == f"demo-{app}"
    _, docs = render(app, release="demo", sets=("fullnameOverride=api",))
    assert one(docs, "Deployment")["metadata"]["name"] == "api"


@pytest.mark.parametrize("app", APPS)
def test_pod_disruption_budget(renders: Renders, app: str) -> None:
    docs = renders.docs(app)
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize("app", APPS)
def test_optional_objects_off_by_default(renders: Renders, app: str) -> None:
    kinds = {d["kind"] for d in renders.docs(app)}
    assert not kinds & {"HorizontalPodAutoscaler", "Ingress"}


@pytest.mark.parametrize("app", APPS)
def test_autoscaling(renders: Renders, app: str) -> None:
    docs = renders.docs(app, "all-features")
    deployment = one(docs, "Deployment")
    assert "replicas" not in deployment["spec"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": app}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def by_name(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in only(docs, kind)}


def test_network_policies(renders: Renders) -> None:
    frontend = by_name(renders.docs("todo-frontend", "all-features"), "NetworkPolicy")
    assert set(frontend) == {"todo-frontend", "todo-frontend-default-deny", "todo-frontend-test"}
    deny = frontend["todo-frontend-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    ui = frontend["todo-frontend"]["spec"]
    assert ui["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = ui["ingress"]
    assert "from" not in rule  # the UI is public (NodePort, ingress controller)
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    dns, api = ui["egress"]
    assert {"port": 53, "protocol": "UDP"} in dns["ports"] and {"port": 53, "protocol": "TCP"} in dns["ports"]
    assert api == {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "todo-backend"}}}],
                   "ports": [{"port": 8001, "protocol": "TCP"}]}

    backend_docs = renders.docs("todo-backend", "all-features")
    policies = by_name(backend_docs, "NetworkPolicy")
    assert policies["todo-backend-default-deny"]["spec"] == deny
    backend = policies["todo-backend"]
    assert backend["spec"]["policyTypes"] == ["Ingress", "Egress"]
    pod_labels = one(backend_docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert backend["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    (rule,) = backend["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    selectors = [peer["podSelector"]["matchLabels"] for peer in rule["from"] if "podSelector" in peer]
    assert {"app.kubernetes.io/name": "todo-frontend"} in selectors
    # the frontend's pods carry that label
    frontend_pods = one(renders.docs("todo-frontend"), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert frontend_pods["app.kubernetes.io/name"] == "todo-frontend"
    # with the Ingress on, the controller's namespace is admitted
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in rule["from"]
    # out: DNS, then Neon (5432) and Groq (443) outside the private ranges only
    dns, external = backend["spec"]["egress"]
    assert dns == api_dns(ui)
    (block,) = external["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(block["ipBlock"]["except"])
    assert external["ports"] == [{"port": 5432, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]


def api_dns(policy_spec: dict[str, Any]) -> dict[str, Any]:
    return policy_spec["egress"][0]


def test_ingress_one_origin(renders: Renders) -> None:
    frontend = one(renders.docs("todo-frontend", "all-features"), "Ingress")
    backend = one(renders.docs("todo-backend", "all-features"), "Ingress")
    routes = {}
    for ingress, app in ((frontend, "todo-frontend"), (backend, "todo-backend")):
        assert ingress["spec"]["ingressClassName"] == "nginx"
        (rule,) = ingress["spec"]["rules"]
        (path,) = rule["http"]["paths"]
        assert path["pathType"] == "Prefix"
        assert path["backend"]["service"] == {"name": app, "port": {"name": "http"}}
        routes[path["path"]] = rule["host"]
    assert set(routes) == {"/", "/api"}
    assert routes["/"] == routes["/api"], "frontend and backend must share one host"


@pytest.mark.parametrize("app", APPS)
def test_helm_test_pod_is_hardened(renders: Renders, app: str) -> None:
    (pod,) = only(renders.docs(app), "Pod", hooks=True)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == UID
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = spec["containers"]
    repository, _, tag = c["image"].rpartition(":")
    assert repository == "busybox" and tag == "1.37.0"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}
    assert f"http://{app}:{FACTS[app]['port']}/health" in c["args"]


# --- schemas -------------------------------------------------------------------------------------------

def kubeconform(path: Path) -> subprocess.CompletedProcess[str]:
    require_tools()
    cmd = [str(KUBECONFORM), "-strict", "-summary", "-output", "json", "-kubernetes-version", KUBE_VERSION,
           "-schema-location", str(SCHEMAS / "kubernetes" / "v1.35") + "/{{.ResourceKind}}{{.KindSuffix}}.json",
           "-schema-location", str(SCHEMAS / "crds") + "/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json",
           str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("app", APPS)
def test_kubeconform_strict(renders: Renders, app: str, config: str, tmp_path: Path) -> None:
    manifest = tmp_path / f"{app}-{config}.yaml"
    manifest.write_text(renders.text(app, config))
    result = kubeconform(manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["invalid"] == 0 and summary["errors"] == 0 and summary["skipped"] == 0, result.stdout
    assert summary["valid"] == len(renders.docs(app, config))


SCHEMA_VIOLATIONS = {
    "tag-latest": {"set_strings": ("image.tag=latest",)},
    "unknown-key": {"sets": ("replicaCoutn=3",)},
    "unknown-nested-key": {"sets": ("service.nodeport=30001",)},
    "wrong-type": {"set_strings": ("replicaCount=two",)},
    "bad-pull-policy": {"set_strings": ("image.pullPolicy=Sometimes",)},
    "port-out-of-range": {"sets": ("service.port=70000",)},
}


@pytest.mark.parametrize("case", SCHEMA_VIOLATIONS)
@pytest.mark.parametrize("app", APPS)
def test_values_schema_rejects(app: str, case: str) -> None:
    result = helm_template(app, **SCHEMA_VIOLATIONS[case])
    assert result.returncode != 0, f"{case} was accepted"
    assert "schema" in result.stderr, result.stderr


@pytest.mark.parametrize("app", APPS)
def test_values_schema_rejects_latest_in_a_values_file(app: str, tmp_path: Path) -> None:
    override = tmp_path / "override.yaml"
    override.write_text("image:\n  tag: latest\n")
    result = helm_template(app, extra_values=(override,))
    assert result.returncode != 0 and "/image/tag" in result.stderr, result.stderr


def test_frontend_schema_rejects_node_port_out_of_range() -> None:
    result = helm_template("todo-frontend", sets=("service.nodePort=80",))
    assert result.returncode != 0 and "nodePort" in result.stderr, result.stderr


def test_backend_schema_rejects_secret_in_config() -> None:
    result = helm_template("todo-backend", set_strings=("config.JWT_SECRET=hunter2",))
    assert result.returncode != 0 and "schema" in result.stderr, result.stderr


@pytest.mark.parametrize("app", APPS)
def test_values_schema_admits_global(app: str) -> None:
    _, docs = render(app, sets=("global.env=dev",))
    assert one(docs, "Deployment")


@pytest.mark.parametrize("app", APPS)
def test_minikube_values_only_use_chart_keys(app: str) -> None:
    chart_values = yaml.safe_load((ROOT / "apps" / app / "values.yaml").read_text())
    override = yaml.safe_load((ROOT / "clusters" / "minikube" / "values" / f"{app}.yaml").read_text())

    def walk(over: dict[str, Any], base: dict[str, Any], path: str) -> None:
        for key, value in over.items():
            assert key in base, f"{path}{key} is not a key of apps/{app}/values.yaml"
            if isinstance(value, dict) and isinstance(base[key], dict) and base[key]:
                walk(value, base[key], f"{path}{key}.")

    walk(override, chart_values, "")
    assert override["replicaCount"] == FACTS[app]["replicas"]
    assert override["image"]["tag"] not in ("", "latest")


# --- images and rollouts ----------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("app", APPS)
def test_no_latest_images(renders: Renders, app: str, config: str) -> None:
    images = pod_images(renders.docs(app, config))
    assert len(images) == 2  # the app and the helm test Pod
    for image in images:
        name, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag, f"{image} has no tag"
        assert tag != "latest", image
    assert "latest" not in renders.text(app, config)


@pytest.mark.parametrize("app", APPS)
def test_image_tag_defaults_to_app_version(renders: Renders, app: str) -> None:
    chart = yaml.safe_load((ROOT / "apps" / app / "Chart.yaml").read_text())
    c = container(one(renders.docs(app, "defaults"), "Deployment"))
    assert c["image"] == f"{app}:{chart['appVersion']}"


def checksum(docs: list[dict[str, Any]]) -> str:
    return one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


@pytest.mark.parametrize("app,key,value", [("todo-frontend", "NEXT_PUBLIC_FEATURE_CHAT", "false"),
                                           ("todo-backend", "LOG_LEVEL", "debug")])
def test_config_checksum_rolls_pods(renders: Renders, app: str, key: str, value: str) -> None:
    base = checksum(renders.docs(app))
    assert len(base) == 64 and int(base, 16) >= 0
    _, same = render(app)
    assert checksum(same) == base, "the checksum must be stable"
    _, changed = render(app, set_strings=(f"config.{key}={value}",))
    assert one(changed, "ConfigMap")["data"][key] == value
    assert checksum(changed) != base
    # an unrelated value does not roll the pods through the checksum
    _, other = render(app, sets=("replicaCount=3",))
    assert checksum(other) == base


@pytest.mark.parametrize("app", APPS)
def test_checksum_is_sha256_of_the_rendered_configmap(renders: Renders, app: str) -> None:
    source = f"# Source: {app}/templates/configmap.yaml\n"
    text = renders.text(app)
    start = text.index(source) + len(source)
    end = text.find("\n---", start)
    body = text[start:end if end >= 0 else len(text)]
    assert hashlib.sha256(body.encode()).hexdigest() == checksum(renders.docs(app))
