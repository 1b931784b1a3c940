"""argocd/project-destination agrees with Argo CD: an AppProject that no longer permits the apps'
namespace is refused by gitops-validate, and the real Argo CD refuses the apps with the project error.

Runs after test_gitops_loop.py on the same cluster (the `loop` fixture) and leaves it as it found it.
"""

from __future__ import annotations

import yaml

import pytest
from e2e.harness import ARGOCD, default_repo_url
from e2e.loop import APP_NAMESPACE, Loop

pytestmark = pytest.mark.e2e

PROJECTS = "argocd/projects.yaml"
BACKEND = "todo-backend"


def narrow_destination(text: str) -> str:
    """The one-line edit: the `todo` project's destination namespace is no longer the apps' one."""
    old = f"      namespace: {APP_NAMESPACE}\n"
    assert text.count(old) == 1, text
    return text.replace(old, f"      namespace: {APP_NAMESPACE}-elsewhere\n")


def apply_projects(loop: Loop) -> None:
    """What re-running `make bootstrap` does with argocd/projects.yaml (Argo CD does not sync its projects)."""
    text = (loop.repo.checkout / PROJECTS).read_text().replace(default_repo_url(), loop.repo.url)
    loop.kubectl.apply([d for d in yaml.safe_load_all(text) if d])


def invalid_spec(loop: Loop, app: str) -> str | None:
    conditions = loop.app(app).get("status", {}).get("conditions") or []
    return next((c["message"] for c in conditions if c["type"] == "InvalidSpecError"), None)


def test_a_project_refusing_the_destination_is_refused_by_both(loop: Loop) -> None:
    loop.wait_app(BACKEND)
    loop.repo.merge("todo project: another destination namespace", PROJECTS, narrow_destination)

    verdict = loop.validate()
    assert verdict.code == 1, verdict.out + verdict.err
    hits = [f for f in verdict.json["findings"] if f["rule"] == "argocd/project-destination"]
    assert hits and all(f["file"] == PROJECTS for f in hits), verdict.json["findings"]
    assert {f["object"]["name"] for f in hits} == {"todo-backend", "todo-frontend"}

    apply_projects(loop)  # merged anyway and applied: Argo CD refuses the apps of the project
    loop.argocd.cli("app", "get", BACKEND, "--refresh", check=False)  # a nudge; the controller also watches projects
    message = loop.procs.wait_until(f"{BACKEND} to report the project refusing its destination",
                                    lambda: invalid_spec(loop, BACKEND), timeout=loop.poll * 6 + 60,
                                    logs=("argocd-application-controller",))
    assert (f"namespace '{APP_NAMESPACE}' do not match any of the allowed destinations in project 'todo'"
            in message), message
    assert loop.kubectl.get("appproject", "todo", ARGOCD)["spec"]["destinations"][0]["namespace"] != APP_NAMESPACE

    loop.repo.git("revert", "--no-edit", "HEAD")
    fixed = loop.repo.push()
    assert loop.validate().code == 0
    apply_projects(loop)
    loop.argocd.cli("app", "get", BACKEND, "--refresh", check=False)
    loop.wait_app(BACKEND, revision=fixed)
    assert invalid_spec(loop, BACKEND) is None
