"""The e2e session: build (once), start the control plane and Argo CD, bootstrap like `make bootstrap`.

The run's directory (the control plane's keys, etcd's data, the Argo CD session) is removed on every
exit but a SIGKILL; when a test failed, its logs are first copied to a new temporary directory, named
at the end of the run.

Environment:
  E2E_KUBECONFIG      run against this cluster (a fresh minikube or kind profile) instead of the local
                      control plane; other contexts are refused unless E2E_FORCE=1. What the run
                      applied there is deleted again at the end.
  E2E_POLL            Argo CD's git poll interval for the run (default 10s; the repo's own is 60s)
  E2E_REPO_ERROR_GRACE  how long Argo CD hides a failing manifest generation (default 20s; Argo CD's 180s)
  E2E_NEW_TAG         the backend tag the deploy-by-merge step rolls to (default 1.0.1)
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.harness import (ARGOCD, ROOT, ArgoCD, GitRepo, Kubectl, Processes, check_context, default_repo_url,
                         remove_applied, start_control_plane)
from e2e.loop import CLUSTER, Loop, seconds

def _build() -> None:
    p = subprocess.run(["bash", str(ROOT / "scripts" / "e2e-build.sh")], capture_output=True, text=True)
    if p.returncode:
        pytest.fail(f"scripts/e2e-build.sh failed (exit {p.returncode}):\n{p.stderr[-4000:]}", pytrace=False)


def _user_kubeconfig(path: str, work: Path) -> Path:
    """A copy of the given kubeconfig's current context, with Argo CD's namespace as the default."""
    kubeconfig = work / "kubeconfig"
    config = yaml.safe_load(Kubectl(Path(path))("config", "view", "--flatten", "--minify").stdout)
    check_context(config, force=os.environ.get("E2E_FORCE") == "1")
    config["contexts"][0]["context"]["namespace"] = ARGOCD
    kubeconfig.write_text(yaml.safe_dump(config))
    return kubeconfig


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _keep_logs(procs: Processes) -> Path:
    kept = Path(tempfile.mkdtemp(prefix="todo-e2e-logs-"))
    shutil.copytree(procs.logs, kept, dirs_exist_ok=True)
    return kept


@pytest.fixture(scope="session")
def loop(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Loop]:
    _build()
    work = tmp_path_factory.mktemp("e2e")
    procs = Processes(work / "logs")
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)  # finalizers run on TERM as on Ctrl-C
    failed = False
    kubectl = rendered = None
    given = os.environ.get("E2E_KUBECONFIG")
    try:
        kubeconfig = _user_kubeconfig(given, work) if given else start_control_plane(procs, work)
        kubectl = Kubectl(kubeconfig)
        repo = GitRepo(work)
        argocd = ArgoCD(procs, work, kubeconfig)
        poll = os.environ.get("E2E_POLL", "10s")
        # A duration: Argo CD parses this "seconds" setting with time.ParseDuration ("20" means 180 s).
        grace = os.environ.get("E2E_REPO_ERROR_GRACE", "20s")
        # Only timing differs from the repo's Argo CD settings, so a run takes minutes, not a quarter hour.
        settings = {"argocd-cm": {"timeout.reconciliation": poll, "timeout.reconciliation.jitter": "0s"},
                    "argocd-cmd-params-cm": {"controller.repo.error.grace.period.seconds": grace}}
        rendered = argocd.install(repo.url, settings)
        argocd.start(rendered)
        _bootstrap(kubectl, argocd, repo)
        yield Loop(procs, kubectl, argocd, repo, seconds(poll), seconds(grace))
    except BaseException:
        failed = True
        raise
    finally:
        procs.stop()
        try:
            if given and kubectl is not None:  # someone else's cluster: take back what the run applied
                remove_applied(kubectl, rendered or [])
        finally:
            if failed or request.session.testsfailed:
                print(f"\ne2e logs: {_keep_logs(procs)}", file=sys.stderr)
            shutil.rmtree(work, ignore_errors=True)  # keys, tokens, etcd data, the repo copies
            signal.signal(signal.SIGTERM, previous)


def _bootstrap(kubectl: Kubectl, argocd: ArgoCD, repo: GitRepo) -> None:
    """The rest of scripts/bootstrap.sh: the Secret from .env, then the AppProjects' root Application."""
    for secret in CLUSTER["externalSecrets"]:
        # A made-up value per key: never a real secret, and not one that looks like one to scanners.
        env_file = argocd.work / f"{secret['name']}.env"
        env_file.write_text("".join(f"{key}=e2e-{key.lower()}-{time.time_ns()}\n" for key in secret["keys"]))
        kubectl.ensure_namespace(secret["namespace"])
        manifest = kubectl("create", "secret", "generic", secret["name"], f"--namespace={secret['namespace']}",
                           f"--from-env-file={env_file}", "--dry-run=client", "-o", "yaml").stdout
        # Server-side, as the bootstrap does: no copy of the values in last-applied-configuration.
        kubectl("apply", "--server-side", "--field-manager=bootstrap", "-f", "-", stdin=manifest)
        env_file.unlink()
    root = (ROOT / "argocd" / "root-app.yaml").read_text().replace(default_repo_url(), repo.url)
    kubectl.apply(root)
    # The password the API server generated at its first start (runbook: `argocd admin initial-password`).
    secret = argocd.procs.wait_until("argocd-initial-admin-secret",
                                     lambda: kubectl.get("secret", "argocd-initial-admin-secret", ARGOCD), 60)
    password = base64.b64decode(secret["data"]["password"])
    # TLS, as the repo configures Argo CD (server.insecure off); its certificate is self-signed.
    argocd.cli("login", argocd.server, "--insecure", "--username", "admin", "--password", password.decode())
