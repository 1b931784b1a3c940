"""argocd/ sync semantics, rollback that holds, misspelt repoURLs and the determinism check:
each rule failing and passing on fixture objects, with Argo CD v3.5.1's own parsing as the reference."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from gitops_validate import determinism
from gitops_validate.config import Config
from gitops_validate.discover import misspelt_repo_url
from gitops_validate.model import Manifest
from gitops_validate.policy import evaluate
from gitops_validate.render import RenderRequest
from gitops_validate.rules import REGISTRY, Context


def objs(text: str, rendered_by: str | None = None) -> list[Manifest]:
    """Manifests of a YAML text; with ``rendered_by``, every document after the first is that
    Application's rendered output (an app-of-apps and its children)."""
    out = []
    for i, doc in enumerate(d for d in yaml.safe_load_all(textwrap.dedent(text)) if isinstance(d, dict)):
        out.append(Manifest(doc, "x.yaml", app=rendered_by if rendered_by and i else None))
    return out


def run(rule_id: str, text: str, rendered_by: str | None = None) -> list[str]:
    ms = objs(text, rendered_by)
    return [f.message for f in evaluate(ms, Context(tuple(ms)), rules=[REGISTRY[rule_id]])]


def annotated(annotations: dict, kind: str = "Job") -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": kind, "metadata": {"name": "x", "annotations": annotations}})


def app(sync: dict | None = None, extra: dict | None = None, name: str = "web") -> dict:
    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name, "namespace": "argocd"},
           "spec": {"project": "p", "source": {"repoURL": "https://git.example/r.git", "path": "apps", "targetRevision": "main"},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"}}}
    if sync is not None:
        doc["spec"]["syncPolicy"] = sync
    doc["spec"].update(extra or {})
    return doc


# --- argocd/sync-wave: strconv.Atoi -----------------------------------------------------------

@pytest.mark.parametrize("value", ["first", "1.5", " 1", "1 ", "", "0x10", "1e3", "١", "9223372036854775808", "--1"])
def test_sync_wave_refuses_what_atoi_refuses(value):
    msgs = run("argocd/sync-wave", annotated({"argocd.argoproj.io/sync-wave": value}))
    assert len(msgs) == 1 and "strconv.Atoi" in msgs[0] and "wave 0" in msgs[0]


@pytest.mark.parametrize("value", ["0", "-1", "+3", "007", "9223372036854775807", "-9223372036854775808"])
def test_sync_wave_accepts_what_atoi_accepts(value):
    assert run("argocd/sync-wave", annotated({"argocd.argoproj.io/sync-wave": value})) == []


def test_helm_hook_weight_is_parsed_the_same_way():
    assert run("argocd/sync-wave", annotated({"helm.sh/hook-weight": "high"}))
    assert run("argocd/sync-wave", annotated({"helm.sh/hook-weight": "-5"})) == []


# --- argocd/hook -------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, hint", [
    ("argocd.argoproj.io/hook", "PreSynk", "PreSync"),
    ("argocd.argoproj.io/hook", "presync", "PreSync"),
    ("argocd.argoproj.io/hook", "PreSync,PostSnyc", "PostSync"),
    ("argocd.argoproj.io/hook-delete-policy", "HookSucceed", "HookSucceeded"),
    ("helm.sh/hook", "pre-instal", "pre-install"),
    ("helm.sh/hook-delete-policy", "before-hook-create", "before-hook-creation"),
])
def test_unknown_hook_values_are_refused_with_a_hint(key, value, hint):
    msgs = run("argocd/hook", annotated({key: value}))
    assert len(msgs) == 1 and f"did you mean {hint!r}" in msgs[0]


