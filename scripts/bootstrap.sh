#!/usr/bin/env bash
# make bootstrap: a minikube cluster running Argo CD, which then deploys this repository.
#
#   scripts/bootstrap.sh [--dry-run]      (DRY_RUN=1 is the same as --dry-run)
#
# Reads the cluster facts (Kubernetes version, capacity, externally provided Secrets and their
# keys) from clusters/minikube/cluster.yaml, the backend's secret values from .env (git-ignored;
# ENV_FILE overrides the path), the repository Argo CD syncs from from `git remote get-url origin`
# (REPO_URL overrides) and the revision from the current branch (REVISION overrides).
# The Argo CD admin password becomes ARGOCD_ADMIN_PASSWORD of .env, or (first run, when .env has
# none) a generated one printed once; argocd-initial-admin-secret is then deleted.
# Idempotent: every step can run again on a bootstrapped cluster. A dry run prints the plan, the
# exact commands in order, and runs none of them.
set -Eeuo pipefail

usage() { sed -n '2,13s/^# \{0,1\}//p' "$0"; }
for arg in "$@"; do
  case $arg in
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'bootstrap: unknown argument "%s" (try --help)\n' "$arg" >&2; exit 2 ;;
  esac
done

OPS_NAME=bootstrap
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

CLUSTER_DIR=clusters/minikube
ENV_FILE=${ENV_FILE:-$ROOT/.env}
ENV_EXAMPLE=$ROOT/.env.example
STEP_TOTAL=9
STEP="read the repository's facts"
STEP_HINT="Check clusters/minikube/cluster.yaml and argocd/root-app.yaml, and run make setup."

# ---------------------------------------------------------------------------------------------
# Facts of this repository, read once (never the secret values).
find_python
facts=$("$PYTHON" - "$CLUSTER_DIR" <<'PY'
import shlex
import sys
from pathlib import Path

import yaml

cluster_dir = Path(sys.argv[1])


def fail(msg):
    print(f"bootstrap: {msg}", file=sys.stderr)
    sys.exit(1)


def load(path):
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        fail(f"cannot read {path}: {e}")


def memory_mb(q):
    q = str(q).strip()
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
             "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for unit in sorted(units, key=len, reverse=True):
        if q.endswith(unit):
            return int(float(q[: -len(unit)]) * units[unit]) // 2**20
    return int(float(q)) // 2**20


def cpus(q):
    q = str(q).strip()
    n = int(q[:-1]) / 1000 if q.endswith("m") else float(q)
    if n != int(n) or n < 1:
        fail(f"capacity.cpu {q!r} in {cluster_dir}/cluster.yaml must be whole cores for minikube --cpus")
    return int(n)


out = {}
cluster = load(cluster_dir / "cluster.yaml")
try:
    out["K8S_VERSION"] = str(cluster["kubernetesVersion"])
    out["CPUS"] = cpus(cluster["capacity"]["cpu"])
    out["MEMORY_MB"] = memory_mb(cluster["capacity"]["memory"])
except (KeyError, TypeError, ValueError) as e:
    fail(f"{cluster_dir}/cluster.yaml needs kubernetesVersion and capacity.cpu/memory ({e!r})")
secrets = cluster.get("externalSecrets") or []
out["SECRETS"] = " ".join(f"{s['namespace']}/{s['name']}" for s in secrets)
for i, s in enumerate(secrets):
    out[f"SECRET_KEYS_{i}"] = " ".join(s.get("keys") or [])

root = load("argocd/root-app.yaml")
src = (root.get("spec") or {}).get("source") or {}
out["DEFAULT_REPO_URL"] = src.get("repoURL", "")
out["DEFAULT_REVISION"] = src.get("targetRevision", "")
out["ROOT_APP"] = (root.get("metadata") or {}).get("name", "todo-root")

# NodePorts: the Argo CD UI (argocd/ patch) and the frontend (minikube values, else the chart).
argo_port = 30443
for port in (load("argocd/patches/argocd-server-nodeport.yaml").get("spec") or {}).get("ports") or []:
    if port.get("name") == "https" and port.get("nodePort"):
        argo_port = port["nodePort"]
out["ARGOCD_PORT"] = argo_port
app_port = None
for values in (cluster_dir / "values/todo-frontend.yaml", Path("apps/todo-frontend/values.yaml")):
    if values.exists() and app_port is None:
        app_port = ((load(values).get("service") or {}).get("nodePort"))
out["APP_PORT"] = app_port or 30000

for key, value in out.items():
    print(f"{key}={shlex.quote(str(value))}")
PY
)
eval "$facts"

