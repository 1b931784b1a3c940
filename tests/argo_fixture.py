"""A small GitOps repo with each kind of Argo CD source the validator renders, valid as written:

- an app-of-apps (``root``, Helm chart ``apps-chart``) rendering a Kustomize child (``kapp``),
- a Kustomize overlay on a base (``kust/overlay`` -> ``kust/base``),
- a multi-source app (``multi``: a Helm chart plus a ``$values`` ref source),
- an ApplicationSet (``sets``: a list generator over the Kustomize overlay),
- two AppProjects (``boot`` for the root, ``web`` for the apps) and cluster facts.

Tests plant one defect at a time (``plant``) and expect one rule.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from e2e.harness import GIT
from gitops_validate.rules.examples import example_deployment

URL = "https://git.example/fx.git"

FILES = {
    ".gitignore": ".cache/\n",
    # this fixture is about projects; namespace labels are tests/test_hardening.py's
    ".gitops-validator.yaml": f"repoURLs: [{URL}]\nrules:\n  security/namespace-pod-security: off\n",
    "clusters/dev/cluster.yaml": """\
kubernetesVersion: v1.35.1
existingProjects: [platform]
appOfAppsProjects: [web]
""",
    "projects.yaml": f"""\
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {{name: boot, namespace: argocd}}
spec:
  sourceRepos: ['{URL}']
  destinations: [{{server: https://kubernetes.default.svc, namespace: argocd}}]
  namespaceResourceWhitelist: [{{group: argoproj.io, kind: Application}}]
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {{name: web, namespace: argocd}}
spec:
  sourceRepos:
    - 'https://git.example/*'
    - '!https://git.example/forbidden'
  destinations:
    - server: https://kubernetes.default.svc
      namespace: 'web-*'
  clusterResourceWhitelist:
    - group: ''
      kind: Namespace
  namespaceResourceBlacklist:
    - group: ''
      kind: ResourceQuota
""",
    "root.yaml": f"""\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: root, namespace: argocd}}
spec:
  project: boot
  source:
    repoURL: {URL}
    targetRevision: main
    path: apps-chart
  destination: {{server: https://kubernetes.default.svc, namespace: argocd}}
""",
    "apps-chart/Chart.yaml": "apiVersion: v2\nname: apps\nversion: 0.1.0\n",
    "apps-chart/values.yaml": """\
project: web
namespace: web-a
""",
    "apps-chart/templates/apps.yaml": f"""\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: kapp
  namespace: argocd
spec:
  project: {{{{ .Values.project }}}}
  source:
    repoURL: {URL}
    targetRevision: main
    path: kust/overlay
    kustomize:
      namePrefix: a-
  destination:
    server: https://kubernetes.default.svc
    namespace: {{{{ .Values.namespace }}}}
  syncPolicy:
    syncOptions: [CreateNamespace=true]
""",
    "kust/base/kustomization.yaml": """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
""",
    "kust/base/deployment.yaml": example_deployment(),
    "kust/overlay/kustomization.yaml": """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base
""",
    "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    "charts/web/values.yaml": "greeting: hello\n",
    "charts/web/templates/configmap.yaml": """\
apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data: {greeting: {{ .Values.greeting | quote }}}
""",
    "values/web.yaml": "greeting: hi\n",
    "multi.yaml": f"""\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: multi, namespace: argocd}}
spec:
  project: web
  sources:
    - repoURL: {URL}
      targetRevision: main
      path: charts/web
      helm:
        valueFiles: [$values/values/web.yaml]
    - repoURL: {URL}
      targetRevision: main
      ref: values
  destination: {{server: https://kubernetes.default.svc, namespace: web-b}}
""",
    "appset.yaml": f"""\
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {{name: sets, namespace: argocd}}
spec:
  goTemplate: true
  generators:
    - list:
        elements:
          - {{name: set-c, namespace: web-c}}
  template:
    metadata: {{name: '{{{{.name}}}}'}}
    spec:
      project: web
      source:
        repoURL: {URL}
        targetRevision: main
        path: kust/overlay
      destination: {{server: https://kubernetes.default.svc, namespace: '{{{{.namespace}}}}'}}
""",
}


def make_repo(dest: Path) -> Path:
    for rel, text in FILES.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "fixture", "--no-verify"], cwd=dest, check=True)
    return dest


def plant(repo: Path, rel: str, old: str, new: str) -> int:
    """Replace ``old`` (once, must exist) in a file; the 1-based line of the change."""
    p = repo / rel
    text = p.read_text() if p.exists() else ""
    if old:
        assert text.count(old) == 1, f"{old!r} not exactly once in {rel}"
        line = text[: text.index(old)].count("\n") + 1
        text = text.replace(old, new)
    else:
        line, text = text.count("\n") + 1, text + new
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return line
