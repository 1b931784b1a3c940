"""A path-scoped run's widening reads references stored in the result cache, and the run keeps
the cycle collector off: no finding changes (issue 13, change 16).

On a generated repo (tests/synth.py, planted defects) with one small app per kind of cross-app
reference into backend0 (an in-cluster URL from its namespace and from another, a ConfigMap key,
Secrets, a ServiceAccount, a Service selecting its pods, a NetworkPolicy selecting them), each
change to backend0's values gives the JSON findings of the code before (commit BEFORE, from `git
archive`, no cache), with the cache warm and cold. Each change makes a finding of its own (a URL,
a ConfigMap key, a Service selecting nothing, the cluster's capacity sum); only the apps that the
widening follows are reported (the URL, ConfigMap and Secret readers and the selecting Service);
the ServiceAccount and NetworkPolicy readers are not, before as after.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import synth
from gitops_validate import resultcache
from gitops_validate.record import replace
from test_incremental import code_at, old
from test_resultcache import cache_env, edit, plant, validate

#: The commit before change 16.
BEFORE = "8e98044"
CHANGED = "clusters/minikube/values/backend0.yaml"
TARGET = "backend0-todo-backend"   # what backend0's chart names its objects
LABELS = "{app.kubernetes.io/name: todo-backend, app.kubernetes.io/instance: backend0}"

APPLICATION = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: {name}, namespace: argocd}}
spec:
  project: todo
  source: {{repoURL: https://github.com/todo-chatbot/todo-gitops.git, path: apps/{name}}}
  destination: {{server: https://kubernetes.default.svc, namespace: todo}}
"""


def _reader(name: str, container: str = "", pod: str = "") -> str:
    """A Deployment without resources (a finding of its own: visible whenever its app is in scope)."""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: todo}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{pod}      containers:
        - name: main
          image: docker.io/library/busybox:1.37.0
{container}"""


#: app -> its one file: each points into backend0 one way.
CONSUMERS = {
    "reads-url": _reader("reads-url", container=f"          env: [{{name: API, value: 'http://{TARGET}:8001/api'}}]\n"),
    "reads-configmap": _reader("reads-configmap", container=(
        f"          env: [{{name: MODE, valueFrom: {{configMapKeyRef: {{name: {TARGET}, key: MODE}}}}}}]\n")),
    # a missing Secret in the namespace backend0 renders into, and one created outside git
    "reads-secret": _reader("reads-secret", container=(
        f"          env: [{{name: T, valueFrom: {{secretKeyRef: {{name: {TARGET}-token, key: t}}}}}},\n"
        "                {name: J, valueFrom: {secretKeyRef: {name: todo-backend-secrets, key: JWT_SECRET}}}]\n")),
    "runs-as": _reader("runs-as", pod=f"      serviceAccountName: {TARGET}\n"),
    # from another namespace, by the Service's namespaced name
    "calls-across": _reader("calls-across", container=(
        f"          env: [{{name: API, value: 'http://{TARGET}.todo.svc:8001/api'}}]\n")).replace("namespace: todo", "namespace: web"),
    "selects": f"""apiVersion: v1
kind: Service
metadata: {{name: selects, namespace: todo}}
spec:
  selector: {LABELS}
  ports: [{{port: 80, targetPort: http}}]
""",
    "allows": f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allows, namespace: todo}}
spec:
  podSelector: {{matchLabels: {LABELS}}}
  policyTypes: [Ingress]
  ingress: [{{from: [{{podSelector: {{matchLabels: {{app: reads-url}}}}}}]}}]
""",
}

#: The consumers the widening takes in for any change to backend0: they name one of its objects,
#: or a missing one in the namespace it renders into (reads-secret), or select its pods.
WIDENED = {"reads-url", "reads-configmap", "reads-secret", "selects", "calls-across"}