[ -n "$DEFAULT_REPO_URL" ] && [ -n "$DEFAULT_REVISION" ] ||
  die "argocd/root-app.yaml needs spec.source.repoURL and targetRevision (the bootstrap substitutes them)"
if [ "$K8S_VERSION" != "$KUBERNETES_VERSION" ]; then
  die "$CLUSTER_DIR/cluster.yaml says kubernetesVersion $K8S_VERSION but ./versions says KUBERNETES_VERSION=$KUBERNETES_VERSION: make them agree"
fi

# The keys of .env.example must cover every key the cluster expects (checked in every run).
env_keys() { sed -n 's/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}\([A-Za-z_][A-Za-z0-9_]*\)[[:space:]]*=.*/\2/p' "$1"; }
[ -f "$ENV_EXAMPLE" ] || die ".env.example is missing: it lists the keys .env must define"
i=0
for secret in $SECRETS; do
  keys_var=SECRET_KEYS_$i
  for key in ${!keys_var}; do
    env_keys "$ENV_EXAMPLE" | grep -qx "$key" ||
      die ".env.example lacks $key, which $CLUSTER_DIR/cluster.yaml expects in Secret $secret"
  done
  i=$((i + 1))
done

# Write the listed keys of .env into file $2 (mode 600). Fails naming the first missing or empty
# key (a key written ?KEY is optional: left out when unset); never prints a value. In a dry run $2
# is empty: only check names.
filter_env() {
  "$PYTHON" - "$ENV_FILE" "$1" "$2" <<'PY'
import os
import sys

env_file, keys, out = sys.argv[1], sys.argv[2].split(), sys.argv[3]
optional = {k[1:] for k in keys if k.startswith("?")}
keys = [k.lstrip("?") for k in keys]
values = {}
with open(env_file, encoding="utf-8") as f:
    for line in f:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
missing = [k for k in keys if not values.get(k) and k not in optional]
keys = [k for k in keys if values.get(k)]
if missing:
    print(f"bootstrap: {env_file} must set {missing[0]} (non-empty); "
          f"missing or empty: {', '.join(missing)}. Copy .env.example to .env and fill it in.",
          file=sys.stderr)
    sys.exit(1)
if out:
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for k in keys:
            f.write(f"{k}={values[k]}\n")
PY
}

# ---------------------------------------------------------------------------------------------
step "check tools" "Install the tool named above, then run make bootstrap again."
if need_tool minikube "install minikube $MINIKUBE_VERSION (https://minikube.sigs.k8s.io/docs/start/)"; then
  check_same_minor minikube "$(minikube_version)" "$MINIKUBE_VERSION"
fi
if need_tool kubectl "install kubectl ${KUBERNETES_VERSION%.*}.x (or: alias kubectl='minikube kubectl --')"; then
  check_kubectl_skew "$(kubectl_version)" "$KUBERNETES_VERSION"
fi
if need_tool helm "run make setup (it builds helm $HELM_VERSION into .tools/bin)"; then
  check_same_minor helm "$(helm_version)" "$HELM_VERSION"
fi
need_tool git "install git" || true
tools_checked

# Repository and revision Argo CD syncs from.
if [ -z "${REPO_URL:-}" ]; then
  REPO_URL=$(git -C "$ROOT" remote get-url origin 2>/dev/null || true)
fi
if [ -z "$REPO_URL" ]; then
  if is_dry; then
    warn "no git remote 'origin' and no REPO_URL: the plan shows $DEFAULT_REPO_URL"
    REPO_URL=$DEFAULT_REPO_URL
  else
    die "no git remote 'origin': set REPO_URL to the repository Argo CD should sync from"
  fi
fi
if [ -z "${REVISION:-}" ]; then
  REVISION=$(git -C "$ROOT" symbolic-ref --short -q HEAD 2>/dev/null || true)
fi
if [ -z "$REVISION" ]; then
  if is_dry; then
    warn "HEAD is detached and REVISION is not set: the plan shows $DEFAULT_REVISION"
    REVISION=$DEFAULT_REVISION
  else
    die "HEAD is detached: set REVISION to the branch Argo CD should track"
  fi
fi
# .env must be complete before anything changes (a dry run only warns; values are never read
# into the shell, let alone printed).
i=0
for secret in $SECRETS; do
  keys_var=SECRET_KEYS_$i
  if [ ! -f "$ENV_FILE" ]; then
    if is_dry; then
      warn "$ENV_FILE not found (a real run stops here): cp .env.example .env and fill in ${!keys_var}"
    else
      die "$ENV_FILE not found: cp .env.example .env and set ${!keys_var}"
    fi
  elif is_dry; then
    filter_env "${!keys_var}" "" 2>/dev/null ||
      warn "$ENV_FILE misses or leaves empty one of: ${!keys_var} (a real run stops here)"
  else
    filter_env "${!keys_var}" "" || exit 1
  fi
  i=$((i + 1))
