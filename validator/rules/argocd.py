"""argocd/: Applications must point at something Argo CD can render, and keep rollback possible."""

from __future__ import annotations

from typing import Iterable

from ..findings import Problem, Severity
from ..model import Manifest
from .base import Context, Rule

CATEGORY = "argocd"


def _is_application(m: Manifest) -> bool:
    return m.kind == "Application" and m.api_version.startswith("argoproj.io/")


def check_history(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if _is_application(m) and (m.doc.get("spec") or {}).get("revisionHistoryLimit") == 0:
        yield Problem("revisionHistoryLimit: 0 keeps no history, so the UI has nothing to roll back to",
                      ("spec", "revisionHistoryLimit"))


def check_ignore_missing(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if not _is_application(m):
        return
    spec = m.doc.get("spec") or {}
    sources = spec.get("sources") or ([spec["source"]] if isinstance(spec.get("source"), dict) else [])
    for i, src in enumerate(sources):
        if isinstance(src, dict) and (src.get("helm") or {}).get("ignoreMissingValueFiles"):
            where = ("spec", "sources", i) if spec.get("sources") else ("spec", "source")
            yield Problem("ignoreMissingValueFiles: true turns a misspelt value file into a silent "
                          "deploy with the chart defaults", where + ("helm", "ignoreMissingValueFiles"))


_APP = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web, namespace: argocd}
spec:
  project: default
  source: {repoURL: "https://git.example/repo.git", path: %s, targetRevision: main%s}
  destination: {server: "https://kubernetes.default.svc", namespace: web}
"""

RULES = [
    Rule("argocd/missing-path", Severity.ERROR,
         "an Application whose source path does not exist in the repository",
         "Argo CD reports `app path does not exist` and syncs nothing.",
         _APP % ("apps/wbe", ""), _APP % ("apps/web", "")),
    Rule("argocd/missing-value-file", Severity.ERROR,
         "a Helm value file named by an Application that does not exist",
         "The render fails (or, with ignoreMissingValueFiles, silently uses the chart defaults).",
         _APP % ("apps/web", ", helm: {valueFiles: [values-prd.yaml]}"),
         _APP % ("apps/web", ", helm: {valueFiles: [values-prod.yaml]}")),
    Rule("argocd/outside-repo", Severity.ERROR,
         "a source path or value file that resolves outside the repository",
         "Argo CD refuses paths that leave the repository root (`../..` too far, absolute paths), "
         "and so does the validator: nothing outside the repo is read.",
         _APP % ("apps/web", ", helm: {valueFiles: [../../../etc/passwd]}"),
         _APP % ("apps/web", ", helm: {valueFiles: [../../clusters/dev/web.yaml]}")),
    Rule("argocd/external-source", Severity.WARNING,
         "an Application whose source is not this repository, so it cannot be rendered offline",
         "The validator renders only what is in the repository (the URLs are listed in "
         "`.gitops-validator.yaml` as `repoURLs`); anything else is not checked.",
         _APP.replace("git.example/repo.git", "charts.example/other.git") % ("web", ""),
         _APP % ("apps/web", "")),
    Rule("argocd/unsupported-source", Severity.WARNING,
         "an Application source type the validator does not render (a config management plugin)",
         "Helm charts, Kustomize and plain directories are rendered; a plugin source is not checked.",
         _APP % ("apps/web", ", plugin: {name: sops}"), _APP % ("apps/web", "")),
    Rule("argocd/duplicate-application", Severity.ERROR,
         "two Applications with the same name in one cluster (or an app-of-apps that renders itself)",
         "Argo CD keeps one Application per name and namespace: the second definition overwrites the "
         "first, and the two sources fight on every sync.",
         _APP % ("apps/web", "") + "---\n" + _APP % ("apps/web-v2", ""),
         _APP % ("apps/web", "")),
    Rule("argocd/revision-history-limit", Severity.ERROR,
         "`revisionHistoryLimit: 0` on an Application",
         "Rollback from the UI or `argocd app rollback` picks an entry of the sync history; with "
         "no history there is nothing to roll back to.",
         (_APP % ("apps/web", "")) + "  revisionHistoryLimit: 0\n",
         (_APP % ("apps/web", "")) + "  revisionHistoryLimit: 10\n",
         check_history),
    Rule("argocd/ignore-missing-value-files", Severity.WARNING,
         "`ignoreMissingValueFiles: true`",
         "A renamed or misspelt value file no longer fails the sync: the app deploys with the "
         "chart's defaults instead.",
         _APP % ("apps/web", ", helm: {valueFiles: [prod.yaml], ignoreMissingValueFiles: true}"),
         _APP % ("apps/web", ", helm: {valueFiles: [prod.yaml]}"),
         check_ignore_missing),
]