@pytest.mark.parametrize("annotations", [
    {"argocd.argoproj.io/hook": "PreSync, PostSync", "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation,HookSucceeded"},
    {"argocd.argoproj.io/hook": "PreDelete"}, {"argocd.argoproj.io/hook": "PostDelete"}, {"argocd.argoproj.io/hook": "Skip"},
    {"helm.sh/hook": "pre-install,pre-upgrade", "helm.sh/hook-delete-policy": "hook-succeeded"},
    {"helm.sh/hook": "test"},  # Argo CD ignores Helm tests, by design: not a typo
])
def test_known_hook_values_pass(annotations):
    assert run("argocd/hook", annotated(annotations)) == []


# --- argocd/sync-option ------------------------------------------------------------------------

@pytest.mark.parametrize("option, hint", [
    ("CreateNamespace=True", "CreateNamespace=true"),
    ("createNamespace=true", "CreateNamespace=true"),
    ("RespectIgnoreDifference=true", "RespectIgnoreDifferences=true"),
    ("PrunePropagationPolicy=Foreground", "PrunePropagationPolicy=foreground"),
    ("ServerSideApply", "ServerSideApply=true"),
])
def test_misspelt_app_sync_option_says_did_you_mean(option, hint):
    msgs = run("argocd/sync-option", yaml.safe_dump(app({"syncOptions": ["Validate=false", option]})))
    assert len(msgs) == 1 and f"did you mean {hint!r}" in msgs[0], msgs


def test_misspelt_option_points_at_its_list_item():
    ms = objs(yaml.safe_dump(app({"syncOptions": ["Validate=false", "CreateNamespace=True"]})))
    (f,) = evaluate(ms, Context(tuple(ms)), rules=[REGISTRY["argocd/sync-option"]])
    assert f.rule == "argocd/sync-option" and f.object.name == "web"


@pytest.mark.parametrize("options", [
    ["CreateNamespace=true", "PruneLast=true", "ApplyOutOfSyncOnly=true", "ServerSideApply=true",
     "RespectIgnoreDifferences=true", "FailOnSharedResource=true", "PrunePropagationPolicy=orphan",
     "SkipDryRunOnMissingResource=true", "Prune=confirm", "Delete=false", "Validate=false",
     "ClientSideApplyMigration=false"],
])
def test_every_documented_app_option_passes(options):
    assert run("argocd/sync-option", yaml.safe_dump(app({"syncOptions": options}))) == []


def test_annotation_options_are_checked_and_app_only_ones_refused():
    assert run("argocd/sync-option", annotated({"argocd.argoproj.io/sync-options": "Prune=false, Delete=confirm"})) == []
    assert run("argocd/sync-option", annotated({"argocd.argoproj.io/sync-options": "Force=true,Replace=true"})) == []
    (msg,) = run("argocd/sync-option", annotated({"argocd.argoproj.io/sync-options": "Prune=false,CreateNamespace=true"}))
    assert "only from the Application" in msg
    (msg,) = run("argocd/sync-option", annotated({"argocd.argoproj.io/sync-options": "prune=false"}))
    assert "did you mean 'Prune=false'" in msg


# --- argocd/replace-misuse ---------------------------------------------------------------------

def test_replace_with_server_side_apply_is_refused_at_both_levels():
    assert run("argocd/replace-misuse", yaml.safe_dump(app({"syncOptions": ["Replace=true", "ServerSideApply=true"]})))
    assert run("argocd/replace-misuse", annotated({"argocd.argoproj.io/sync-options": "ServerSideApply=true,Replace=true"}, "ConfigMap"))
    assert run("argocd/replace-misuse", yaml.safe_dump(app({"syncOptions": ["Replace=true"]}))) == []


@pytest.mark.parametrize("kind, refused", [("CustomResourceDefinition", True), ("Namespace", True),
                                           ("PersistentVolumeClaim", True), ("Job", False)])
def test_force_on_containers_of_other_objects_is_refused(kind, refused):
    msgs = run("argocd/replace-misuse", annotated({"argocd.argoproj.io/sync-options": "Force=true,Replace=true"}, kind))
    assert bool(msgs) is refused


# --- argocd/rollback-undone --------------------------------------------------------------------