done
case $REPO_URL in
  https://* | http://*) ;;
  *) warn "$REPO_URL is not an https URL: Argo CD needs credentials for it (argocd repo add), see docs/runbooks/troubleshooting.md" ;;
esac

# ---------------------------------------------------------------------------------------------
step "start minikube (skipped when it is already running)" \
  "Check 'minikube status' and 'minikube logs'; a cluster made with other settings may need 'minikube delete'."
if ! is_dry && minikube_running; then
  printf '    minikube is running: not started again\n'
else
  # Calico enforces NetworkPolicy (minikube's default CNI ignores it: the charts' policies would be decoration).
  run minikube start "--kubernetes-version=$K8S_VERSION" "--cpus=$CPUS" "--memory=$MEMORY_MB" --cni=calico --addons=ingress
fi

# ---------------------------------------------------------------------------------------------
step "create namespace argocd" "Check that kubectl talks to minikube: kubectl config current-context."
if ! is_dry; then check_kube_context; fi
apply_namespace() {
  show "kubectl create namespace $1 --dry-run=client -o yaml | kubectl apply -f -"
  if ! is_dry; then kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f -; fi
}
apply_namespace argocd

# ---------------------------------------------------------------------------------------------
step "install Argo CD $ARGOCD_VERSION" \
  "Check network access to the install manifest named in argocd/kustomization.yaml, and 'kubectl kustomize argocd/'."
install_cmd=(kubectl apply --server-side --force-conflicts -k argocd/)
crd_wait=(kubectl wait --for=condition=Established --timeout=60s
  crd/applications.argoproj.io crd/appprojects.argoproj.io)
if is_dry; then
  run "${install_cmd[@]}"
else
  show "${install_cmd[*]}"
  # The first apply on a new cluster creates the CRDs and the AppProjects together; when the
  # CRDs were not yet established, apply once more after they are.
  if ! "${install_cmd[@]}"; then
    printf '    retrying once the Argo CD CRDs are established\n'
    run "${crd_wait[@]}"
    run "${install_cmd[@]}"
  fi
fi
run "${crd_wait[@]}"

# ---------------------------------------------------------------------------------------------
step "wait for Argo CD" \
  "Look at 'kubectl -n argocd get pods' and 'kubectl -n argocd describe pod <name>' (image pulls, capacity)."
run kubectl -n argocd rollout status deploy/argocd-server --timeout=300s
run kubectl -n argocd rollout status deploy/argocd-repo-server --timeout=300s
run kubectl -n argocd rollout status statefulset/argocd-application-controller --timeout=300s

# ---------------------------------------------------------------------------------------------
step "create Secrets from .env (values are never printed)" \
  "Every key of .env.example must be set in .env; see docs/runbooks/rotate-secret.md."
workdir
i=0
for secret in $SECRETS; do
  ns=${secret%%/*}
  name=${secret#*/}
  keys_var=SECRET_KEYS_$i
  envfile=$WORK/$ns.$name.env
  if ! is_dry; then
    filter_env "${!keys_var}" "$envfile" || die "Secret $secret not created: fix $ENV_FILE as said above"
  fi
  apply_namespace "$ns"
  # Server-side apply: a client-side apply would copy every value into the Secret's
  # kubectl.kubernetes.io/last-applied-configuration annotation, readable by anyone who can read it.
  show "kubectl create secret generic $name --namespace=$ns --from-env-file=$envfile --dry-run=client -o yaml | kubectl apply --server-side --field-manager=bootstrap -f -"
  if ! is_dry; then
    kubectl create secret generic "$name" "--namespace=$ns" "--from-env-file=$envfile" \
      --dry-run=client -o yaml | kubectl apply --server-side --field-manager=bootstrap -f - >/dev/null
    rm -f "$envfile"
  fi
  i=$((i + 1))
done

# ---------------------------------------------------------------------------------------------
step "set the Argo CD admin password (values are never printed, but a generated one once)" \
  "Check 'kubectl -n argocd get secret argocd-secret'; docs/runbooks/deploy.md says how to log in."
