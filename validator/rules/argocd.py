"""argocd/: Applications must point at something Argo CD can render, and keep rollback possible."""

from __future__ import annotations

from typing import Iterable

from ..findings import Problem, Severity
from ..model import Manifest, dig, sequence
from .base import Context, Rule

CATEGORY = "argocd"


def _is_application(m: Manifest) -> bool:
    return m.kind == "Application" and m.api_version.startswith("argoproj.io/")


def check_history(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if _is_application(m) and m.spec.get("revisionHistoryLimit") == 0:
        yield Problem("revisionHistoryLimit: 0 keeps no history, so the UI has nothing to roll back to",
                      ("spec", "revisionHistoryLimit"))


def check_ignore_missing(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if not _is_application(m):
        return
    spec = m.spec
    sources = sequence(spec.get("sources")) or ([spec["source"]] if isinstance(spec.get("source"), dict) else [])
    for i, src in enumerate(sources):
        if dig(src, "helm", "ignoreMissingValueFiles"):
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
    Rule("argocd/out-of-bounds-symlink", Severity.ERROR,
         "a symlink leaving the repository where the validator or helm would read (a chart, a value "
         "file, a plain-directory source, an Application file, cluster.yaml)",
         "Argo CD refuses such a repository (`repository contains out-of-bounds symlinks`), and helm "
         "follows symlinks: a chart template could read `~/.ssh/id_ed25519` and print it through "
         "`fail` into CI logs. The validator checks before helm runs, does not render such an app, "
         "and reads nothing outside the repository. Symlinks that stay inside are fine.",
         "# apps/web/templates/key.yaml -> /home/me/.ssh/id_ed25519\n" + _APP % ("apps/web", ""),
         "# apps/web/templates/common.yaml -> ../../common/templates/common.yaml\n" + _APP % ("apps/web", "")),
    Rule("argocd/external-source", Severity.WARNING,
         "an Application whose source is not this repository, so it cannot be rendered offline",
         "The validator renders only what is in the repository (the URLs are listed in "
         "`.gitops-validator.yaml` as `repoURLs`); anything else is not checked.",
         _APP.replace("git.example/repo.git", "charts.example/other.git") % ("web", ""),
         _APP % ("apps/web", "")),
    Rule("argocd/unsupported-source", Severity.WARNING,
         "an Application source type the validator does not render (Kustomize, a plugin)",
         "Only Helm charts and plain directories are rendered; other sources are not checked.",
         _APP % ("overlays/prod", ", kustomize: {}"), _APP % ("apps/web", "")),
    Rule("argocd/duplicate-application", Severity.ERROR,
         "two Applications with the same name in one cluster (or an app-of-apps that renders itself)",
         "Argo CD keeps one Application per name and namespace: the second definition overwrites the "
         "first, and the two sources fight on every sync.",
         _APP % ("apps/web", "") + "---\n" + _APP % ("apps/web-v2", ""),
         _APP % ("apps/web", "")),
    Rule("argocd/app-of-apps-too-deep", Severity.ERROR,
         "an app-of-apps nested deeper than limits.maxAppDepth (default 10) levels",
         "Each level of an app-of-apps is one more render before anything deploys, and a chart "
         "whose child Applications differ at every level (a name built from a counter) never ends: "
         "Argo CD keeps creating Applications, the validator would render forever. The chain is cut "
         "at the limit and reported; what lies below it is not checked.",
         "# chart apps/chain, rendered by Application chain-0: each level renders the next\n"
         "apiVersion: argoproj.io/v1alpha1\nkind: Application\n"
         "metadata: {name: 'chain-{{ add1 .Values.n }}', namespace: argocd}\nspec:\n  project: default\n"
         "  source: {repoURL: \"https://git.example/repo.git\", path: apps/chain, targetRevision: main,\n"
         "           helm: {parameters: [{name: n, value: '{{ add1 .Values.n }}'}]}}\n"
         "  destination: {server: \"https://kubernetes.default.svc\", namespace: web}\n",
         "# chart apps/root renders leaf Applications whose charts render no Application\n"
         + _APP % ("apps/web", "")),
    Rule("argocd/too-many-applications", Severity.ERROR,
         "more Applications in one run than limits.maxApplications (default 1000)",
         "Applications multiply through app-of-apps charts and ApplicationSet generators; an unbounded "
         "number is a runaway template, not a deployment, and would make the gate's time and memory "
         "unbounded. Past the limit the rest are reported and not checked; raise the limit in "
         "`.gitops-validator.yaml` for a repository that really is that large.",
         "# an ApplicationSet list generator with 5000 elements, the limit at 1000\n"
         "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {name: many, namespace: argocd}\n"
         "spec:\n  generators: [{list: {elements: [{n: '1'}, {n: '2'}]}}]  # ... up to 5000\n"
         "  template:\n    metadata: {name: 'web-{{n}}'}\n    spec:\n      project: default\n"
         "      source: {repoURL: \"https://git.example/repo.git\", path: apps/web, targetRevision: main}\n"
         "      destination: {server: \"https://kubernetes.default.svc\", namespace: 'web-{{n}}'}\n",
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
