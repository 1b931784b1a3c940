"""The operations side: bootstrap/teardown/images scripts, Dockerfiles, compose, CI workflow.

There is no Docker engine, minikube or cluster on the development machine or in CI, so these
tests check everything that can be checked without one, with real tools: shellcheck, hadolint
and actionlint on the files; the scripts' dry-run plans, compared line by line; the scripts'
real code paths against fake minikube/kubectl/helm that record what they were asked to do; and
the Dockerfiles against the charts as `helm template` renders them. A missing tool fails the
test with "run make setup"; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, VERSIONS

VENV_BIN = Path(sys.executable).parent
TOOLS_BIN = ROOT / ".tools" / "bin"
APPS = ("backend", "frontend")


# ------------------------------------------------------------------------------------------
# helpers


def tool(path: Path) -> str:
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} not found: run make setup")
    return str(path)


def cluster() -> dict:
    return yaml.safe_load((ROOT / "clusters/minikube/cluster.yaml").read_text())


def secret_keys() -> list[str]:
    return [k for s in cluster().get("externalSecrets") or [] for k in s["keys"]]


def memory_mb(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "M": 10**6, "G": 10**9}
    for unit in sorted(units, key=len, reverse=True):
        if q.endswith(unit):
            return int(float(q[: -len(unit)]) * units[unit]) // 2**20
    return int(q) // 2**20


def values_of(app: str) -> dict:
    """The minikube values override of todo-<app>, over the chart's values.yaml."""
    merged: dict = {}
    for path in (ROOT / f"apps/todo-{app}/values.yaml", ROOT / f"clusters/minikube/values/todo-{app}.yaml"):
        doc = yaml.safe_load(path.read_text()) or {}
        for key, value in doc.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def image_of(app: str) -> str:
    values = values_of(app)
    image = values.get("image") or {}
    tag = image.get("tag") or yaml.safe_load((ROOT / f"apps/todo-{app}/Chart.yaml").read_text())["appVersion"]
    return f"{image.get('repository') or 'todo-' + app}:{tag}"


_RENDERED: dict[str, dict] = {}