# ARGOCD_ADMIN_PASSWORD of .env, else on the first run (the initial secret still exists) a new
# random one; on later runs without it in .env the password stays as it is.
ADMIN_PASSWORD_SOURCE=unchanged
password_file=$WORK/argocd-admin.env
patch_file=$WORK/argocd-admin-password.json
if [ -f "$ENV_FILE" ] && ! is_dry; then
  filter_env "?ARGOCD_ADMIN_PASSWORD" "$password_file" || exit 1
fi
if [ -s "$password_file" ]; then
  ADMIN_PASSWORD_SOURCE=dotenv
elif is_dry || kubectl -n argocd get secret argocd-initial-admin-secret >/dev/null 2>&1; then
  ADMIN_PASSWORD_SOURCE=generated
fi
if [ "$ADMIN_PASSWORD_SOURCE" != unchanged ]; then
  if ! is_dry; then
    # The bcrypt hash and the change time Argo CD reads from argocd-secret (its "reset the admin
    # password" FAQ); the hash is written to a file, never into a command line.
    "$PYTHON" - "$password_file" "$patch_file" <<'PY' || die "cannot hash the admin password: run make setup (bcrypt)"
import datetime
import json
import os
import secrets
import sys

import bcrypt

source, out = sys.argv[1], sys.argv[2]
password = ""
if os.path.exists(source):
    password = open(source, encoding="utf-8").read().strip().partition("=")[2]
generated = not password
if generated:
    password = secrets.token_urlsafe(18)
    with open(source, "w", encoding="utf-8") as f:
        f.write(f"ARGOCD_ADMIN_PASSWORD={password}\n")
digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w", encoding="utf-8") as f:
    json.dump({"stringData": {"admin.password": digest, "admin.passwordMtime": now}}, f)
PY
  fi
  run kubectl -n argocd patch secret argocd-secret --type=merge "--patch-file=$patch_file"
  run kubectl -n argocd delete secret argocd-initial-admin-secret --ignore-not-found
fi
if [ "$ADMIN_PASSWORD_SOURCE" = generated ] && ! is_dry; then
  GENERATED_PASSWORD=$(sed -n 's/^ARGOCD_ADMIN_PASSWORD=//p' "$password_file")
fi
rm -f "$password_file" "$patch_file"

# ---------------------------------------------------------------------------------------------
step "apply AppProjects and the root Application ($REPO_URL @ $REVISION)" \
  "Check REPO_URL/REVISION, then 'kubectl -n argocd get appprojects,applications' and the app's conditions in the UI."
url_from=$(sed_pattern "$DEFAULT_REPO_URL")
url_to=$(sed_replacement "$REPO_URL")
rev_to=$(sed_replacement "$REVISION")
render() {
  local file=$1 text=sed word
  shift
  for word in "$@"; do text+=" $(shell_word "$word")"; done
  show "$text argocd/$file > $WORK/$file"
  if ! is_dry; then sed "$@" "argocd/$file" >"$WORK/$file"; fi
}
render projects.yaml -e "s|$url_from|$url_to|g"
render root-app.yaml -e "s|$url_from|$url_to|g" -e "s|^\\(  *targetRevision:\\).*|\\1 $rev_to|"
if ! is_dry; then
  grep -qF "$REPO_URL" "$WORK/projects.yaml" "$WORK/root-app.yaml" ||
    die "could not substitute the repo URL into argocd/projects.yaml and argocd/root-app.yaml"
fi
run kubectl apply --server-side --force-conflicts -f "$WORK/projects.yaml" -f "$WORK/root-app.yaml"

# ---------------------------------------------------------------------------------------------
step "done" ""
if is_dry; then
  # shellcheck disable=SC2016  # printed for the reader to run
  ip='$(minikube ip)'
else
  ip=$(minikube ip)
fi
case $ADMIN_PASSWORD_SOURCE in
  dotenv) password_note="ARGOCD_ADMIN_PASSWORD of $ENV_FILE" ;;  # pragma: allowlist secret (a description)
  generated) password_note=${GENERATED_PASSWORD:-"(generated by the real run, printed here once)"} ;;
  *) password_note="unchanged (set by an earlier bootstrap; ARGOCD_ADMIN_PASSWORD in .env resets it)" ;;  # pragma: allowlist secret
esac
cat <<EOF
    Todo app:        http://$ip:$APP_PORT
    Argo CD UI:      https://$ip:$ARGOCD_PORT  (user: admin; a self-signed certificate: see docs/runbooks/deploy.md)
    admin password:  $password_note
    argocd CLI:      argocd login $ip:$ARGOCD_PORT --username admin --insecure
    Argo CD syncs $ROOT_APP from $REPO_URL @ $REVISION: push your commits there.
    Watch it:        kubectl -n argocd get applications -w
EOF
