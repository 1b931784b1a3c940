"""Synthetic inputs of any size, with planted defects, for the index tests and `make bench`.

- ``manifest_stream(units)``: about 6 objects per unit (Deployment, Service, ConfigMap,
  ServiceAccount, Secret, plus hooks, CronJobs and Namespaces now and then) spread over
  namespaces, with every cross-object rule's defect planted in some units: Services selecting
  nothing or only a hook, wrong target ports, missing ConfigMaps/keys/Secrets/keys/ServiceAccounts,
  NodePort clashes and out-of-range ports, URLs to missing Services and ports, short and FQDN.
- ``make_repo(dest, apps, clusters)``: this repository's charts and Argo CD layout with ``apps``
  apps per cluster in ``clusters/<name>/apps.yaml`` (backend and frontend charts alternating),
  each with its own values file; with ``defects``, some frontends point at a missing backend port
  or reuse a nodePort.

Everything is deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL_SECRET_EVERY = 3   # every third unit reads a Secret declared in the cluster facts


def _unit(i: int, units: int, nns: int) -> list[str]:
    ns = f"ns{i % nns}"
    j = (i + 1) % units
    other = f"app{j}.ns{j % nns}.svc.cluster.local" if i % 2 else f"app{j}"   # short: own namespace only
    port = 81 if i % 6 == 5 else 80
    selector = f"appx{i}" if i % 5 == 2 else f"app{i}"
    target = "web" if i % 8 == 1 else "http"
    cm_key = "LOGLEVEL" if i % 7 == 3 else "LOG_LEVEL"
    secret = f"app{i}-secrt" if i % 11 == 5 else (f"ext{i}" if i % EXTERNAL_SECRET_EVERY == 0 else f"app{i}-secret")
    secret_key = "tokn" if i % 13 == 6 else "token"  # pragma: allowlist secret (a key name)
    sa = f"app{i}-missing" if i % 9 == 4 else f"app{i}"
    svc_type, node_port = "ClusterIP", ""
    if i % 4 == 0:
        n = 3000 if i % 20 == 12 else 30001 + (i + 4 * (i % 12 == 8)) % 2700  # clash with unit i + 4
        svc_type, node_port = "NodePort", f", nodePort: {n}"
    docs = [f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: app{i}, namespace: {ns}, labels: {{app: app{i}}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: app{i}}}}}
  template:
    metadata: {{labels: {{app: app{i}, tier: web}}}}
    spec:
      serviceAccountName: {sa}
      securityContext: {{runAsNonRoot: true, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
        - name: web
          image: docker.io/library/nginx:1.27.{i % 5}
          ports: [{{name: http, containerPort: 8080}}]
          env:
            - {{name: PEER_URL, value: "http://{other}:{port}/api"}}
            - {{name: LOG_LEVEL, valueFrom: {{configMapKeyRef: {{name: app{i}-config, key: {cm_key}}}}}}}
            - {{name: API_TOKEN, valueFrom: {{secretKeyRef: {{name: {secret}, key: {secret_key}}}}}}}
          securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
          resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{cpu: 100m, memory: 64Mi}}}}
          livenessProbe: {{httpGet: {{path: /health, port: http}}}}
          readinessProbe: {{httpGet: {{path: /ready, port: http}}}}
""", f"""apiVersion: v1
kind: Service
metadata: {{name: app{i}, namespace: {ns}}}
spec:
  type: {svc_type}
  selector: {{app: {selector}}}
  ports: [{{port: 80, targetPort: {target}{node_port}}}]
""", f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: app{i}-config, namespace: {ns}}}
data:
  LOG_LEVEL: info
  API_URL: "http://app{i}:{81 if i % 10 == 7 else 80}/v1"
  OTHER_URL: "http://gone{i}.ns{i % nns}.svc:80"
""", f"""apiVersion: v1
kind: ServiceAccount
metadata: {{name: app{i}{"" if i % 15 == 7 else f", namespace: {ns}"}}}
automountServiceAccountToken: false
""", f"""apiVersion: v1
kind: Secret
metadata:
  name: app{i}-secret
  namespace: {ns}
  annotations: {{kubernetes.io/service-account.name: app{i}}}
type: kubernetes.io/service-account-token
"""]
    if i % 10 == 2:  # a hook that carries the labels the broken selector asks for: still no endpoint
        docs.append(f"""apiVersion: batch/v1
kind: Job
metadata:
  name: app{i}-migrate
  namespace: {ns}
  annotations: {{helm.sh/hook: pre-install}}
spec:
  template:
    metadata: {{labels: {{app: appx{i}}}}}
    spec:
      restartPolicy: Never
      containers: [{{name: migrate, image: "docker.io/library/busybox:1.37"}}]
""")
    if i % 10 == 4:
        docs.append(f"""apiVersion: batch/v1
kind: CronJob
metadata: {{name: app{i}-report, namespace: {ns}}}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        metadata: {{labels: {{app: report{i}}}}}
        spec:
          restartPolicy: Never
          serviceAccountName: app{i}
          containers:
            - name: report
              image: docker.io/library/busybox:1.37
              envFrom: [{{configMapRef: {{name: app{i}-config}}}}, {{secretRef: {{name: app{i}-scret}}}}]
