"""argocd/: Applications must point at something Argo CD can render, keep rollback possible, and
say what Argo CD understands (sync waves, hooks, sync options spelt as Argo CD v3.5.1 reads them)."""

from __future__ import annotations

import re
from typing import Iterable

from ..findings import Problem, Severity
from ..model import Manifest, dig, sequence
from .base import Context, Rule

CATEGORY = "argocd"
RUNBOOK = "docs/runbooks/rollback-ui.md"


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


# --- sync semantics (Argo CD v3.5.1: gitops-engine pkg/sync, controller/sync.go, controller/hook.go) ---

SYNC_WAVE = "argocd.argoproj.io/sync-wave"
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
HOOK = "argocd.argoproj.io/hook"
HOOK_DELETE_POLICY = "argocd.argoproj.io/hook-delete-policy"

#: Go's strconv.Atoi on a 64-bit build: an optional sign and decimal digits, nothing else.
_ATOI = re.compile(r"[+-]?[0-9]+")
_INT64 = range(-2 ** 63, 2 ** 63)

#: Annotation -> the values Argo CD acts on. Hooks are comma-separated lists (GetAnnotationCSVs).
HOOK_VALUES = {
    HOOK: ("PreSync", "Sync", "PostSync", "SyncFail", "PreDelete", "PostDelete", "Skip"),
    HOOK_DELETE_POLICY: ("HookSucceeded", "HookFailed", "BeforeHookCreation"),
    # Helm's own hook names: Argo CD maps the install/upgrade/delete ones and ignores the test and
    # rollback ones (documented in its helm.md), so all of them are spelt right; anything else is a typo.
    "helm.sh/hook": ("crd-install", "pre-install", "pre-upgrade", "post-install", "post-upgrade",
                     "pre-delete", "post-delete", "pre-rollback", "post-rollback", "test",
                     "test-success", "test-failure"),
    "helm.sh/hook-delete-policy": ("before-hook-creation", "hook-succeeded", "hook-failed"),
}

#: Sync option name -> the values Argo CD compares against (exact, case-sensitive strings:
#: SyncOptions.HasOption and the gitops-engine constants).
SYNC_OPTION_VALUES = {
    "Validate": ("false", "true"),
    "SkipDryRunOnMissingResource": ("true", "false"),
    "Prune": ("false", "confirm", "true"),
    "Delete": ("false", "confirm", "true"),
    "PruneLast": ("true", "false"),
    "Replace": ("true", "false"),
    "Force": ("true", "false"),
    "ServerSideApply": ("true", "false"),
    "ClientSideApplyMigration": ("true", "false"),
    "ApplyOutOfSyncOnly": ("true", "false"),
    "RespectIgnoreDifferences": ("true", "false"),
    "CreateNamespace": ("true", "false"),
    "PrunePropagationPolicy": ("foreground", "background", "orphan"),
    "FailOnSharedResource": ("true", "false"),
}
#: Options read only from the Application's spec.syncPolicy.syncOptions.
APP_ONLY_OPTIONS = frozenset({"CreateNamespace", "PrunePropagationPolicy", "FailOnSharedResource"})
#: Kinds whose delete-and-recreate (Force=true) deletes everything that lives in or under them.
NEVER_FORCE = frozenset({"CustomResourceDefinition", "Namespace", "PersistentVolumeClaim", "PersistentVolume"})


#: Every spelling Argo CD knows, for "did you mean".
_SPELT = [f"{n}={v}" for n, vs in SYNC_OPTION_VALUES.items() for v in vs]


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _sync_options(m: Manifest) -> list | None:
    """An Application's spec.syncPolicy.syncOptions when it is a list."""
    options = _mapping(_mapping(m.doc.get("spec")).get("syncPolicy")).get("syncOptions")
    return options if isinstance(options, list) else None


def _csv(value: object) -> list[str]:
    return [p.strip() for p in str(value).split(",") if p.strip()] if isinstance(value, str) else []


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    folded = {c.lower(): c for c in choices}
    import difflib  # only for a misspelt field: not on a run's imports
    hit = folded.get(word.lower()) or next(iter(difflib.get_close_matches(word, choices, 1, 0.6)), None)
    return f" (did you mean {hit!r}?)" if hit else ""


