"""The hardening (issue 11) holds: each one-line edit that would re-open it is refused, with a reason.

Projects, Pod Security, NetworkPolicies, Argo CD over TLS and the supply chain (CI actions, base
images, CODEOWNERS). The e2e suite shows the real Argo CD and API server refusing the same things.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from conftest import ROOT, run_cli

PSA = "pod-security.kubernetes.io/"


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def projects() -> dict[str, dict]:
    return {p["metadata"]["name"]: p["spec"] for p in load_all(ROOT / "argocd" / "projects.yaml")}


def validate(repo: Path):
    return run_cli("--repo", str(repo), "--format", "json", "--no-cache")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def cluster_minor() -> str:
    version = yaml.safe_load((ROOT / "clusters/minikube/cluster.yaml").read_text())["kubernetesVersion"]
    return "v" + ".".join(str(version).lstrip("v").split(".")[:2])


# --- 1. projects ----------------------------------------------------------------------------

def test_default_project_is_locked_by_the_install() -> None:
    kustomization = yaml.safe_load((ROOT / "argocd/kustomization.yaml").read_text())
    assert "projects.yaml" in kustomization["resources"]
    default = projects()["default"]
    assert default["sourceRepos"] == [] and default["destinations"] == [], default
    assert default["clusterResourceWhitelist"] == []
    assert default["namespaceResourceBlacklist"] == [{"group": "*", "kind": "*"}]


def test_no_project_allows_a_wildcard_or_an_unnamed_namespace() -> None:
    for name, spec in projects().items():
        assert "*" not in spec.get("sourceRepos", []), name
        for d in spec.get("destinations", []):
            assert "*" not in (d.get("namespace", ""), d.get("server", "")), name
        for item in spec.get("clusterResourceWhitelist", []):
            assert item["kind"] == "Namespace" and item.get("name"), f"{name}: {item}"
            # its own destination namespace, nothing else
            assert item["name"] in {d["namespace"] for d in spec["destinations"]}, name
        for item in spec.get("namespaceResourceWhitelist", []):
            assert "*" not in (item["group"], item["kind"]), f"{name}: {item}"


def test_todo_project_whitelists_exactly_the_kinds_the_charts_render() -> None:
    rendered = set()
    for template in (ROOT / "apps").glob("*/templates/**/*.yaml"):
        text = template.read_text()
        for api, kind in re.findall(r"(?m)^apiVersion: (\S+)\nkind: (\S+)", text):
            rendered.add((api.rpartition("/")[0], kind))
    allowed = {(i["group"], i["kind"]) for i in projects()["todo"]["namespaceResourceWhitelist"]}
    assert allowed == rendered


def test_children_project_is_not_a_cluster_value(repo_copy: Path) -> None:
    template = (ROOT / "argocd/apps/templates/applications.yaml").read_text()
    assert re.search(r"(?m)^  project: todo$", template), \
        "the children's project must be the literal `todo` in the chart: a value (or `default`) would let a " \
        "cluster file or an edit move the apps out of the locked-down project"
    assert "project" not in yaml.safe_load((ROOT / "argocd/apps/values.schema.json").read_text())["properties"]
    # A cluster's apps.yaml that tries to move the apps into `default` is refused.
    edit(repo_copy / "clusters/minikube/apps.yaml", "apps:\n", "project: default\napps:\n")
    r = validate(repo_copy)
    assert r.code == 1 and r.rules() & {"values/schema", "values/unknown-key"}, r.out + r.err
    assert any("project" in f["message"] for f in r.json["findings"]), r.json["findings"]


# --- 2. Pod Security ------------------------------------------------------------------------

def _managed_labels(app: dict) -> dict:
    policy = app["spec"]["syncPolicy"]
    assert "CreateNamespace=true" in policy["syncOptions"]
    return policy["managedNamespaceMetadata"]["labels"]


def test_namespaces_enforce_restricted_at_the_cluster_minor() -> None:
    root = yaml.safe_load((ROOT / "argocd/root-app.yaml").read_text())
    labels = _managed_labels(root)
    assert labels[PSA + "enforce"] == "restricted"
    assert labels[PSA + "enforce-version"] == cluster_minor()
    apps_values = yaml.safe_load((ROOT / "clusters/minikube/apps.yaml").read_text())
    assert apps_values["podSecurityVersion"] == cluster_minor()
    template = (ROOT / "argocd/apps/templates/applications.yaml").read_text()
    assert f"{PSA}enforce: restricted" in template


def test_a_removed_enforce_label_is_refused(repo_copy: Path) -> None:
    edit(repo_copy / "argocd/apps/templates/applications.yaml", f"        {PSA}enforce: restricted\n", "")
    edit(repo_copy / "argocd/root-app.yaml", f"{PSA}enforce: restricted", f"{PSA}enforce: privileged")
    r = validate(repo_copy)
    assert r.code == 1, r.out + r.err
    found = [f for f in r.json["findings"] if f["rule"] == "security/namespace-pod-security"]
    assert {f["object"]["name"] for f in found} == {"todo-root", "todo-backend", "todo-frontend"}, found
    assert all("would admit privileged pods" in f["message"] for f in found)


# --- 3. NetworkPolicies ---------------------------------------------------------------------

def test_minikube_isolates_every_pod_both_ways() -> None:
    """`networkPolicy.enabled: false` (or defaultDeny off) for minikube is refused here."""
    from conftest import tool_env  # noqa: PLC0415 (the pinned helm)
    import subprocess  # noqa: PLC0415
    for app in ("todo-backend", "todo-frontend"):
        p = subprocess.run(["helm", "template", app, str(ROOT / "apps" / app), "--namespace", "todo",
                            "-f", str(ROOT / f"clusters/minikube/values/{app}.yaml")],
                           capture_output=True, text=True, env=tool_env(), check=True)
        docs = [d for d in yaml.safe_load_all(p.stdout) if d]
        policies = [d["spec"] for d in docs if d["kind"] == "NetworkPolicy"]
        assert {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]} in policies, \
            f"{app}: no default-deny NetworkPolicy for minikube (networkPolicy.enabled/defaultDeny off?)"
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        own = [s for s in policies if s["podSelector"].get("matchLabels")
               and s["podSelector"]["matchLabels"].items() <= labels.items()]
        assert own and all(s["policyTypes"] == ["Ingress", "Egress"] for s in own), f"{app}: {own}"


def test_a_blocked_path_is_refused_naming_it(repo_copy: Path) -> None:
    edit(repo_copy / "clusters/minikube/values/todo-frontend.yaml", "networkPolicy:\n  enabled: true\n",
         "networkPolicy:\n  enabled: true\n  backend:\n    podLabels: {app.kubernetes.io/name: todo-backend}\n"
         "    port: 8080\n")
    r = validate(repo_copy)
    assert r.code == 1, r.out + r.err
    (found,) = [f for f in r.json["findings"] if f["rule"] == "refs/traffic-blocked"]
    assert found["message"].startswith("path blocked: Deployment todo/todo-frontend -> http://todo-backend:8001 "
                                       "-> Deployment todo/todo-backend port 8001: at the caller's egress"), found


def test_network_rules_follow_kubernetes_semantics() -> None:
    from gitops_validate.model import Manifest  # noqa: PLC0415
    from gitops_validate.rules import Context  # noqa: PLC0415
    from gitops_validate.rules.network import OUTSIDE, Pod, allowed, matches  # noqa: PLC0415

    assert matches({}, {"a": "1"}) and not matches(None, {})
    assert matches({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["api", "web"]}]},
                   {"tier": "web"})
    assert not matches({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": "x"})

    def policy(name: str, spec: dict, ns: str = "todo") -> Manifest:
        return Manifest({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": name, "namespace": ns}, "spec": spec})
    api = Pod(Manifest({"kind": "Deployment", "metadata": {"name": "api", "namespace": "todo"}}), "todo",
              {"app": "api"})
    web = Pod(Manifest({"kind": "Deployment", "metadata": {"name": "web", "namespace": "todo"}}), "todo",
              {"app": "web"})
    other_ns = Pod(web.workload, "other", {"app": "web"})
    ctx = Context(objects=(policy("api", {"podSelector": {"matchLabels": {"app": "api"}},
                                          "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}},
                                                                {"ipBlock": {"cidr": "10.0.0.0/8"}}],
                                                       "ports": [{"port": "http"}, {"port": 9000, "endPort": 9009}]}]}),))
    assert allowed(ctx, api, "Ingress", web, 8001, "http")[0]          # a named port
    assert allowed(ctx, api, "Ingress", web, 9005, None)[0]            # a port range
    assert not allowed(ctx, api, "Ingress", web, 8001, "metrics")[0]   # another port
    assert not allowed(ctx, api, "Ingress", other_ns, 8001, "http")[0]  # podSelector: own namespace only
    assert allowed(ctx, api, "Ingress", OUTSIDE, 8001, "http")[0]      # ipBlock: outside traffic only
    assert not allowed(ctx, api, "Ingress", web, 8001, "http", "UDP")[0]
    assert allowed(ctx, web, "Ingress", api, 1, None) == (True, [])   # not isolated: no policy selects it
    assert allowed(ctx, api, "Egress", web, 1, None) == (True, [])    # policyTypes defaults to Ingress


# --- 5. supply chain ------------------------------------------------------------------------

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")


def test_every_action_is_pinned_by_commit_sha_with_its_tag() -> None:
    assert WORKFLOWS
    for wf in WORKFLOWS:
        for n, line in enumerate(wf.read_text().splitlines(), 1):
            m = USES.match(line)
            if not m or m.group(1).startswith("./"):
                continue
            ref, comment = m.group(1), m.group(2).strip()
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), \
                f"{wf.name}:{n}: {ref} is pinned by a tag a maintainer (or an attacker) can move; pin the full commit SHA"
            assert re.fullmatch(r"# v\d+(\.\d+)*", comment), \
                f"{wf.name}:{n}: say which release the SHA is, as a `# vX.Y.Z` comment"


def _jobs() -> dict[str, dict]:
    out = {}
    for wf in WORKFLOWS:
        doc = yaml.safe_load(wf.read_text())
        assert doc.get("permissions") == {}, f"{wf.name}: the default token must have no permission"
        out.update({f"{wf.name}:{name}": job for name, job in doc["jobs"].items()})
    return out


def test_least_privilege_per_job() -> None:
    for name, job in _jobs().items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{name}: give the job its own permissions"
        uploads = any(s.get("uses", "").startswith("github/codeql-action/upload-sarif") for s in job["steps"])
        expected = {"contents": "read", **({"security-events": "write"} if uploads else {})}
        assert perms == expected, f"{name}: {perms} (security-events: write only for the SARIF upload)"
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, \
                    f"{name}: checkout must not leave the token in .git/config (persist-credentials: false)"


def test_go_is_pinned_to_an_exact_version_the_modules_accept() -> None:
    needed = max(tuple(int(x) for x in re.search(r"(?m)^go (\S+)", m.read_text()).group(1).split("."))
                 for m in (ROOT / "tests/e2e/modules").glob("*/go.mod"))
    for name, job in _jobs().items():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/setup-go@"):
                version = str(step["with"].get("go-version", ""))
                assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name}: go-version {version!r} floats"
                assert tuple(int(x) for x in version.split(".")) >= needed, name


def test_base_images_are_pinned_by_digest() -> None:
    dockerfiles = sorted((ROOT / "images").glob("*/Dockerfile"))
    assert dockerfiles
    for path in dockerfiles:
        text = path.read_text()
        args = dict(re.findall(r"(?m)^ARG (\w+)=(\S+)", text))
        stages: set[str] = set()
        for ref, alias in re.findall(r"(?m)^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", text):
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), ref)
            if image not in stages:
                assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), \
                    f"{path.relative_to(ROOT)}: FROM {image} is not pinned by digest (name:tag@sha256:...)"
            stages.add(alias)


def test_frontend_runtime_files_are_owned_by_root() -> None:
    text = (ROOT / "images/frontend/Dockerfile").read_text()
    runtime = text[text.index("AS runtime"):]
    assert "--chown" not in runtime, "the app must not own (and so be able to rewrite) its own code"


def test_codeowners_guards_the_gate() -> None:
    owners = ROOT / ".github" / "CODEOWNERS"
    rules = [line.split() for line in owners.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert all(len(r) >= 2 and all(o.startswith("@") for o in r[1:]) for r in rules), "every pattern names owners"
    patterns = {r[0] for r in rules}
    for guarded in ("/argocd/", "/.gitops-validator.yaml", "/validator/", "/.github/", "/clusters/*/cluster.yaml"):
        assert guarded in patterns, f"CODEOWNERS must guard {guarded}"


# --- 4. Argo CD over TLS ----------------------------------------------------------------------

def test_argocd_server_is_not_insecure() -> None:
    """server.insecure (or its flag/env) anywhere in argocd/ turns the UI and API into plain HTTP."""
    for path in sorted((ROOT / "argocd").rglob("*.y*ml")):
        text = path.read_text()
        assert "--insecure" not in text and "ARGOCD_SERVER_INSECURE" not in text, path
        if "templates" in path.parts:
            continue  # Helm templates, not YAML yet
        for doc in load_all(path):
            data = doc.get("data") or {} if doc.get("kind") == "ConfigMap" else {}
            value = str(data.get("server.insecure", "false")).strip().lower()
            assert value == "false", f"{path.relative_to(ROOT)}: server.insecure: {value!r} serves the Argo CD " \
                                     "UI and API (the admin password, session tokens) over plain HTTP"


def test_argocd_nodeports_reach_the_tls_port() -> None:
    service = yaml.safe_load((ROOT / "argocd/patches/argocd-server-nodeport.yaml").read_text())
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["https"]["targetPort"] == 8080 and ports["https"]["nodePort"] == 30443
    assert ports["http"]["targetPort"] == 8080  # answered with a redirect to https


# --- 6. e2e hygiene -------------------------------------------------------------------------

def test_e2e_kubeconfig_takes_only_throwaway_clusters() -> None:
    import pytest  # noqa: PLC0415

    from e2e.harness import HarnessError, check_context  # noqa: PLC0415

    def config(name: str, extensions: list | None = None) -> dict:
        context = {"cluster": name, "user": name, **({"extensions": extensions} if extensions else {})}
        return {"current-context": name, "contexts": [{"name": name, "context": context}]}
    minikube = [{"name": "context_info", "extension": {"provider": "minikube.sigs.k8s.io", "version": "v1.38.0"}}]
    assert check_context(config("kind-todo")) == "kind-todo"
    assert check_context(config("dev-profile", minikube)) == "dev-profile"
    for name in ("prod-eks", "minikube-but-not-really", "gke_acme_europe-west1_main"):
        with pytest.raises(HarnessError, match="not a minikube or kind profile.*E2E_FORCE=1"):
            check_context(config(name))
    assert check_context(config("prod-eks"), force=True) == "prod-eks"


def test_network_rules_survive_malformed_objects() -> None:
    """Bad input is at most a finding (schema/ reports the shape), never a traceback."""
    from gitops_validate.policy import evaluate  # noqa: PLC0415
    from gitops_validate.rules import REGISTRY, Context  # noqa: PLC0415
    from gitops_validate.rules.examples import example_deployment  # noqa: PLC0415
    from gitops_validate.model import Manifest  # noqa: PLC0415

    deploy = yaml.safe_load(example_deployment(container={"env": "[{name: API, value: 'http://web:80/x'}]"}))
    deploy["metadata"]["namespace"] = "n"
    weird = [
        {"spec": "nope"}, {"spec": []}, {"spec": {"podSelector": "x", "policyTypes": "Ingress"}},
        {"spec": {"podSelector": {"matchLabels": ["a"], "matchExpressions": "b"}, "ingress": "all"}},
        {"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                  "ingress": [None, {"from": {"podSelector": 1}, "ports": {"port": 80}}],
                  "egress": [{"to": "x", "ports": [{"port": None}, "p", {"port": "http", "endPort": "9"}]}]}},
    ]
    objects = [Manifest(deploy)] + [Manifest({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                              "metadata": {"name": f"p{i}", "namespace": "n"}, **w})
                                     for i, w in enumerate(weird)]
    objects += [Manifest({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "n"},
                          "spec": spec}) for spec in ({"type": "NodePort", "selector": {"app": "web"}, "ports": "80"},
                                                      {"type": "NodePort", "selector": {"app": "web"},
                                                       "ports": [{"port": 80, "targetPort": "http"}]})]
    ctx = Context(objects=tuple(objects))
    rules = [REGISTRY["refs/traffic-blocked"], REGISTRY["refs/networkpolicy-selects-nothing"]]
    findings = evaluate(objects, ctx, rules=rules)
    assert all(f.rule in {r.id for r in rules} for f in findings)
