"""capacity/: the cluster's budget (requests × replicas + surge, per workload kind), the two
cluster-level rules failing and passing, where their findings point, and the README's budget table."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml

from conftest import ROOT, run_cli
from gitops_validate.model import ClusterFacts, Manifest
from gitops_validate.policy import SKIP_ANNOTATION, evaluate_cluster
from gitops_validate.rules import CLUSTER_RULES, REGISTRY, Context
from gitops_validate.rules.capacity import budget, format_table
from gitops_validate.yamlio import load_one

MINIKUBE = {"cpu": "4", "memory": "8Gi"}


def facts(capacity: dict | None = None) -> ClusterFacts:
    return ClusterFacts(name="t", capacity=dict(MINIKUBE if capacity is None else capacity), directory="clusters/t",
                        capacity_lines={"cpu": 3, "memory": 4, "pods": 5})


def load(text: str) -> list[Manifest]:
    docs = [d for d in yaml.safe_load_all(textwrap.dedent(text)) if isinstance(d, dict)]
    for d in docs:
        d.setdefault("metadata", {}).setdefault("namespace", "default")
    return [Manifest(d, "t.yaml", app="web") for d in docs]


def ctx(text: str, capacity: dict | None = None, values: dict | None = None) -> Context:
    return Context(tuple(load(text)), facts(capacity), values=values or {})


def deploy(replicas: int | None = 2, cpu: str = "200m", memory: str = "256Mi", strategy: str = "",
           kind: str = "Deployment", name: str = "web", extra_pod: str = "") -> str:
    rep = f"  replicas: {replicas}\n" if replicas is not None else ""
    return (f"apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n{rep}{strategy}"
            f"  template:\n    spec:\n{extra_pod}      containers:\n        - name: c\n"
            f"          resources: {{requests: {{cpu: {cpu}, memory: {memory}}}}}\n")


def rows(c: Context) -> dict[str, tuple[int, int]]:
    return {f"{r.workload.kind}/{r.workload.name}": (r.replicas, r.surge) for r in budget(c).rows}


def findings(c: Context, severities: dict | None = None):
    return evaluate_cluster(c, severities)


# --- what counts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("replicas, strategy, surge", [
    (2, "", 1), (20, "", 5), (4, "", 1), (1, "", 1), (0, "", 0),
    (10, "  strategy: {rollingUpdate: {maxSurge: 3}}\n", 3),
    (10, "  strategy: {rollingUpdate: {maxSurge: '50%'}}\n", 5),
    (10, "  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}\n", 0),
    (10, "  strategy: {type: Recreate}\n", 0),
])
def test_deployment_surge_defaults_to_25_percent_rounded_up(replicas, strategy, surge):
    assert rows(ctx(deploy(replicas, strategy=strategy))) == {"Deployment/web": (replicas, surge)}


def test_each_workload_kind_counts_its_pods():
    c = ctx(deploy(3, kind="StatefulSet", name="db") + "---\n" + deploy(None, kind="DaemonSet", name="agent")
            + "---\n" + deploy(None, name="scaled") + "---\n"
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: scaled}\n"
            "spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: scaled}, minReplicas: 2, maxReplicas: 6}\n"
            "---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  parallelism: 2\n"
            "  template:\n    spec:\n      containers: [{name: m, resources: {requests: {cpu: 100m, memory: 64Mi}}}]\n"
            "---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  schedule: '@daily'\n"
            "  jobTemplate:\n    spec:\n      template:\n        spec:\n"
            "          containers: [{name: m, resources: {requests: {cpu: 100m, memory: 64Mi}}}]\n",
            capacity={**MINIKUBE, "nodes": 3})
    assert rows(c) == {"StatefulSet/db": (3, 0), "DaemonSet/agent": (3, 0), "Deployment/scaled": (6, 2),
                       "Job/migrate": (2, 0), "CronJob/nightly": (1, 0)}


def test_helm_test_hooks_and_skipped_objects_count_nothing():
    hook = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\n  annotations: {'helm.sh/hook': %s}\n"
            "spec: {containers: [{name: t, resources: {requests: {cpu: '1', memory: 1Gi}}}]}\n")
    c = ctx(hook % "test" + "---\n" + hook % "pre-install")
    assert rows(c) == {"Pod/t": (1, 0)}  # the pre-install hook runs (as a PreSync hook); the test never does


def test_pod_request_is_the_schedulers():
    """Containers plus native sidecars, or the largest init container (plus sidecars) if more;
    a limit without a request is the request."""
    pod = ("      initContainers:\n"
           "        - {name: init, resources: {requests: {cpu: '2', memory: 64Mi}}}\n"
           "        - {name: side, restartPolicy: Always, resources: {requests: {cpu: 100m, memory: 32Mi}}}\n")
    text = deploy(1, cpu="300m", memory="128Mi", extra_pod=pod, strategy="  strategy: {type: Recreate}\n")
    text = text.replace("      containers:\n", "      containers:\n        - {name: limited, resources: {limits: {cpu: 50m, memory: 16Mi}}}\n")
    (row,) = budget(ctx(text)).rows
    assert row.request["cpu"] == pytest.approx(2.1)                 # init 2 + sidecar 0.1 > 0.3 + 0.05 + 0.1
    assert row.request["memory"] == pytest.approx((128 + 16 + 32) * 2 ** 20)


# --- the rules -----------------------------------------------------------------------------------

def test_exceeding_capacity_is_an_error_naming_the_biggest_contributor():
    c = ctx(deploy(20) + "---\n" + deploy(1, name="small", cpu="100m", memory="16Mi"))
    (f,) = findings(c)
    assert f.rule == "capacity/exceeded" and f.severity.value == "error"
    assert "5200m cpu (130% of capacity.cpu 4 in clusters/t/cluster.yaml" in f.message
    assert "Deployment default/web (app web): 20 + 5 surge pods × 200m" in f.message and "Pending" in f.message
    assert f.object.name == "web" and f.app == "web"


def test_above_80_percent_is_a_warning_and_below_is_clean():
    warn = findings(ctx(deploy(13, cpu="250m", strategy="  strategy: {type: Recreate}\n")))
    assert [(f.rule, f.severity.value) for f in warn] == [("capacity/headroom", "warning")]
    assert "81% of capacity.cpu" in warn[0].message
    assert findings(ctx(deploy(12, cpu="250m", strategy="  strategy: {type: Recreate}\n"))) == []


def test_memory_and_pods_are_checked_too():
    (f,) = findings(ctx(deploy(2, memory="4Gi")))
    assert f.rule == "capacity/exceeded" and "memory" in f.message and "12Gi" in f.message
    (f,) = findings(ctx(deploy(9, cpu="10m", memory="1Mi"), capacity={**MINIKUBE, "pods": 10}))
    assert f.rule == "capacity/exceeded" and "12 pods (120% of capacity.pods 10" in f.message


def test_no_declared_capacity_means_nothing_to_check():
    assert findings(ctx(deploy(500), capacity={})) == []


def test_unreadable_capacity_is_an_error_at_its_line():
    (f,) = findings(ctx(deploy(2), capacity={"cpu": "four", "memory": "8Gi"}))
    assert f.rule == "capacity/exceeded" and f.file == "clusters/t/cluster.yaml" and f.line == 3
    assert "capacity.cpu 'four' is not a positive Kubernetes quantity" in f.message


def test_finding_points_at_the_value_file_line_that_set_it():
    values = load_one("replicaCount: 20\nresources:\n  requests:\n    cpu: 200m\n    memory: 4Gi\n")
    (f,) = findings(ctx(deploy(20), values={"web": (("values.yaml", values),)}))
    assert (f.file, f.line) == ("values.yaml", 1)   # many small pods: the replica count
    (f,) = findings(ctx(deploy(2, memory="4Gi"), values={"web": (("values.yaml", values),)}))
    assert (f.file, f.line) == ("values.yaml", 5)   # few big pods: the request


def test_rule_can_be_regraded_turned_off_or_skipped_on_the_object():
    c = ctx(deploy(20))
    assert [f.severity.value for f in findings(c, {"capacity/exceeded": REGISTRY["capacity/headroom"].severity})] == ["warning"]
    assert findings(c, {"capacity/exceeded": None}) == []
    skipped = deploy(20).replace("metadata: {name: web}",
                                 f"metadata:\n  name: web\n  annotations: {{'{SKIP_ANNOTATION}': 'capacity/exceeded: load test'}}")
    assert findings(ctx(skipped)) == []


@pytest.mark.parametrize("rule", CLUSTER_RULES, ids=lambda r: r.id)
def test_documented_examples_fail_and_pass(rule):
    """The examples declare minikube's capacity (cpu 4, memory 8Gi) in their first document."""
    def run(text: str):
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
        capacity = docs[0]["capacity"]
        ms = load(yaml.safe_dump_all(docs[1:]))
        return evaluate_cluster(Context(tuple(ms), facts(capacity)), rules=[rule])
    assert [f.rule for f in run(rule.bad)] == [rule.id]
    assert run(rule.good) == []


