"""What the e2e tests drive: the cluster, Argo CD, and the git repo it syncs (the `loop` fixture)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml
from conftest import Run, run_cli  # tests/conftest.py: the CLI with the pinned tools

from e2e.harness import ARGOCD, ROOT, ArgoCD, GitRepo, HarnessError, Kubectl, Processes

APP_NAMESPACE = "todo"
CLUSTER = yaml.safe_load((ROOT / "clusters" / "minikube" / "cluster.yaml").read_text())


@dataclass
class Loop:
    """What the tests drive: the cluster, Argo CD, and the git repo it syncs."""

    procs: Processes
    kubectl: Kubectl
    argocd: ArgoCD
    repo: GitRepo
    poll: float  # seconds between Argo CD's looks at git
    repo_error_grace: float  # seconds Argo CD keeps showing the last good state when rendering fails

    def app(self, name: str) -> dict:
        return self.kubectl.get("application", name, ARGOCD)

    def wait_app(self, name: str, sync: str = "Synced", health: str = "Healthy", revision: str | None = None,
                 timeout: float = 300) -> dict:
        def state() -> dict | None:
            app = self.app(name)
            status = app.get("status", {})
            ok = (status.get("sync", {}).get("status") == sync and status.get("health", {}).get("status") == health
                  and (revision is None or status.get("sync", {}).get("revision") == revision))
            return app if ok else None
        want = f"{sync}/{health}" + (f" at {revision[:8]}" if revision else "")
        try:
            return self.procs.wait_until(f"application {name} {want}", state, timeout,
                                         logs=("argocd-application-controller", "argocd-repo-server"))
        except HarnessError as e:
            status = self.app(name).get("status", {})
            brief = {k: status.get(k) for k in ("sync", "health", "conditions", "operationState")}
            raise HarnessError(f"{e}\n--- {name} status now:\n{json.dumps(brief, indent=1)[:4000]}") from None

    def deployment(self, name: str) -> dict:
        return self.kubectl.get("deployment", name, APP_NAMESPACE)

    def wait_rolled_out(self, name: str, image_tag: str, timeout: float = 180) -> dict:
        """All replicas of the Deployment run `image_tag` and are available (the rollout finished)."""
        def rolled() -> dict | None:
            d = self.deployment(name)
            spec, status = d["spec"], d.get("status", {})
            tag = spec["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[-1]
            done = (tag == image_tag and status.get("observedGeneration") == d["metadata"]["generation"]
                    and status.get("updatedReplicas") == spec["replicas"]
                    and status.get("availableReplicas") == spec["replicas"]
                    and status.get("replicas") == spec["replicas"])
            return d if done else None
        return self.procs.wait_until(f"deployment {name} rolled out with tag {image_tag}", rolled, timeout,
                                     logs=("kube-controller-manager", "kwok", "argocd-application-controller"))

    def validate(self) -> Run:
        """gitops-validate on the checkout, with the pinned tools, as the pre-commit hook and CI run it."""
        return run_cli("--format=json", "--no-cache", cwd=self.repo.checkout)


def seconds(duration: str) -> float:
    """'10s' -> 10.0 (the durations E2E_POLL and E2E_REPO_ERROR_GRACE take; minutes as '2m')."""
    return float(duration[:-1]) * (60 if duration.endswith("m") else 1)
