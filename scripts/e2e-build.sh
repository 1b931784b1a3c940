#!/usr/bin/env bash
# Builds the end-to-end harness's binaries from their Go modules (tests/e2e/modules/*):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and Argo CD.
# Each component is rebuilt only when its go.mod/go.sum, this script or Go change (a stamp per
# component), so a second `make e2e` starts at once. Redis comes from Debian's package
# (installed with apt-get when missing and running as root).
#
# Usage: scripts/e2e-build.sh [component...]     (into $E2E_HOME, default .tools/e2e)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=/dev/null
. "$ROOT/versions"
log() { printf 'e2e-build: %s\n' "$*" >&2; }

E2E_HOME="${E2E_HOME:-$ROOT/.tools/e2e}"
BIN="$E2E_HOME/bin"
STAMPS="$E2E_HOME/stamps"
MODULES="$ROOT/tests/e2e/modules"
mkdir -p "$BIN" "$STAMPS"
BUILD_DIRS=()
trap 'rm -rf "${BUILD_DIRS[@]}"' EXIT

# Static, cgo-free binaries, as upstream ships them; no VCS stamping (the module cache has none).
export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly"

kube_version="$KUBERNETES_VERSION"
kube_minor="$(echo "$kube_version" | cut -d. -f2)"
argocd_pkg=github.com/argoproj/argo-cd/v3/common

# component name -> ldflags (version strings the binaries report, as their own release builds set)
declare -A LDFLAGS=(
  [etcd]=""
  [kubernetes]="$(for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      printf -- '-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitTreeState=clean ' \
        "$p" "$kube_version" "$p" "$p" "$kube_minor" "$p"; done)"
  [kwok]=""
  [argocd]="-X $argocd_pkg.version=${ARGOCD_VERSION#v} -X $argocd_pkg.gitTag=$ARGOCD_VERSION -X $argocd_pkg.gitTreeState=clean"
)
# kwok's binary has no built-in behaviour: the stages kwokctl uses by default (node: initialize,
# heartbeat with a lease; pod: ready, complete, delete) are config, shipped in its module.
kwok_stages() {
  local src
  src="$(cd "$1" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
  mkdir -p "$E2E_HOME/kwok"
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    echo "---"
    cat "$src/$f.yaml"
  done >"$E2E_HOME/kwok/stages.yaml"
}

ensure_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing redis-server (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends redis-server >/dev/null; }
    return 0
  fi
  log "redis-server is missing: apt-get install redis-server (Argo CD's cache)"
  exit 2
}

build() {
  local name="$1" dir="$MODULES/$1" stamp="$STAMPS/$1"
  local want src
  want="$({ cat "$dir/go.mod" "$dir/go.sum" "${BASH_SOURCE[0]}"; go version; } | sha256sum | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  local start=$SECONDS out
  out="$(mktemp -d "$E2E_HOME/build.XXXXXX")"
  BUILD_DIRS+=("$out")
  log "building $name (new, or its go.mod, go.sum, Go or this script changed)"
  # `tool`: the programs the module's go.mod names in its tool lines.
  (cd "$dir" && go build -trimpath -ldflags "${LDFLAGS[$name]}" -o "$out/" tool)
  case "$name" in
    etcd) mv "$out/server" "$BIN/etcd" ;;
    argocd)
      mv "$out/cmd" "$BIN/argocd"
      # One binary, several programs: Argo CD picks the program from the name it runs under.
      for alias in argocd-server argocd-repo-server argocd-application-controller; do
        ln -sf argocd "$BIN/$alias"
      done
      # The helper scripts the argocd image puts beside the binary (its Dockerfile's COPY hack/...).
      src="$(cd "$dir" && go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)/hack"
      install -m 0755 "$src/git-verify-wrapper.sh" "$src/gpg-wrapper.sh" "$BIN/" ;;
    kwok) mv "$out/kwok" "$BIN/kwok"; kwok_stages "$dir" ;;
    *) mv "$out"/* "$BIN/" ;;
  esac
  echo "$want" >"$stamp"
  log "built $name in $((SECONDS - start)) s"
}

command -v openssl >/dev/null 2>&1 || { log "openssl is missing (the harness makes the cluster's certificates with it)"; exit 2; }
ensure_redis
components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(etcd kubernetes kwok argocd)
for name in "${components[@]}"; do
  build "$name"
done
log "ready: ${BIN#"$ROOT"/}"