def test_table_lists_every_workload_and_the_total():
    table = format_table(budget(ctx(deploy(2) + "---\n" + deploy(1, name="small", cpu="1", memory="1Gi",
                                                              strategy="  strategy: {type: Recreate}\n"))))
    assert "| web | Deployment default/web | 2 | 1 | 200m | 256Mi | 600m | 768Mi | 15.0% | 9.4% |" in table
    assert "| web | Deployment default/small | 1 | 0 | 1 | 1Gi | 1 | 1Gi | 25.0% | 12.5% |" in table
    assert "| **total** | | 3 | 1 | | | **1600m** | **1792Mi** | **40.0%** | **21.9%** |" in table


# --- this repo -----------------------------------------------------------------------------------

README_BLOCK = re.compile(r"<!-- capacity-budget:begin -->\n(.*?)\n<!-- capacity-budget:end -->", re.S)


def test_readme_shows_the_budget_the_command_prints():
    r = run_cli("--repo", str(ROOT), "--capacity")
    assert r.code == 0, r.out + r.err
    want = r.out.split("\n\n✓")[0].split("\n\n✗")[0].rstrip("\n")
    have = README_BLOCK.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert have, "README.md has no capacity-budget block"
    assert have.group(1) == want, f"README.md's capacity budget is stale; replace its block with:\n{want}"