IGNORE = [{"group": "argoproj.io", "kind": "Application", "jsonPointers": ["/spec/syncPolicy/automated"]}]
RESPECT = ["RespectIgnoreDifferences=true"]
AUTO = {"automated": {"prune": True, "selfHeal": True}}


def rollback(parent: dict, child: dict) -> list[str]:
    return run("argocd/rollback-undone", yaml.safe_dump_all([parent, child]), rendered_by=parent["metadata"]["name"])


def test_app_of_apps_without_ignore_differences_is_refused():
    msgs = rollback(app({**AUTO, "syncOptions": RESPECT}, name="root"), app(AUTO))
    assert len(msgs) == 1 and "/spec/syncPolicy/automated" in msgs[0] and "docs/runbooks/rollback-ui.md" in msgs[0]
    assert "web" in msgs[0]


def test_app_of_apps_without_respect_ignore_differences_is_refused():
    msgs = rollback(app(AUTO, {"ignoreDifferences": IGNORE}, name="root"), app(AUTO))
    assert len(msgs) == 1 and "RespectIgnoreDifferences=true" in msgs[0]


@pytest.mark.parametrize("ignore", [
    IGNORE, [{"group": "argoproj.io", "kind": "Application", "jqPathExpressions": [".spec.syncPolicy.automated"]}],
    [{"group": "argoproj.io", "kind": "Application", "jsonPointers": ["/spec/syncPolicy"]}],
])
def test_app_of_apps_that_holds_rollbacks_passes(ignore):
    assert rollback(app({**AUTO, "syncOptions": RESPECT}, {"ignoreDifferences": ignore}, name="root"), app(AUTO)) == []


