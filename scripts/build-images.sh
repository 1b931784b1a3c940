#!/usr/bin/env bash
# make images APP_SRC=<Phase 3 checkout>: build todo-backend and todo-frontend into minikube.
#
#   APP_SRC=~/src/todo-chatbot scripts/build-images.sh [--dry-run]
#
# Sources: $APP_SRC/backend and $APP_SRC/frontend (BACKEND_SRC / FRONTEND_SRC override each).
# Dockerfiles: images/<app>/Dockerfile (+ Dockerfile.dockerignore). Image name and tag: image.repository
# and image.tag of clusters/minikube/values/todo-<app>.yaml, else the chart's values.yaml, else
# the chart's appVersion for the tag. The images are built by minikube's Docker daemon
# (eval "$(minikube docker-env)"), so the cluster has them without a registry; the charts use
# imagePullPolicy IfNotPresent. A new build needs a new tag: bump image.tag in a PR to deploy it.
# DRY_RUN=1 or --dry-run prints the plan and runs nothing.
set -Eeuo pipefail

usage() { sed -n '2,13s/^# \{0,1\}//p' "$0"; }
for arg in "$@"; do
  case $arg in
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'build-images: unknown argument "%s" (try --help)\n' "$arg" >&2; exit 2 ;;
  esac
done

OPS_NAME=build-images
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
STEP_TOTAL=4
# Plain indexed arrays (macOS still ships bash 3.2): APPS[i] goes with BUDGET_MB[i], IMAGE[i], SRC[i].
APPS=(backend frontend)
# Image size budgets (docs/architecture.md): a bigger image is reported, not rejected.
BUDGET_MB=(300 200)
IMAGE=()
SRC=()

# A problem a real run stops at; a dry run only warns so the plan still prints.
problem() { if is_dry; then warn "$* (a real run stops here)"; else die "$*"; fi; }

step "check tools" "Install the tool named above, then run make images again."
need_tool minikube "install minikube $MINIKUBE_VERSION (https://minikube.sigs.k8s.io/docs/start/)" || true
need_tool docker "install the Docker CLI (no engine needed: minikube's daemon builds the images)" || true
tools_checked

step "read image names and tags" "Set image.tag in clusters/minikube/values/todo-<app>.yaml (an immutable version, never latest)."
find_python
for i in "${!APPS[@]}"; do
  app=${APPS[$i]}
  IMAGE[i]=$("$PYTHON" - "todo-$app" <<'PY'
import sys
from pathlib import Path

import yaml

app = sys.argv[1]
repo = tag = None
for values in (Path(f"clusters/minikube/values/{app}.yaml"), Path(f"apps/{app}/values.yaml")):
    if values.exists():
        image = (yaml.safe_load(values.read_text()) or {}).get("image") or {}
        repo = repo or image.get("repository")
        tag = tag or image.get("tag")
chart = Path(f"apps/{app}/Chart.yaml")
if not tag and chart.exists():
    tag = (yaml.safe_load(chart.read_text()) or {}).get("appVersion")
if not tag or str(tag) == "latest":
    print(f"build-images: no immutable tag for {app}: set image.tag in "
          f"clusters/minikube/values/{app}.yaml (not latest)", file=sys.stderr)
    sys.exit(1)
print(f"{repo or app}:{tag}")
PY
)
  printf '    %s\n' "${IMAGE[i]}"
done

# Where the sources are, and what the Dockerfiles need from them.
upper() { printf '%s' "$1" | tr '[:lower:]' '[:upper:]'; }
for i in "${!APPS[@]}"; do
  app=${APPS[$i]}
  var=$(upper "$app")_SRC
  if [ -n "${!var:-}" ]; then
    SRC[i]=${!var}
  elif [ -n "${APP_SRC:-}" ]; then
    SRC[i]=${APP_SRC%/}/$app
  else
    problem "set APP_SRC to the Phase 3 checkout (or $var to the $app sources)"
    SRC[i]="<APP_SRC>/$app"
  fi
done
check_sources() {
  local b=${SRC[0]} f=${SRC[1]}
  [ -d "$b" ] || { problem "backend sources not found at $b"; return 0; }
  [ -f "$b/src/main.py" ] || problem "$b/src/main.py not found: the image runs uvicorn src.main:app"
  [ -f "$b/requirements.txt" ] || [ -f "$b/pyproject.toml" ] ||
    problem "$b has neither requirements.txt nor pyproject.toml: the image installs the backend's dependencies from one of them"
  [ -d "$f" ] || { problem "frontend sources not found at $f"; return 0; }
  [ -f "$f/package.json" ] && [ -f "$f/package-lock.json" ] ||
    problem "$f needs package.json and package-lock.json (the image runs npm ci)"
  grep -qs "standalone" "$f"/next.config.* ||
    problem "$f/next.config.* must set output: 'standalone' (the image runs node server.js from .next/standalone)"
}
if [ -n "${APP_SRC:-}${BACKEND_SRC:-}${FRONTEND_SRC:-}" ]; then check_sources; fi

step "use minikube's Docker daemon" "Start the cluster first (make bootstrap); 'minikube docker-env' needs the docker container runtime."
if ! is_dry && ! minikube_running; then die "minikube is not running: run make bootstrap first"; fi
# shellcheck disable=SC2016  # printed as the reader would type it
show 'eval "$(minikube docker-env)"'
if ! is_dry; then eval "$(minikube docker-env)"; fi

step "build images" "Read the docker build output above; docs/runbooks/troubleshooting.md covers the usual failures."
for i in "${!APPS[@]}"; do
  app=${APPS[$i]}
  run docker build --tag "${IMAGE[i]}" --file "images/$app/Dockerfile" "${SRC[i]}"
  show "docker image inspect --format '{{.Size}}' ${IMAGE[i]}"
  if ! is_dry; then
    size=$(docker image inspect --format '{{.Size}}' "${IMAGE[i]}")
    mb=$((size / 1000000))
    if [ "$mb" -gt "${BUDGET_MB[i]}" ]; then
      warn "${IMAGE[i]} is $mb MB, over its ${BUDGET_MB[i]} MB budget"
    else
      printf '    %s: %s MB (budget %s MB)\n' "${IMAGE[i]}" "$mb" "${BUDGET_MB[i]}"
    fi
  fi
done
printf '    deploy: the charts run these tags (clusters/minikube/values/todo-<app>.yaml image.tag); a new build needs a new tag there\n'