def test_json_capacity_key_only_when_asked():
    r = run_cli("--repo", str(ROOT), "--format", "json", "--capacity")
    (b,) = r.json["capacity"]
    assert b["cluster"] == "minikube" and b["capacity"] == {"cpu": 4.0, "memory": 8 * 2 ** 30}
    todo = {row["name"]: (row["replicas"], row["surge"]) for row in b["rows"] if row["name"].startswith("todo-")}
    assert todo == {"todo-backend": (2, 1), "todo-frontend": (2, 1)}
    assert any(row["name"] == "argocd-server" for row in b["rows"])  # Argo CD's own pods count too
    assert b["total"]["percentCpu"] == 22.5
    assert "capacity" not in run_cli("--repo", str(ROOT), "--format", "json").json


def test_argo_cds_own_pods_count_like_any_other():
    """Argo CD's install (the argocd namespace, rendered from argocd/kustomization.yaml, no app)."""
    install = [Manifest(d, "argocd/kustomization.yaml") for d in yaml.safe_load_all(
        deploy(1, name="argocd-server", cpu="250m", memory="256Mi").replace("metadata: {name: argocd-server}",
                                                                              "metadata: {name: argocd-server, namespace: argocd}")
        + "---\n" + deploy(1, name="argocd-application-controller", kind="StatefulSet", cpu="500m", memory="1Gi")
        .replace("name: argocd-application-controller}", "name: argocd-application-controller, namespace: argocd}"))]
    c = Context(tuple(load(deploy(2)) + install), facts())
    b = budget(c)
    assert {(r.workload.app, r.workload.name, r.pods) for r in b.rows} == {
        ("web", "web", 3), (None, "argocd-server", 2), (None, "argocd-application-controller", 1)}
    assert b.used("cpu") == pytest.approx(3 * 0.2 + 2 * 0.25 + 0.5)
    assert "| - | StatefulSet argocd/argocd-application-controller | 1 | 0 | 500m | 1Gi |" in format_table(b)


@pytest.mark.parametrize("spec", ["[]", "{replicas: many, strategy: [], template: {spec: {containers: {}}}}",
                                  "{jobTemplate: text}", "{strategy: {rollingUpdate: {maxSurge: 'x%'}}, replicas: -3}"])
@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet", "CronJob", "HorizontalPodAutoscaler"])
def test_malformed_workloads_are_no_traceback(kind, spec):
    c = ctx(f"apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: w}}\nspec: {spec}\n")
    findings(c)
    format_table(budget(c))