def test_ignoring_another_kind_does_not_count():
    wrong = [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/syncPolicy/automated"]}]
    assert rollback(app({**AUTO, "syncOptions": RESPECT}, {"ignoreDifferences": wrong}, name="root"), app(AUTO))


@pytest.mark.parametrize("child_sync", [None, {"syncOptions": ["CreateNamespace=true"]},
                                        {"automated": {"enabled": False}}])
def test_children_without_automated_sync_need_nothing(child_sync):
    assert rollback(app(AUTO, name="root"), app(child_sync)) == []


def test_an_application_that_renders_no_applications_is_not_an_app_of_apps():
    assert run("argocd/rollback-undone", yaml.safe_dump(app(AUTO))) == []


# --- argocd/misspelt-repo-url ------------------------------------------------------------------

CONFIG = Config(repo_urls=("https://github.com/todo-chatbot/todo-gitops.git",))


@pytest.mark.parametrize("url", ["https://github.com/todo-chatbot/todo-gitop.git",
                                 "https://github.com/todo-chatbot/todo-gtiops.git",
                                 "https://github.com/todo-chatbot/todo-gitops-.git",
                                 "https://gitlab.com/todo-chatbot/todo-gitops.git"])
def test_near_miss_of_a_declared_repo_url_is_a_typo(url):
    assert misspelt_repo_url(url, CONFIG) == CONFIG.repo_urls[0]


@pytest.mark.parametrize("url", ["https://github.com/todo-chatbot/todo-gitops.git",  # itself
                                 "git@github.com:todo-chatbot/todo-gitops",            # itself, other spelling
                                 "https://GitHub.com/todo-chatbot/todo-gitops/",
                                 "https://github.com/todo-chatbot/todo-charts.git",    # another repository
                                 "https://charts.example/other.git", None, ""])
def test_the_repo_itself_and_other_repos_are_not_typos(url):
    assert misspelt_repo_url(url, CONFIG) is None


def test_repo_url_typo_work_is_bounded():
    assert misspelt_repo_url("https://github.com/" + "x" * 100_000, CONFIG) is None


# --- argocd/non-deterministic-render: the comparison -------------------------------------------

def _req() -> RenderRequest:
    return RenderRequest(app="web", chart="apps/web", release="web", namespace="web", kube_version="1.35.1",
                         api_versions=(), value_files=[], values_yaml=None)


def _stream(annotation: str, extra: str = "") -> str:
    return ("---\n# Source: web/templates/deploy.yaml\napiVersion: apps/v1\nkind: Deployment\n"
            f"metadata:\n  name: web\n  annotations:\n    rollme: {annotation}\n" + extra)


def test_compare_names_the_object_and_the_field(tmp_path):
    (tmp_path / "apps/web/templates").mkdir(parents=True)
    (tmp_path / "apps/web/templates/deploy.yaml").write_text("kind: Deployment\nmetadata:\n  annotations:\n"
                                                             "    rollme: {{ randAlphaNum 5 | quote }}\n")
    from gitops_validate.render import parse_rendered
    first, _ = parse_rendered(_stream("abcde"), _req())
    (f,) = determinism.compare(tmp_path, _req(), first, _stream("vwxyz"), None)
    assert f.rule == "argocd/non-deterministic-render" and f.file == "apps/web/templates/deploy.yaml" and f.line == 4
    assert "metadata.annotations.rollme: 'abcde' then 'vwxyz'" in f.message and f.object.name == "web"
    assert determinism.compare(tmp_path, _req(), first, _stream("abcde"), None) == []


def test_compare_reports_objects_of_one_run_only_and_a_failing_second_run(tmp_path):
    from gitops_validate.render import parse_rendered
    first, _ = parse_rendered(_stream("a"), _req())
    other = _stream("a").replace("name: web", "name: web-x1y2")
    findings = determinism.compare(tmp_path, _req(), first, other, None)
    assert sorted(f.object.name for f in findings) == ["web", "web-x1y2"]
    assert all("rendered by one run and not by the next" in f.message for f in findings)
    (f,) = determinism.compare(tmp_path, _req(), first, None, "boom")
    assert "failed on a second run: boom" in f.message


def test_applicationset_git_generator_with_a_misspelt_repo_url(tmp_path):
    from gitops_validate.discover import expand_applicationset
    from gitops_validate.yamlio import load_one
    text = ("apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {name: s, namespace: argocd}\nspec:\n"
            "  generators:\n    - git:\n        repoURL: https://github.com/todo-chatbot/todo-gtiops.git\n"
            "        revision: main\n        directories: [{path: 'apps/*'}]\n  template: {}\n")
    doc = load_one(text)
    apps, findings = expand_applicationset(Manifest(doc.data, "set.yaml", doc.line, yaml=doc), tmp_path, CONFIG)
    assert apps == [] and [(f.rule, f.line) for f in findings] == [("argocd/misspelt-repo-url", 7)]
    assert "did you mean 'https://github.com/todo-chatbot/todo-gitops.git'" in findings[0].message


def test_ignoring_one_named_child_leaves_the_others_exposed():
    named = [{**IGNORE[0], "name": "web"}]
    parent = app({**AUTO, "syncOptions": RESPECT}, {"ignoreDifferences": named}, name="root")
    ms = objs(yaml.safe_dump_all([parent, app(AUTO, name="web"), app(AUTO, name="api")]), rendered_by="root")
    (msg,) = [f.message for f in evaluate(ms, Context(tuple(ms)), rules=[REGISTRY["argocd/rollback-undone"]])]
    assert "(api)" in msg


@pytest.mark.parametrize("rule_id", ["argocd/rollback-undone", "argocd/sync-option", "argocd/replace-misuse",
                                     "argocd/sync-wave", "argocd/hook"])
@pytest.mark.parametrize("spec", [[], "text", {"syncPolicy": []}, {"syncPolicy": {"syncOptions": {"a": 1}}},
                                  {"ignoreDifferences": [{"group": "argoproj.io", "kind": "Application",
                                                          "jsonPointers": [{"not": "a string"}]}]}])
def test_malformed_applications_are_no_traceback(rule_id, spec):
    parent = {**app(), "spec": spec}
    ms = objs(yaml.safe_dump_all([parent, app(AUTO)]), rendered_by="web")
    evaluate(ms, Context(tuple(ms)), rules=[REGISTRY[rule_id]])  # findings or not, never an exception
