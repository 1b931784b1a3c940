"""A small Argo CD repository like the ones gitops-validate is meant for, generated outside this repo:
a `helm create` chart deployed by an Application with a value file, plain manifests deployed by
a directory Application, and an app-of-apps chart that renders both Applications."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO_URL = "https://git.example.com/acme/deploy.git"

_APP = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {name}
  namespace: argocd
spec:
  project: apps
  source:
    repoURL: {{{{ .Values.repoURL }}}}
    targetRevision: main
    path: {path}
{extra}  destination:
    server: https://kubernetes.default.svc
    namespace: {name}
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
      - CreateNamespace=true
    managedNamespaceMetadata:
      labels:
        pod-security.kubernetes.io/enforce: restricted
"""

FILES = {
    ".gitops-validator.yaml": f"repoURLs:\n  - {REPO_URL}\nkubernetesVersion: \"1.35.1\"\n",
    "bootstrap/root.yaml": f"""apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: root
  namespace: argocd
spec:
  project: default
  source:
    repoURL: {REPO_URL}
    targetRevision: main
    path: apps
    helm:
      values: |
        repoURL: {REPO_URL}
  destination:
    server: https://kubernetes.default.svc
    namespace: argocd
  # a rollback in the UI turns a child's auto-sync off: the parent must not turn it back on
  ignoreDifferences:
    - group: argoproj.io
      kind: Application
      jsonPointers:
        - /spec/syncPolicy/automated
  syncPolicy:
    syncOptions:
      - RespectIgnoreDifferences=true
      - CreateNamespace=true
    managedNamespaceMetadata:
      labels:
        pod-security.kubernetes.io/enforce: restricted
""",
    # the app-of-apps' children get a project of their own, never `default`
    "bootstrap/project.yaml": f"""apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: apps
  namespace: argocd
spec:
  sourceRepos:
    - {REPO_URL}
  destinations:
    - server: https://kubernetes.default.svc
      namespace: "*"
  clusterResourceWhitelist:
    - group: ""
      kind: Namespace
""",
    "apps/Chart.yaml": "apiVersion: v2\nname: apps\nversion: 0.1.0\n",
    "apps/values.yaml": "repoURL: \"\"\n",
    "apps/templates/guestbook.yaml": _APP.format(
        name="guestbook", path="charts/guestbook",
        extra="    helm:\n      valueFiles:\n        - values-prod.yaml\n"),
    "apps/templates/redis.yaml": _APP.format(name="redis", path="manifests/redis", extra=""),
    "charts/guestbook/values-prod.yaml": """replicaCount: 2
image:
  tag: "1.27.3"
podSecurityContext:
  runAsNonRoot: true
  runAsUser: 101
  seccompProfile:
    type: RuntimeDefault
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
resources:
  requests: {cpu: 50m, memory: 64Mi}
  limits: {cpu: 200m, memory: 128Mi}
""",
    "manifests/redis/deployment.yaml": """apiVersion: apps/v1
kind: Deployment
metadata:
  name: redis
spec:
  replicas: 1
  selector:
    matchLabels: {app: redis}
  template:
    metadata:
      labels: {app: redis}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 999
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: redis
          image: docker.io/library/redis:7.4.2
          ports:
            - containerPort: 6379
          livenessProbe:
            tcpSocket: {port: 6379}
          readinessProbe:
            tcpSocket: {port: 6379}
          resources:
            requests: {cpu: 50m, memory: 64Mi}
            limits: {cpu: 200m, memory: 256Mi}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
""",
    "manifests/redis/service.yaml": """apiVersion: v1
kind: Service
metadata:
  name: redis
spec:
  selector: {app: redis}
  ports:
    - port: 6379
      targetPort: 6379
""",
}


# A change that breaks things: a mutable image tag, a Service pointing nowhere.
BAD_CHANGE = {
    "charts/guestbook/values-prod.yaml": FILES["charts/guestbook/values-prod.yaml"].replace('tag: "1.27.3"', "tag: latest"),
    "manifests/redis/service.yaml": FILES["manifests/redis/service.yaml"].replace("targetPort: 6379", "targetPort: 6380"),
}
BAD_RULES = {"images/latest-tag", "refs/target-port"}


def make_user_repo(dest: Path, helm: str, env: dict | None = None) -> Path:
    """Write the repository at ``dest`` (a git repo with one commit); ``helm`` runs `helm create`."""
    (dest / "charts").mkdir(parents=True)
    subprocess.run([helm, "create", "guestbook"], cwd=dest / "charts", check=True, capture_output=True, env=env)
    shutil.rmtree(dest / "charts" / "guestbook" / "templates" / "tests")  # a helm test Pod, not deployed by Argo CD
    for rel, text in FILES.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    git = ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init", "--no-verify"], cwd=dest, check=True)
    return dest
