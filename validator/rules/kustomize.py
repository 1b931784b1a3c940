"""argocd/ (Kustomize): kustomizations Argo CD v3.5.1 would fail to build, or that the validator
cannot build offline. Reported by the render stage (validator/kustomize.py)."""

from __future__ import annotations

from ..findings import Severity
from .base import Rule

CATEGORY = "argocd"

_APP = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web, namespace: argocd}
spec:
  project: web
  source: {repoURL: "https://git.example/repo.git", path: overlays/prod, targetRevision: main%s}
  destination: {server: "https://kubernetes.default.svc", namespace: web}
"""
_KUSTOMIZATION = """# overlays/prod/kustomization.yaml
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
"""

RULES = [
    Rule("argocd/kustomize-failed", Severity.ERROR,
         "a kustomization that `kustomize build` (v5.8.1, Argo CD's default options) refuses",
         "Argo CD v3.5.1 renders a Kustomize source with `kustomize build <path>` after applying the "
         "Application's `spec.source.kustomize` fields with `kustomize edit` (util/kustomize/kustomize.go); "
         "a missing resource, a patch that matches nothing, a file outside the kustomization root "
         "(LoadRestrictionsRootOnly) or a Helm chart without `--enable-helm` fails the build, and the app "
         "shows ComparisonError instead of syncing.",
         _KUSTOMIZATION % "../base/deploymnet.yaml", _KUSTOMIZATION % "../base"),
    Rule("argocd/kustomize-remote", Severity.WARNING,
         "a kustomization resource, base or component that is a URL (not fetched: no network)",
         "The validator reads nothing outside the repository, so a remote base is neither fetched nor "
         "checked, and neither are the objects built on it. Argo CD's own release manifest is the "
         "exception: `make setup` keeps the pinned version offline (.tools/argocd/<version>/), and naming "
         "a version that is not pinned there is an error.",
         _KUSTOMIZATION % "https://github.com/acme/base//deploy?ref=v1.2.0", _KUSTOMIZATION % "../base"),
    Rule("argocd/kustomize-option-ignored", Severity.WARNING,
         "an Application `spec.source.kustomize` field the validator does not apply (e.g. kubeVersion)",
         "namePrefix, nameSuffix, images, replicas, commonLabels, commonAnnotations, namespace, patches "
         "and components are applied as Argo CD does; any other field changes Argo CD's output in a way "
         "the validator does not reproduce, so what it checks may differ from what is deployed.",
         _APP % ", kustomize: {kubeVersion: '1.35'}", _APP % ", kustomize: {namePrefix: prod-}"),
]