""")
    if i < nns:
        docs.append(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns{i}}}\n")
    return docs


def manifest_stream(units: int) -> str:
    """One YAML stream of about ``6 * units`` objects in ``units // 10`` namespaces."""
    nns = max(1, units // 10)
    return "---\n".join(d for i in range(units) for d in _unit(i, units, nns))


def network_stream(units: int) -> str:
    """NetworkPolicies for ``manifest_stream(units)``: a default deny in every namespace and one
    policy per unit, with the network rules' defects planted: a policy that selects nothing, callers
    without DNS egress, NodePorts without outside ingress, peers in another namespace; and one
    matchExpressions-only policy."""
    nns = max(1, units // 10)
    docs = [f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: default-deny, namespace: ns{n}}}
spec: {{podSelector: {{}}, policyTypes: [Ingress, Egress]}}
""" for n in range(nns)]
    for i in range(units):
        app = f"gone{i}" if i % 6 == 3 else f"app{i}"
        dns = "" if i % 7 == 1 else "\n    - ports: [{port: 53, protocol: UDP}]"
        outside = "\n    - from: [{ipBlock: {cidr: 0.0.0.0/0}}]" if i % 8 == 0 else ""
        docs.append(f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: app{i}, namespace: ns{i % nns}}}
spec:
  podSelector: {{matchLabels: {{tier: web, app: {app}}}}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{{podSelector: {{matchLabels: {{tier: web}}}}}}]
      ports: [{{port: http}}]{outside}
  egress:
    - to: [{{podSelector: {{matchLabels: {{tier: web}}}}}}]
      ports: [{{port: 8080}}]{dns}
""")
    docs.append("""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: by-expression, namespace: ns0}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [app0, nothing]}]}
  ingress: [{}]
""")
    return "---\n".join(docs)


def cluster_facts(units: int, name: str = "synthetic") -> str:
    """A cluster.yaml declaring the external Secrets that ``manifest_stream(units)`` reads."""
    nns = max(1, units // 10)
    lines = [f"name: {name}", "kubernetesVersion: v1.35.1", "externalSecrets:"]
    for i in range(0, units, EXTERNAL_SECRET_EVERY):
        keys = "[ca.crt]" if i % 13 == 6 else "[token]"
        lines.append(f"  - {{namespace: ns{i % nns}, name: ext{i}, keys: {keys}}}")
    return "\n".join(lines) + "\n"


# --- repositories made from this repository's charts ------------------------------------------

_COPY = ("apps/todo-backend", "apps/todo-frontend", "argocd/apps", "argocd/projects.yaml", ".gitops-validator.yaml")
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@todo-gitops.local", "-c", "commit.gpgsign=false"]


def _values(chart: str, i: int, defects: bool, apps: int) -> str:
    text = (ROOT / f"clusters/minikube/values/{chart}.yaml").read_text()
    if chart == "todo-frontend":
        port = "8002" if defects and i % 10 == 3 else "8001"
        text = text.replace("http://todo-backend:8001", f"http://backend{i - 1}-todo-backend:{port}")
        node_port = 30000 + (i - 2 * (defects and i % 14 == 5)) % 2700   # a clash with frontend i - 2
        text = text.replace("nodePort: 30000", f"nodePort: {node_port}")
    return text


def make_repo(dest: Path, apps: int, clusters: int = 1, defects: bool = True) -> Path:
    """A git repo at ``dest`` with ``apps`` apps in each of ``clusters`` clusters; returns ``dest``."""
    for rel in _COPY:
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel)
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # this repo's rule settings name rules newer code added; the baseline code in the comparisons
    # would refuse them, and the synthetic repos need none
    config = dest / ".gitops-validator.yaml"
    config.write_text(re.sub(r"(?ms)^rules:\n(?:[ #].*?\n)*", "rules: {}\n", config.read_text()))
    root_app = (ROOT / "argocd/root-app.yaml").read_text()
    for c in range(clusters):
        name = "minikube" if c == 0 else f"cluster{c}"
        cdir = dest / "clusters" / name
        (cdir / "values").mkdir(parents=True)
        facts = (ROOT / "clusters/minikube/cluster.yaml").read_text()  # apps only: not the Argo CD install
        (cdir / "cluster.yaml").write_text(re.sub(r"(?m)^argocdInstall:.*\n", "", facts))
        lines = ["podSecurityVersion: v1.35", "apps:"]
        for i in range(apps):
            chart = "todo-backend" if i % 2 == 0 else "todo-frontend"
            app = f"{'backend' if i % 2 == 0 else 'frontend'}{i}"
            (cdir / "values" / f"{app}.yaml").write_text(_values(chart, i, defects, apps))
            lines += [f"  {app}:", f"    path: apps/{chart}", f"    syncWave: {i % 2}", "    valueFiles:",
                      f"      - ../../clusters/{name}/values/{app}.yaml"]
        (cdir / "apps.yaml").write_text("\n".join(lines) + "\n")
        (dest / "argocd" / f"root-{name}.yaml").write_text(
            root_app.replace("name: todo-root", f"name: root-{name}")
                    .replace("releaseName: todo-root", f"releaseName: root-{name}")
                    .replace("clusters/minikube/apps.yaml", f"clusters/{name}/apps.yaml"))
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "synthetic", "--no-verify"], cwd=dest, check=True)
    return dest
