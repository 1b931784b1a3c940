#!/usr/bin/env bash
# make teardown: undo make bootstrap.
#
#   scripts/teardown.sh [--dry-run] [--delete-cluster]
#
# Deletes the root Application with cascade (its finalizer makes Argo CD delete the child
# Applications and everything they deployed), the namespace todo (with the Secret made from
# .env), Argo CD itself (argocd/ kustomization) and the namespace argocd. The minikube cluster
# stays unless --delete-cluster (make teardown DELETE_CLUSTER=1) is given.
# DRY_RUN=1 or --dry-run prints the plan and runs nothing.
set -Eeuo pipefail

usage() { sed -n '2,10s/^# \{0,1\}//p' "$0"; }
DELETE_CLUSTER=0
for arg in "$@"; do
  case $arg in
    --dry-run) DRY_RUN=1 ;;
    --delete-cluster) DELETE_CLUSTER=1 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'teardown: unknown argument "%s" (try --help)\n' "$arg" >&2; exit 2 ;;
  esac
done

OPS_NAME=teardown
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
STEP_TOTAL=5
ROOT_APP=$(sed -n 's/^  name: *//p' argocd/root-app.yaml | head -n 1)
ROOT_APP=${ROOT_APP:-todo-root}

step "check tools" "Install the tool named above, then run make teardown again."
need_tool minikube "install minikube $MINIKUBE_VERSION (https://minikube.sigs.k8s.io/docs/start/)" || true
need_tool kubectl "install kubectl ${KUBERNETES_VERSION%.*}.x" || true
tools_checked

in_cluster=1
if ! is_dry; then
  if minikube_running; then
    check_kube_context
  else
    in_cluster=0
    printf '    minikube is not running: nothing to delete inside the cluster\n'
  fi
fi

step "delete the root Application $ROOT_APP (cascade: child apps and what they deployed)" \
  "Look at 'kubectl -n argocd get applications' and the apps' conditions; a stuck finalizer is covered in docs/runbooks/troubleshooting.md."
if [ "$in_cluster" = 1 ]; then
  run kubectl -n argocd delete application "$ROOT_APP" --ignore-not-found --wait=true --timeout=300s
fi

step "delete namespace todo (the apps and the Secret made from .env)" \
  "Look at 'kubectl get namespace todo -o yaml' (status.conditions name what blocks the deletion)."
if [ "$in_cluster" = 1 ]; then
  run kubectl delete namespace todo --ignore-not-found --wait=true --timeout=300s
fi

step "uninstall Argo CD" \
  "Check network access to the install manifest named in argocd/kustomization.yaml; 'kubectl get applications -A' must list none."
if [ "$in_cluster" = 1 ]; then
  run kubectl delete -k argocd/ --ignore-not-found --wait=true --timeout=300s
  run kubectl delete namespace argocd --ignore-not-found --wait=true --timeout=300s
fi

step "delete the minikube cluster (only with --delete-cluster)" "Check 'minikube status' and 'minikube logs'."
if [ "$DELETE_CLUSTER" = 1 ]; then
  run minikube delete
else
  printf '    cluster kept; to delete it too: make teardown DELETE_CLUSTER=1 (or scripts/teardown.sh --delete-cluster)\n'
fi