def check_sync_wave(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for key in (SYNC_WAVE, "helm.sh/hook-weight"):
        if key not in m.annotations:
            continue
        value = m.annotations[key]
        text = value if isinstance(value, str) else str(value)
        if not _ATOI.fullmatch(text) or int(text) not in _INT64:
            yield Problem(f"{key} {text!r} is not an integer as Argo CD parses it (strconv.Atoi): "
                          "Argo CD silently puts the object in wave 0", ("metadata", "annotations", key))


def check_hooks(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for key, allowed in HOOK_VALUES.items():
        if key not in m.annotations:
            continue
        for part in _csv(m.annotations[key]) or [str(m.annotations[key])]:
            if part not in allowed:
                yield Problem(f"{key} {part!r} is not one of {', '.join(allowed)}{_did_you_mean(part, allowed)}; "
                              "Argo CD ignores it", ("metadata", "annotations", key))


def _option_problems(options: list[str], app_level: bool) -> Iterable[tuple[int, str]]:
    for i, opt in enumerate(options):
        name, eq, value = opt.partition("=")
        if name not in SYNC_OPTION_VALUES or not eq or value not in SYNC_OPTION_VALUES[name]:
            yield i, f"unknown sync option {opt!r}{_did_you_mean(opt, _SPELT)}; Argo CD compares exact strings and ignores it"
        elif not app_level and name in APP_ONLY_OPTIONS:
            yield i, f"sync option {opt!r} is read only from the Application's spec.syncPolicy.syncOptions; on an object it does nothing"


def check_sync_options(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if SYNC_OPTIONS in m.annotations:
        for _, msg in _option_problems(_csv(m.annotations[SYNC_OPTIONS]), app_level=False):
            yield Problem(msg, ("metadata", "annotations", SYNC_OPTIONS))
    options = _sync_options(m) if _is_application(m) else None
    if options is not None:
        for i, msg in _option_problems([str(o) for o in options], app_level=True):
            yield Problem(msg, ("spec", "syncPolicy", "syncOptions", i))


def check_replace(m: Manifest, ctx: Context) -> Iterable[Problem]:
    levels = [(_csv(m.annotations.get(SYNC_OPTIONS)), ("metadata", "annotations", SYNC_OPTIONS))]
    if _is_application(m):
        levels.append(([str(o) for o in _sync_options(m) or []], ("spec", "syncPolicy", "syncOptions")))
    for options, where in levels:
        if "Replace=true" in options and "ServerSideApply=true" in options:
            yield Problem("Replace=true and ServerSideApply=true together: Replace takes precedence and the "
                          "server-side apply is silently dropped; choose one", where)
    if m.kind in NEVER_FORCE and "Force=true" in levels[0][0]:
        yield Problem(f"Force=true deletes and re-creates the {m.kind} on every sync, and with it everything "
                      "that lives in it (custom resources, namespaced objects, volume data)", levels[0][1])


def _automated(app: Manifest) -> bool:
    auto = _mapping(_mapping(app.doc.get("spec")).get("syncPolicy")).get("automated")
    return isinstance(auto, dict) and auto.get("enabled", True) is not False


_IGNORED_POINTERS = ("/spec/syncPolicy/automated", "/spec/syncPolicy", "/spec")
_IGNORED_JQ = (".spec.syncPolicy.automated", ".spec.syncPolicy", ".spec")


def _ignores_automated(entry: object, child: str) -> bool:
    """An ignoreDifferences entry that keeps ``child``'s /spec/syncPolicy/automated out of the diff."""
    d = _mapping(entry)
    if d.get("group") != "argoproj.io" or d.get("kind") != "Application" or d.get("name") not in (None, "", child):
        return False
    pointers = [p for p in d.get("jsonPointers") or [] if isinstance(p, str)] if isinstance(d.get("jsonPointers"), list) else []
    jq = [p for p in d.get("jqPathExpressions") or [] if isinstance(p, str)] if isinstance(d.get("jqPathExpressions"), list) else []
    return bool(set(pointers) & set(_IGNORED_POINTERS) or set(jq) & set(_IGNORED_JQ))


def check_rollback(m: Manifest, ctx: Context) -> Iterable[Problem]:
    """An app-of-apps must not re-enable the auto-sync a UI rollback turned off on a child."""
    if not _is_application(m):
        return
    children = sorted(c.name for c in ctx.rendered_by(m.name, "Application") if _is_application(c) and _automated(c))
    if not children:
        return
    spec = _mapping(m.doc.get("spec"))
    names = ", ".join(children)
    entries = spec.get("ignoreDifferences") if isinstance(spec.get("ignoreDifferences"), list) else []
    exposed = [c for c in children if not any(_ignores_automated(e, c) for e in entries)]
    if exposed:
        yield Problem(f"its child Applications ({', '.join(exposed)}) sync automatically, but it does not ignore their "
                      "/spec/syncPolicy/automated (ignoreDifferences, group argoproj.io, kind Application): "
                      f"a UI rollback is undone at its next sync ({RUNBOOK})",
                      ("spec", "ignoreDifferences") if "ignoreDifferences" in spec else ("spec",))
    options = _sync_options(m)
    if "RespectIgnoreDifferences=true" not in (options or []):
        yield Problem(f"its child Applications ({names}) sync automatically, but without the sync option "
                      "RespectIgnoreDifferences=true its ignoreDifferences only hide the diff: every sync "
                      f"re-applies the children's automated sync and undoes a UI rollback ({RUNBOOK})",
                      ("spec", "syncPolicy", "syncOptions") if isinstance(options, list) else ("spec", "syncPolicy"))


def _annotated(kind: str, annotations: str, extra: str = "") -> str:
    return (f"apiVersion: batch/v1\nkind: {kind}\nmetadata:\n  name: migrate\n  annotations:\n"
            + "".join(f"    {line}\n" for line in annotations.splitlines()) + extra)


_JOB_SPEC = ("spec:\n  template:\n    spec:\n      restartPolicy: Never\n"
             "      containers: [{name: m, image: ghcr.io/acme/migrate:1.0.0}]\n")
_ROOT = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: root, namespace: argocd}
spec:
  project: bootstrap
  source: {repoURL: "https://git.example/repo.git", path: apps, targetRevision: main}
  destination: {server: "https://kubernetes.default.svc", namespace: argocd}
%s  syncPolicy:
    automated: {prune: true, selfHeal: true}
%s---
# rendered by the root app above (an app-of-apps): a child with automated sync
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web, namespace: argocd}
spec:
  project: web
  source: {repoURL: "https://git.example/repo.git", path: apps/web, targetRevision: main}
  destination: {server: "https://kubernetes.default.svc", namespace: web}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
"""
_IGNORE = """  ignoreDifferences:
    - group: argoproj.io
      kind: Application
      jsonPointers: [/spec/syncPolicy/automated]
"""

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
         "an Application source type the validator does not render (a config management plugin)",
         "Helm charts, Kustomize and plain directories are rendered; a plugin source is not checked.",
         _APP % ("apps/web", ", plugin: {name: sops}"), _APP % ("apps/web", "")),
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
    Rule("argocd/misspelt-repo-url", Severity.ERROR,
         "a source repoURL that is this repository under another spelling (\"did you mean\")",
         "A repoURL a few characters away from one of the config's `repoURLs` is a typo, not another "
         "repository: Argo CD cannot fetch it (the app stays `Unknown`, nothing syncs) and the validator "
         "would otherwise skip it as an external source and pass. Within 3 edits of a declared URL, "
         "after normalising scheme, user, case and `.git`, counts as a typo.",
         _APP.replace("git.example/repo.git", "git.example/rpeo.git") % ("apps/web", ""),
         _APP % ("apps/web", "")),
    Rule("argocd/non-deterministic-render", Severity.ERROR,
         "a chart that renders differently each time (randAlphaNum, uuidv4, now, genPrivateKey, ...)",
         "Argo CD renders the chart on every refresh and compares it with the cluster: output that "
         "changes each time never shows Synced, and with self-heal every reconcile rewrites the object "
         "(a changing pod-template annotation restarts the pods every few minutes). Every app is "
         "rendered twice (helm has no seed, so two runs draw different random values and times) and "
         "any difference is reported with the object and the field.",
         "# templates/deployment.yaml\nspec:\n  template:\n    metadata:\n      annotations:\n"
         "        rollme: {{ randAlphaNum 5 | quote }}\n",
         "# templates/deployment.yaml\nspec:\n  template:\n    metadata:\n      annotations:\n"
         "        checksum/config: {{ include (print $.Template.BasePath \"/configmap.yaml\") . | sha256sum }}\n"),
    Rule("argocd/sync-wave", Severity.ERROR,
         "a sync-wave (or helm.sh/hook-weight) that is not an integer as Argo CD parses it",
         "Argo CD reads the wave with Go's strconv.Atoi: an optional sign and digits, nothing else "
         "(`\"first\"`, `\"1.5\"`, `\" 1\"` are refused). A value it cannot parse is silently wave 0, "
         "so the object syncs with everything else and the ordering it was meant to enforce is gone.",
         _annotated("Job", 'argocd.argoproj.io/sync-wave: "first"', _JOB_SPEC),
         _annotated("Job", 'argocd.argoproj.io/sync-wave: "-1"', _JOB_SPEC),
         check_sync_wave),
    Rule("argocd/hook", Severity.ERROR,
         "a hook or hook-delete-policy annotation value Argo CD does not know",
         "Argo CD acts on the hooks PreSync, Sync, PostSync, SyncFail, PreDelete, PostDelete and Skip, "
         "the delete policies HookSucceeded, HookFailed and BeforeHookCreation, and Helm's hook names "
         "(install/upgrade/delete ones are mapped; test and rollback ones are ignored). A misspelt value "
         "is ignored without a word: a migration meant to run before the sync never runs, or a hook is "
         "never cleaned up.",
         _annotated("Job", "argocd.argoproj.io/hook: PreSynk\nargocd.argoproj.io/hook-delete-policy: HookSucceeded", _JOB_SPEC),
         _annotated("Job", "argocd.argoproj.io/hook: PreSync\nargocd.argoproj.io/hook-delete-policy: HookSucceeded", _JOB_SPEC),
         check_hooks),
    Rule("argocd/sync-option", Severity.ERROR,
         "a sync option Argo CD does not know, or spelt differently (`CreateNamespace=True`)",
         "Argo CD compares sync options as exact strings (`CreateNamespace=true`, never `True` or "
         "`createNamespace=true`), in an Application's `spec.syncPolicy.syncOptions` and in the "
         "`argocd.argoproj.io/sync-options` annotation; anything else is ignored: the namespace is not "
         "created, the prune not confirmed. Options that only an Application reads (CreateNamespace, "
         "PrunePropagationPolicy, FailOnSharedResource) do nothing on an object.",
         _APP % ("apps/web", "") + "  syncPolicy:\n    syncOptions: [CreateNamespace=True]\n",
         _APP % ("apps/web", "") + "  syncPolicy:\n    syncOptions: [CreateNamespace=true]\n",
         check_sync_options),
    Rule("argocd/replace-misuse", Severity.ERROR,
         "Replace=true with ServerSideApply=true, or Force=true on a CRD, Namespace or volume",
         "With both Replace=true and ServerSideApply=true, Argo CD uses replace and silently drops the "
         "server-side apply (its sync-options docs: Replace takes precedence). Force=true deletes and "
         "re-creates the object on every sync: on a CustomResourceDefinition that deletes every custom "
         "resource of it, on a Namespace everything in it, on a PersistentVolume(Claim) the data.",
         _APP % ("apps/web", "") + "  syncPolicy:\n    syncOptions: [Replace=true, ServerSideApply=true]\n",
         _APP % ("apps/web", "") + "  syncPolicy:\n    syncOptions: [ServerSideApply=true]\n",
         check_replace),
    Rule("argocd/rollback-undone", Severity.ERROR,
         "an app-of-apps whose auto-syncing children a UI rollback cannot stay rolled back in",
         "Argo CD refuses a rollback while auto-sync is on, so a UI rollback first turns the child's "
         "auto-sync off. The parent app-of-apps renders the child with auto-sync on: unless it ignores "
         "the children's `/spec/syncPolicy/automated` (`ignoreDifferences`, group argoproj.io, kind "
         "Application) and applies that on sync (`RespectIgnoreDifferences=true`), its next sync turns "
         "auto-sync back on and the child returns to the bad revision a few minutes after the rollback. "
         "The runbook: [docs/runbooks/rollback-ui.md](runbooks/rollback-ui.md#why-the-root-does-not-undo-the-pause).",
         _ROOT % ("", ""),
         _ROOT % (_IGNORE, "    syncOptions: [RespectIgnoreDifferences=true]\n"),
         check_rollback),
]