#: change to backend0's values -> (app, rule) of a finding it makes (so the comparison sees it)
CHANGES = {
    "service port": (("port: 8001", "port: 8005"), ("calls-across", "refs/in-cluster-url")),
    "configmap key": (("MODE: fast", "MODES: fast"), ("reads-configmap", "refs/missing-configmap")),
    "every name": (("replicaCount: 2", "nameOverride: renamed\nreplicaCount: 2"), ("selects", "refs/service-selector")),
    "capacity sum": (("replicaCount: 2", "replicaCount: 60"), ("backend0", "capacity/exceeded")),
}


@pytest.fixture(scope="module")
def before_code(tmp_path_factory) -> Path:
    return code_at(BEFORE, tmp_path_factory.mktemp("before16"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = synth.make_repo(tmp_path / "repo", 6, defects=True)
    for name, text in CONSUMERS.items():
        (repo / "argocd" / f"{name}.yaml").write_text(APPLICATION.format(name=name))
        (repo / "apps" / name).mkdir()
        (repo / "apps" / name / "objects.yaml").write_text(text)
    edit(repo, CHANGED, "LOG_LEVEL: info", "LOG_LEVEL: info\n  MODE: fast")   # the key reads-configmap reads
    return plant(repo)   # commits


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_reference_into_a_changed_app_widens_as_before(repo, tmp_path, before_code, change):
    (old_text, new_text), made = CHANGES[change]
    env = cache_env(tmp_path)
    whole = validate(repo, env=env)                        # fills the cache (stores the references)
    assert whole == old(before_code, repo)
    assert set(CONSUMERS) <= {f["app"] for f in whole[1]}  # each consumer has a finding when in scope
    edit(repo, CHANGED, old_text, new_text)
    expected = old(before_code, repo, CHANGED)
    assert {f["app"] for f in expected[1]} & set(CONSUMERS) == WIDENED, expected
    assert made in {(f["app"], f["rule"]) for f in expected[1]} - {(f["app"], f["rule"]) for f in whole[1]}
    assert validate(repo, CHANGED, env=env) == expected    # warm: references read from the cache
    assert validate(repo, CHANGED, "--no-cache") == expected   # cold: computed from the objects
    assert validate(repo, CHANGED, env=env) == expected    # the changed app now stored too



def _entries(cache: Path) -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.read_text())) for p in cache.rglob(f"*{resultcache.SUFFIX}")]


def test_the_widening_reads_the_references_stored_with_each_object(repo, tmp_path):
    """A whole run stores with each rendered object its references (refs.reference_candidates); a
    path-scoped run reads them instead of the object: frontend1 calls backend0 by URL, and with
    its stored references emptied it is no longer taken in."""
    env = cache_env(tmp_path)
    validate(repo, env=env)
    entries = _entries(tmp_path / "cache")
    into = [(path, data) for path, data in entries
            if any(["Service", "todo", TARGET, False] in o["refs"] for o in data["objects"])]
    assert len(into) == 1 and all(isinstance(o["refs"], list) for _, d in entries for o in d["objects"])
    path, data = into[0]
    assert {o["doc"]["metadata"]["labels"]["app.kubernetes.io/instance"] for o in data["objects"]} == {"frontend1"}
    edit(repo, CHANGED, "port: 8001", "port: 8005")
    assert "frontend1" in {f["app"] for f in validate(repo, CHANGED, env=env)[1]}
    for o in data["objects"]:
        o["refs"] = []
    path.write_text(json.dumps(data))
    assert "frontend1" not in {f["app"] for f in validate(repo, CHANGED, env=env)[1]}


def test_an_entry_with_malformed_references_is_a_miss():
    obj = resultcache.Object({"kind": "ConfigMap"}, "t.yaml", [], [], [], [["Service", None, "web", True]])
    entry = resultcache.Entry([], True, [], [obj])
    assert resultcache.Entry.load(entry.dump()).objects[0].refs == [["Service", None, "web", True]]
    assert resultcache.Entry.load(resultcache.Entry([], True, [], [replace(obj, refs=None)]).dump()).objects[0].refs is None
    for bad in ("web", [["Service", None, "web"]], [["Service", 1, "web", True]], [["Service", None, "web", "yes"]]):
        with pytest.raises(ValueError):
            resultcache.Entry.load(resultcache.Entry([], True, [], [replace(obj, refs=bad)]).dump())