def rendered_container(app: str) -> dict:
    """The app's container as `helm template` renders it with the minikube values."""
    if app not in _RENDERED:
        helm = tool(TOOLS_BIN / "helm")
        proc = subprocess.run(
            [helm, "template", f"todo-{app}", f"apps/todo-{app}", "--namespace", "todo",
             "-f", f"clusters/minikube/values/todo-{app}.yaml",
             "--kube-version", VERSIONS["KUBERNETES_VERSION"].lstrip("v")],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        deployments = [d for d in yaml.safe_load_all(proc.stdout) if d and d.get("kind") == "Deployment"]
        assert len(deployments) == 1, f"expected one Deployment in todo-{app}"
        containers = deployments[0]["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        _RENDERED[app] = containers[0]
    return _RENDERED[app]


def container_port(app: str) -> int:
    ports = rendered_container(app)["ports"]
    return next(p["containerPort"] for p in ports if p.get("name") == "http") if len(ports) > 1 else ports[0]["containerPort"]


def liveness_path(app: str) -> str:
    return rendered_container(app)["livenessProbe"]["httpGet"]["path"]


# A fake minikube/kubectl/helm/docker: records every call, answers the queries, and keeps what
# would have reached the cluster (applied manifests, the Secret's env file) for inspection.
FAKE = r"""#!/usr/bin/env bash
name=$(basename "$0")
printf '%s %s\n' "$name" "$*" >>"$FAKE_DIR/calls.log"
call="$name $*"
if [ -n "${FAKE_FAIL:-}" ] && [[ "$call" == "$FAKE_FAIL"* ]]; then
  echo "fake $name: failing on purpose" >&2
  exit 1
fi
case "$call" in
  "minikube version --short") echo "${FAKE_MINIKUBE_VERSION:-v1.38.0}" ;;
  "minikube status"*)
    if [ -f "$FAKE_DIR/running" ]; then echo Running; else echo Stopped; exit 7; fi ;;
  "minikube start"*) touch "$FAKE_DIR/running" ;;
  "minikube ip") echo 192.168.49.2 ;;
  "kubectl version --client -o json")
    printf '{\n  "clientVersion": {\n    "gitVersion": "%s"\n  }\n}\n' "${FAKE_KUBECTL_VERSION:-v1.35.1}" ;;
  "kubectl config current-context") echo "${FAKE_CONTEXT:-minikube}" ;;
  "kubectl create namespace "*) printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$3" ;;
  "kubectl create secret generic "*)
    for a in "$@"; do
      case $a in --from-env-file=*) f=${a#--from-env-file=}; cp "$f" "$FAKE_DIR/secret.env"; echo "$f" >"$FAKE_DIR/secret.path" ;; esac
    done
    printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n' "$4" ;;
  "kubectl apply -f -" | "kubectl apply --server-side --field-manager=bootstrap -f -") cat >>"$FAKE_DIR/applied-stdin.yaml" ;;
  "kubectl -n argocd patch secret argocd-secret "*)
    for a in "$@"; do
      case $a in --patch-file=*) cp "${a#--patch-file=}" "$FAKE_DIR/admin-patch.json" ;; esac
    done ;;
  "kubectl apply --server-side --force-conflicts -f "*)
    prev=""
    for a in "$@"; do
      if [ "$prev" = "-f" ]; then cp "$a" "$FAKE_DIR/applied-$(basename "$a")"; fi
      prev=$a
    done ;;
  "helm version"*) echo "${FAKE_HELM_VERSION:-v4.2.1}" ;;
esac
exit 0
"""

# The commands the scripts may use, linked into an isolated PATH (so "minikube is missing" is
# true whatever the machine has).
SYSTEM_TOOLS = ("bash", "sh", "env", "dirname", "basename", "sed", "grep", "head", "cat", "mktemp",
                "rm", "tr", "git", "cp", "touch", "mkdir", "python3")


def fake_path(tmp_path: Path, fakes=("minikube", "kubectl", "helm")) -> tuple[str, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in SYSTEM_TOOLS:
        found = shutil.which(name)
        assert found, f"{name} is needed by the tests"
        (bin_dir / name).symlink_to(found)
    for name in fakes:
        (bin_dir / name).write_text(FAKE)
        (bin_dir / name).chmod(0o755)
    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    return str(bin_dir), fake_dir


def run_script(script: str, *args: str, env: dict | None = None, path: str | None = None,
               dry: bool = False) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DRY_RUN", "REPO_URL", "REVISION", "ENV_FILE",
                                                                   "APP_SRC", "BACKEND_SRC", "FRONTEND_SRC")}
    full_env.update(env or {})
    if path is not None:
        full_env["PATH"] = path
    if dry:
        full_env["DRY_RUN"] = "1"
    return subprocess.run(["bash", f"scripts/{script}", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120, check=False)


def calls(fake_dir: Path) -> list[str]:
    log = fake_dir / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


QUERIES = ("minikube version", "minikube status", "minikube ip", "kubectl version", "kubectl config",
           "helm version", "kubectl -n argocd get secret")


def mutating_calls(fake_dir: Path) -> list[str]:
    return [c for c in calls(fake_dir) if not c.startswith(QUERIES)]


REPO = "https://git.example.test/team/todo-gitops.git"
BRANCH = "feature/rollout"


def expected_bootstrap_plan(repo: str = REPO, rev: str = BRANCH) -> list[str]:
    v = VERSIONS
    c = cluster()
    default_url = yaml.safe_load((ROOT / "argocd/root-app.yaml").read_text())["spec"]["source"]["repoURL"]
    pattern = re.sub(r"([].|*^$\\[])", r"\\\1", default_url)
    cpus = int(str(c["capacity"]["cpu"]))
    secret = c["externalSecrets"][0]
    app_port = values_of("frontend")["service"]["nodePort"]
    return [
        "==> [1/9] check tools",
        "==> [2/9] start minikube (skipped when it is already running)",
        f"+ minikube start --kubernetes-version={c['kubernetesVersion']} --cpus={cpus} "
        f"--memory={memory_mb(c['capacity']['memory'])} --cni=calico --addons=ingress",
        "==> [3/9] create namespace argocd",
        "+ kubectl create namespace argocd --dry-run=client -o yaml | kubectl apply -f -",
        f"==> [4/9] install Argo CD {v['ARGOCD_VERSION']}",
        "+ kubectl apply --server-side --force-conflicts -k argocd/",
        "+ kubectl wait --for=condition=Established --timeout=60s crd/applications.argoproj.io crd/appprojects.argoproj.io",
        "==> [5/9] wait for Argo CD",
        "+ kubectl -n argocd rollout status deploy/argocd-server --timeout=300s",
        "+ kubectl -n argocd rollout status deploy/argocd-repo-server --timeout=300s",
        "+ kubectl -n argocd rollout status statefulset/argocd-application-controller --timeout=300s",
        "==> [6/9] create Secrets from .env (values are never printed)",
        f"+ kubectl create namespace {secret['namespace']} --dry-run=client -o yaml | kubectl apply -f -",
        f"+ kubectl create secret generic {secret['name']} --namespace={secret['namespace']} "
        f"--from-env-file=<tmp>/{secret['namespace']}.{secret['name']}.env --dry-run=client -o yaml | kubectl apply --server-side --field-manager=bootstrap -f -",
        "==> [7/9] set the Argo CD admin password (values are never printed, but a generated one once)",
        "+ kubectl -n argocd patch secret argocd-secret --type=merge --patch-file=<tmp>/argocd-admin-password.json",
        "+ kubectl -n argocd delete secret argocd-initial-admin-secret --ignore-not-found",
        f"==> [8/9] apply AppProjects and the root Application ({repo} @ {rev})",
        f"+ sed -e 's|{pattern}|{repo}|g' argocd/projects.yaml > <tmp>/projects.yaml",
        f"+ sed -e 's|{pattern}|{repo}|g' -e 's|^\\(  *targetRevision:\\).*|\\1 {rev}|' "
        "argocd/root-app.yaml > <tmp>/root-app.yaml",
        "+ kubectl apply --server-side --force-conflicts -f <tmp>/projects.yaml -f <tmp>/root-app.yaml",
        "==> [9/9] done",
        f"    Todo app:        http://$(minikube ip):{app_port}",
        "    Argo CD UI:      https://$(minikube ip):30443  (user: admin; a self-signed certificate: see "
        "docs/runbooks/deploy.md)",
        "    admin password:  (generated by the real run, printed here once)",
        "    argocd CLI:      argocd login $(minikube ip):30443 --username admin --insecure",
        f"    Argo CD syncs todo-root from {repo} @ {rev}: push your commits there.",
        "    Watch it:        kubectl -n argocd get applications -w",
    ]


def plan_env(tmp_path: Path) -> dict:
    return {"REPO_URL": REPO, "REVISION": BRANCH, "ENV_FILE": str(tmp_path / "no.env")}


# ------------------------------------------------------------------------------------------
# lint


def test_shell_scripts_are_shellcheck_clean():
    shellcheck = tool(VENV_BIN / "shellcheck")
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scripts").glob("*.sh")) + [".ci/run"]
    assert "scripts/bootstrap.sh" in scripts
    proc = subprocess.run([shellcheck, "-x", *scripts], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scripts_start_strict():
    for name in ("bootstrap.sh", "teardown.sh", "build-images.sh", "install-actionlint.sh"):
        text = (ROOT / "scripts" / name).read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), name
        assert re.search(r"^set -E?euo pipefail$", text, re.M), name


@pytest.mark.parametrize("app", APPS)
def test_dockerfiles_are_hadolint_clean(app):
    hadolint = tool(VENV_BIN / "hadolint")
    proc = subprocess.run([hadolint, "--no-color", f"images/{app}/Dockerfile"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_workflow_is_actionlint_clean():
    actionlint = tool(TOOLS_BIN / "actionlint")
    tool(VENV_BIN / "shellcheck")  # actionlint checks the run: scripts with it
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([actionlint, "-no-color", "-verbose", ".github/workflows/ci.yaml"], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Rule "shellcheck" was disabled' not in proc.stderr


def test_install_actionlint_is_stamped_and_idempotent():
    v = VERSIONS
    assert re.fullmatch(r"v\d+\.\d+\.\d+", v.get("ACTIONLINT_VERSION", "")), "versions needs ACTIONLINT_VERSION"
    stamp = ROOT / ".tools/stamps/actionlint"
    tool(TOOLS_BIN / "actionlint")
    assert stamp.read_text() == v["ACTIONLINT_VERSION"], "run make setup"
    proc = subprocess.run(["bash", "scripts/install-actionlint.sh"], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------
# bootstrap


def test_bootstrap_dry_run_prints_the_exact_plan_and_runs_nothing(tmp_path):
    path, fake_dir = fake_path(tmp_path)
    first = run_script("bootstrap.sh", "--dry-run", env={**plan_env(tmp_path), "FAKE_DIR": str(fake_dir)}, path=path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == expected_bootstrap_plan()
    # Only read-only queries reached the tools.
    assert mutating_calls(fake_dir) == []
    # DRY_RUN=1 is the same as --dry-run, and the plan is deterministic.
    second = run_script("bootstrap.sh", env={**plan_env(tmp_path), "FAKE_DIR": str(fake_dir)}, path=path, dry=True)
    assert second.returncode == 0 and second.stdout == first.stdout
    # Matching tool versions: the only warning is the missing .env.
    assert [line for line in first.stderr.splitlines() if "warning" in line] == [
        line for line in first.stderr.splitlines() if "no.env not found" in line]


def test_bootstrap_dry_run_plan_on_a_machine_without_the_tools(tmp_path):
    """This machine has no minikube: the plan still prints, in full, and exits 0."""
    path, _ = fake_path(tmp_path, fakes=())
    proc = run_script("bootstrap.sh", "--dry-run", env=plan_env(tmp_path), path=path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected_bootstrap_plan()
    for name in ("minikube", "kubectl", "helm"):
        assert any(line.startswith(f"bootstrap: warning: {name} not found") for line in proc.stderr.splitlines())


def test_make_bootstrap_dry_run(tmp_path):
    env = {**os.environ, **plan_env(tmp_path)}
    env.pop("DRY_RUN", None)
    proc = subprocess.run(["make", "--no-print-directory", "-f", "scripts/ops.mk", "bootstrap", "DRY_RUN=1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected_bootstrap_plan()
    # Command-line variables reach the script too.
    proc = subprocess.run(["make", "--no-print-directory", "-f", "scripts/ops.mk", "bootstrap", "DRY_RUN=1",
                           "REPO_URL=https://other.example.test/x.git", "REVISION=main"],
                          cwd=ROOT, env={k: v for k, v in env.items() if k not in ("REPO_URL", "REVISION")},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected_bootstrap_plan("https://other.example.test/x.git", "main")
    if re.search(r"^-?include scripts/ops\.mk", (ROOT / "Makefile").read_text(), re.M):
        proc = subprocess.run(["make", "--no-print-directory", "bootstrap", "DRY_RUN=1"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[-len(expected_bootstrap_plan()):] == expected_bootstrap_plan()


def test_ops_mk_alone_does_not_start_anything():
    proc = subprocess.run(["make", "--no-print-directory", "-f", "scripts/ops.mk"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "make bootstrap" in proc.stdout and "==>" not in proc.stdout


def test_bootstrap_missing_tool_is_one_line_naming_it(tmp_path):
    path, fake_dir = fake_path(tmp_path, fakes=("kubectl", "helm"))
    proc = run_script("bootstrap.sh", env={**plan_env(tmp_path), "FAKE_DIR": str(fake_dir)}, path=path)
    assert proc.returncode == 1
    errors = proc.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith("bootstrap: minikube not found"), proc.stderr
    assert "+ " not in proc.stdout
    assert mutating_calls(fake_dir) == []


def test_bootstrap_version_mismatch_fails_but_only_warns_in_a_dry_run(tmp_path):
    path, fake_dir = fake_path(tmp_path)
    env = {**plan_env(tmp_path), "FAKE_DIR": str(fake_dir), "FAKE_MINIKUBE_VERSION": "v1.36.0"}
    dry = run_script("bootstrap.sh", "--dry-run", env=env, path=path)
    assert dry.returncode == 0
    assert dry.stdout.splitlines() == expected_bootstrap_plan()
    assert "bootstrap: warning: minikube v1.36.0" in dry.stderr
    real = run_script("bootstrap.sh", env=env, path=path)
    assert real.returncode == 1
    assert real.stderr.startswith("bootstrap: minikube v1.36.0") and VERSIONS["MINIKUBE_VERSION"] in real.stderr
    assert mutating_calls(fake_dir) == []
    # kubectl must be within one minor version of the cluster.
    env = {**env, "FAKE_MINIKUBE_VERSION": VERSIONS["MINIKUBE_VERSION"], "FAKE_KUBECTL_VERSION": "v1.32.4"}
    real = run_script("bootstrap.sh", env=env, path=path)
    assert real.returncode == 1 and real.stderr.startswith("bootstrap: kubectl v1.32.4")


def write_env(tmp_path: Path, **values: str) -> Path:
    env_file = tmp_path / "dot.env"
    lines = ["# a comment", "", "UNRELATED_KEY=not-for-the-cluster"]
    lines += [f"{k}={v}" for k, v in values.items()]
    env_file.write_text("\n".join(lines) + "\n")
    return env_file


# Random per run, so a leak cannot hide behind a coincidence; one quoted, as .env files often are.
SECRET_VALUES = {key: f"v-{secrets.token_hex(12)}" for key in secret_keys()}
QUOTED_KEY = secret_keys()[0]
SECRET_VALUES[QUOTED_KEY] = f'"{SECRET_VALUES[QUOTED_KEY]}"'


def test_bootstrap_real_run_against_fake_tools(tmp_path):
    """The non-dry code path, end to end, with fakes standing in for minikube and the cluster."""
    path, fake_dir = fake_path(tmp_path)
    env_file = write_env(tmp_path, **SECRET_VALUES)
    proc = run_script("bootstrap.sh", env={**plan_env(tmp_path), "ENV_FILE": str(env_file),
                                           "FAKE_DIR": str(fake_dir)}, path=path)
    assert proc.returncode == 0, proc.stderr
    # The same plan as the dry run, with the real node address.
    plan = [line.replace("$(minikube ip)", "192.168.49.2") for line in expected_bootstrap_plan()]
    # The generated admin password is printed once, and nowhere else.
    out = proc.stdout.splitlines()
    (i,) = [n for n, line in enumerate(plan) if line.startswith("    admin password:")]
    password = out[i].removeprefix("    admin password:  ")
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", password), out[i]
    assert (proc.stdout + proc.stderr).count(password) == 1
    assert out[:i] + out[i + 1:] == plan[:i] + plan[i + 1:]
    # Every "+" line ran, in order: the fakes saw exactly those commands (the two sides of a pipe
    # run at once, so their order within a pipe is free).
    def norm(cmd: str) -> str:
        return re.sub(r"(--from-env-file=|--patch-file=|-f )(?:<tmp>|/)\S*", r"\1<tmp>", cmd.strip())

    groups = [[norm(part) for part in line[2:].split(" | ")]
              for line in plan if line.startswith("+ ") and not line.startswith("+ sed ")]
    seen = [norm(c) for c in mutating_calls(fake_dir)]
    assert len(seen) == sum(map(len, groups)), seen
    for group in groups:
        assert sorted(seen[: len(group)]) == sorted(group)
        seen = seen[len(group):]
    # The Secret got exactly the listed keys, unquoted; no value was ever printed.
    secret_env = (fake_dir / "secret.env").read_text().splitlines()
    assert secret_env == [f"{k}={v.strip(chr(34))}" for k, v in SECRET_VALUES.items()]
    for value in SECRET_VALUES.values():
        assert value.strip('"') not in proc.stdout + proc.stderr
    # The temporary files are gone.
    assert not Path((fake_dir / "secret.path").read_text().strip()).parent.exists()
    # The AppProjects and the root app point at the repo and branch being bootstrapped.
    projects = list(yaml.safe_load_all((fake_dir / "applied-projects.yaml").read_text()))
    assert {p["kind"] for p in projects} == {"AppProject"}
    assert all(p["spec"]["sourceRepos"] == ([] if p["metadata"]["name"] == "default" else [REPO])
               for p in projects)
    root = yaml.safe_load((fake_dir / "applied-root-app.yaml").read_text())
    assert root["spec"]["source"]["repoURL"] == REPO
    assert root["spec"]["source"]["targetRevision"] == BRANCH
    original = yaml.safe_load((ROOT / "argocd/root-app.yaml").read_text())
    root["spec"]["source"].update(repoURL=original["spec"]["source"]["repoURL"],
                                  targetRevision=original["spec"]["source"]["targetRevision"])
    assert root == original, "only repoURL and targetRevision may change"


def test_bootstrap_sets_the_admin_password_of_dotenv_and_never_prints_it(tmp_path):
    import bcrypt

    path, fake_dir = fake_path(tmp_path)
    password = f"pw-{secrets.token_hex(8)}"
    env_file = write_env(tmp_path, **SECRET_VALUES, ARGOCD_ADMIN_PASSWORD=password)
    proc = run_script("bootstrap.sh", env={**plan_env(tmp_path), "ENV_FILE": str(env_file),
                                           "FAKE_DIR": str(fake_dir)}, path=path)
    assert proc.returncode == 0, proc.stderr
    assert password not in proc.stdout + proc.stderr
    assert f"admin password:  ARGOCD_ADMIN_PASSWORD of {env_file}" in proc.stdout
    patch = json.loads((fake_dir / "admin-patch.json").read_text())["stringData"]
    assert bcrypt.checkpw(password.encode(), patch["admin.password"].encode())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", patch["admin.passwordMtime"])
    assert "kubectl -n argocd delete secret argocd-initial-admin-secret --ignore-not-found" in calls(fake_dir)
    # The Secret of the backend got its keys only, not the admin password.
    assert "ARGOCD_ADMIN_PASSWORD" not in (fake_dir / "secret.env").read_text()


def test_bootstrap_is_idempotent_on_a_running_cluster(tmp_path):
    path, fake_dir = fake_path(tmp_path)
    (fake_dir / "running").touch()
    env_file = write_env(tmp_path, **SECRET_VALUES)
    env = {**plan_env(tmp_path), "ENV_FILE": str(env_file), "FAKE_DIR": str(fake_dir)}
    for _ in range(2):
        proc = run_script("bootstrap.sh", env=env, path=path)
        assert proc.returncode == 0, proc.stderr
        assert "minikube is running: not started again" in proc.stdout
    assert not any(c.startswith("minikube start") for c in calls(fake_dir))
    # Every apply is declarative (apply / create --dry-run | apply): safe to repeat.
    for c in mutating_calls(fake_dir):
        assert c.startswith(("kubectl apply", "kubectl wait", "kubectl -n argocd rollout status",
                             "kubectl -n argocd patch secret argocd-secret",
                             "kubectl -n argocd delete secret argocd-initial-admin-secret --ignore-not-found")) or (
            c.startswith("kubectl create") and "--dry-run=client" in c), c


@pytest.mark.parametrize("broken", ["missing", "empty"])
def test_bootstrap_names_a_missing_secret_key_and_prints_no_value(tmp_path, broken):
    path, fake_dir = fake_path(tmp_path)
    values = dict(SECRET_VALUES)
    key = secret_keys()[-1]
    if broken == "missing":
        del values[key]
    else:
        values[key] = ""
    env_file = write_env(tmp_path, **values)
    proc = run_script("bootstrap.sh", env={**plan_env(tmp_path), "ENV_FILE": str(env_file),
                                           "FAKE_DIR": str(fake_dir)}, path=path)
    assert proc.returncode == 1
    assert f"must set {key}" in proc.stderr
    for value in SECRET_VALUES.values():
        assert value.strip('"') not in proc.stdout + proc.stderr
    # Checked before anything changed.
    assert mutating_calls(fake_dir) == []


def test_bootstrap_failure_names_the_step_and_what_to_check(tmp_path):
    path, fake_dir = fake_path(tmp_path)
    env_file = write_env(tmp_path, **SECRET_VALUES)
    proc = run_script("bootstrap.sh", env={**plan_env(tmp_path), "ENV_FILE": str(env_file), "FAKE_DIR": str(fake_dir),
                                           "FAKE_FAIL": "kubectl -n argocd rollout status deploy/argocd-repo-server"},
                      path=path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('bootstrap: step "wait for Argo CD" failed (exit 1).')
    assert "kubectl -n argocd get pods" in last
    assert not any("create secret" in c for c in calls(fake_dir))


def test_bootstrap_refuses_another_kube_context(tmp_path):
    path, fake_dir = fake_path(tmp_path)
    env_file = write_env(tmp_path, **SECRET_VALUES)
    proc = run_script("bootstrap.sh", env={**plan_env(tmp_path), "ENV_FILE": str(env_file), "FAKE_DIR": str(fake_dir),
                                           "FAKE_CONTEXT": "production"}, path=path)
    assert proc.returncode == 1
    assert "context 'production'" in proc.stderr
    assert not any(c.startswith(("kubectl apply", "kubectl create")) for c in calls(fake_dir))


def test_bootstrap_reads_repo_and_branch_from_git(tmp_path):
    repo = tmp_path / "clone"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".venv", ".tools", ".git", ".cache", "*.pyc"))
    (repo / ".venv").symlink_to(ROOT / ".venv")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.test"]
    subprocess.run([*git, "init", "-q", "-b", "topic/x"], check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://git.example.test/me/fork.git"], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("REPO_URL", "REVISION", "DRY_RUN")}
    proc = subprocess.run(["bash", "scripts/bootstrap.sh", "--dry-run"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "(https://git.example.test/me/fork.git @ topic/x)" in proc.stdout
    assert "\\1 topic/x|'" in proc.stdout


# ------------------------------------------------------------------------------------------
# teardown and images


def test_teardown_dry_run_plan(tmp_path):
    path, fake_dir = fake_path(tmp_path)
    proc = run_script("teardown.sh", "--dry-run", env={"FAKE_DIR": str(fake_dir)}, path=path)
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert commands == [
        "+ kubectl -n argocd delete application todo-root --ignore-not-found --wait=true --timeout=300s",
        "+ kubectl delete namespace todo --ignore-not-found --wait=true --timeout=300s",
        "+ kubectl delete -k argocd/ --ignore-not-found --wait=true --timeout=300s",
        "+ kubectl delete namespace argocd --ignore-not-found --wait=true --timeout=300s",
    ]
    assert "DELETE_CLUSTER=1" in proc.stdout
    proc = run_script("teardown.sh", "--dry-run", "--delete-cluster", env={"FAKE_DIR": str(fake_dir)}, path=path)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1] == "+ minikube delete"
    assert mutating_calls(fake_dir) == []
    proc = subprocess.run(["make", "--no-print-directory", "-f", "scripts/ops.mk", "teardown", "DRY_RUN=1",
                           "DELETE_CLUSTER=1"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "+ minikube delete"


def test_teardown_real_run_against_fake_tools(tmp_path):
    path, fake_dir = fake_path(tmp_path)
    (fake_dir / "running").touch()
    proc = run_script("teardown.sh", env={"FAKE_DIR": str(fake_dir)}, path=path)
    assert proc.returncode == 0, proc.stderr
    assert mutating_calls(fake_dir) == [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert not any(c.startswith("minikube delete") for c in calls(fake_dir))


def test_teardown_of_a_stopped_cluster_touches_nothing_inside_it(tmp_path):
    path, fake_dir = fake_path(tmp_path)
    proc = run_script("teardown.sh", env={"FAKE_DIR": str(fake_dir)}, path=path)
    assert proc.returncode == 0, proc.stderr
    assert "minikube is not running" in proc.stdout
    assert mutating_calls(fake_dir) == []
    proc = run_script("teardown.sh", "--delete-cluster", env={"FAKE_DIR": str(fake_dir)}, path=path)
    assert proc.returncode == 0, proc.stderr
    assert mutating_calls(fake_dir) == ["minikube delete"]


def test_build_images_dry_run_plan(tmp_path):
    path, fake_dir = fake_path(tmp_path, fakes=("minikube", "docker"))
    proc = run_script("build-images.sh", "--dry-run", env={"APP_SRC": "/src/todo-chatbot", "FAKE_DIR": str(fake_dir)},
                      path=path)
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stdout.splitlines() if line.startswith("+ ")]
    expected = ['+ eval "$(minikube docker-env)"']
    for app in APPS:
        expected += [f"+ docker build --tag {image_of(app)} --file images/{app}/Dockerfile /src/todo-chatbot/{app}",
                     f"+ docker image inspect --format '{{{{.Size}}}}' {image_of(app)}"]
    assert commands == expected
    assert mutating_calls(fake_dir) == []
    assert "latest" not in proc.stdout
    proc = subprocess.run(["make", "--no-print-directory", "-f", "scripts/ops.mk", "images", "DRY_RUN=1",
                           "APP_SRC=/src/todo-chatbot"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("+ ")] == expected


def test_build_images_checks_the_sources(tmp_path):
    path, fake_dir = fake_path(tmp_path, fakes=("minikube", "docker"))
    src = tmp_path / "phase3"
    (src / "backend/src").mkdir(parents=True)
    (src / "backend/src/main.py").write_text("app = None\n")
    (src / "backend/requirements.txt").write_text("fastapi\nuvicorn\n")
    (src / "frontend").mkdir()
    (src / "frontend/package.json").write_text("{}")
    (src / "frontend/package-lock.json").write_text("{}")
    (src / "frontend/next.config.mjs").write_text("export default {};\n")
    (fake_dir / "running").touch()
    proc = run_script("build-images.sh", env={"APP_SRC": str(src), "FAKE_DIR": str(fake_dir)}, path=path)
    assert proc.returncode == 1
    assert "output: 'standalone'" in proc.stderr
    assert not any(c.startswith("docker build") for c in calls(fake_dir))


# ------------------------------------------------------------------------------------------
# .env


def test_env_is_git_ignored_and_the_example_is_not():
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False).returncode == 0
    assert subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=ROOT, check=False).returncode == 1


def test_env_example_lists_the_secret_keys_with_empty_values():
    entries = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=value: {line!r}"
            entries[key.strip()] = value
    assert sorted(entries) == sorted(secret_keys())
    assert all(value == "" for value in entries.values()), "no sample values in .env.example"


# ------------------------------------------------------------------------------------------
# Dockerfiles (checked statically: there is no Docker engine here)


def dockerfile(app: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / f"images/{app}/Dockerfile").read_text()
    logical, current = [], ""
    for raw in text.splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.lstrip().startswith("#"):
            continue
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current.strip())
        current = ""
    out = []
    for line in logical:
        instr, _, rest = line.partition(" ")
        out.append((instr.upper(), rest.strip()))
    return out


def stages(app: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instr, args in dockerfile(app):
        if instr == "FROM":
            result.append([])
        if result:
            result[-1].append((instr, args))
    return result


def base_images(app: str) -> list[str]:
    args = {}
    for instr, rest in dockerfile(app):
        if instr == "ARG" and "=" in rest:
            k, _, v = rest.partition("=")
            args[k] = v
    images = []
    for stage in stages(app):
        ref = stage[0][1].split()[0]
        images.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), ref))
    return images


# Every base is pinned by digest: name:tag@sha256:<64 hex> (the tag for the reader, the digest pulled).
@pytest.mark.parametrize("app,pattern", [("frontend", r"node:22(?:\.\d+)*-alpine3\.\d+@sha256:[0-9a-f]{64}"),
                                         ("backend", r"python:3\.12(?:\.\d+)?-alpine3\.\d+@sha256:[0-9a-f]{64}")])
def test_dockerfile_is_multistage_alpine_pinned(app, pattern):
    images = base_images(app)
    assert len(images) >= 2, "multi-stage"
    for image in images:
        assert re.fullmatch(pattern, image), f"{image}: pin the base by digest (tag@sha256:...)"


@pytest.mark.parametrize("app", APPS)
def test_dockerfile_runs_as_uid_1001(app):
    final = stages(app)[-1]
    users = [args for instr, args in final if instr == "USER"]
    assert users, "the final stage sets USER"
    assert users[-1].split(":")[0] == "1001"
    assert any(instr == "RUN" and "adduser" in args and "-u 1001" in args for instr, args in final)
    # No instruction after USER switches back.
    after = final[[i for i, (instr, _) in enumerate(final) if instr == "USER"][-1]:]
    assert not any(instr == "USER" and args.split(":")[0] in ("0", "root") for instr, args in after)


@pytest.mark.parametrize("app", APPS)
def test_dockerfile_exposes_the_chart_container_port(app):
    exposes = [args for instr, args in stages(app)[-1] if instr == "EXPOSE"]
    assert exposes == [str(container_port(app))]


@pytest.mark.parametrize("app", APPS)
def test_dockerfile_healthcheck_hits_the_chart_liveness_path(app):
    checks = [args for instr, args in stages(app)[-1] if instr == "HEALTHCHECK"]
    assert len(checks) == 1
    url = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[^\s\"']*)", checks[0])
    assert url, checks[0]
    assert int(url.group(1)) == container_port(app)
    assert url.group(2) == liveness_path(app)
    assert "wget" in checks[0]


def test_backend_dockerfile_runs_uvicorn_on_all_interfaces_without_editable_install():
    final = stages("backend")[-1]
    cmd = [args for instr, args in final if instr == "CMD"]
    assert cmd, "CMD in the final stage"
    import json

    argv = json.loads(cmd[-1])
    assert argv[:2] == ["uvicorn", "src.main:app"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert int(argv[argv.index("--port") + 1]) == container_port("backend")
    for instr, args in final:
        assert not (instr == "RUN" and re.search(r"pip\b.*\binstall\b", args)), "no pip install at runtime"
    whole = (ROOT / "images/backend/Dockerfile").read_text()
    assert not re.search(r"pip[^\n]*install[^\n]*(\s-e\s|--editable)", whole)
    assert any(instr == "COPY" and "--from=build" in args and "/opt/venv" in args for instr, args in final)


def test_frontend_dockerfile_runs_the_nextjs_standalone_server():
    final = stages("frontend")[-1]
    copies = " ".join(args for instr, args in final if instr == "COPY")
    for path in (".next/standalone", ".next/static", "public"):
        assert path in copies
    import json

    cmd = [json.loads(args) for instr, args in final if instr == "CMD"]
    assert cmd == [["node", "server.js"]]
    env = " ".join(args for instr, args in final if instr == "ENV")
    assert f"PORT={container_port('frontend')}" in env and "HOSTNAME=0.0.0.0" in env


@pytest.mark.parametrize("app,must", [("frontend", ["**/node_modules", ".next", ".env", ".env.*", ".git"]),
                                      ("backend", [".venv", "**/__pycache__", ".env", ".env.*", ".git"])])
def test_dockerignore_keeps_secrets_and_build_output_out(app, must):
    ignore = (ROOT / f"images/{app}/Dockerfile.dockerignore").read_text().splitlines()
    for pattern in must:
        assert pattern in ignore


# ------------------------------------------------------------------------------------------
# compose and CI


def test_compose_runs_both_apps_with_the_same_dockerfiles():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"backend", "frontend"}
    for app in APPS:
        svc = services[app]
        dockerfile_path = svc["build"]["dockerfile"].replace("${PWD}/", "")
        assert (ROOT / dockerfile_path).is_file()
        assert svc["build"]["context"].endswith(f"/{app}")
        port = container_port(app)
        assert f"{port}:{port}" in svc["ports"]
        assert not svc["image"].endswith(":latest")
    assert services["backend"]["env_file"] == ".env"
    assert services["frontend"]["environment"]["BACKEND_URL"] == f"http://backend:{container_port('backend')}"
    assert services["frontend"]["depends_on"]["backend"]["condition"] == "service_healthy"


def test_ci_workflow_gates_prs():
    wf = yaml.safe_load((ROOT / ".github/workflows/ci.yaml").read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in on and on["push"]["branches"] == ["main"]
    # Pins and permissions: tests/test_hardening.py (supply chain).
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    uses = [s["uses"] for s in steps if "uses" in s]
    names = [u.split("@")[0] for u in uses]
    for action in ("actions/checkout", "actions/setup-python", "actions/setup-go", "actions/cache",
                   "github/codeql-action/upload-sarif"):
        assert action in names
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert str(python["with"]["python-version"]) == "3.11"
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == ".tools"
    runs = [s.get("run", "") for s in steps]
    order = [next(i for i, r in enumerate(runs) if needle in r)
             for needle in ("make test", "pre-commit run --all-files", "gitops-validate --format sarif > validator.sarif")]
    assert order == sorted(order)
    validate = steps[order[2]]
    assert not validate.get("continue-on-error", False)
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif"))
    assert "always()" in upload["if"] and upload["with"]["sarif_file"] == "validator.sarif"
    assert steps.index(upload) > order[2]
