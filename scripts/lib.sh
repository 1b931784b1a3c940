# shellcheck shell=bash
# Shared helpers of scripts/bootstrap.sh, scripts/teardown.sh and scripts/build-images.sh.
# Source it after `set -Eeuo pipefail` and after setting OPS_NAME; it is not meant to be run.
#
# Output contract (tests/test_ops.py relies on it):
#   stdout  the plan: "==> [i/n] step" headers, "+ command" lines (exactly what runs, in order,
#           temporary paths shown as <tmp>) and the closing summary. Deterministic in DRY_RUN.
#   stderr  warnings and errors, one line each, prefixed with "$OPS_NAME:".
# In DRY_RUN (DRY_RUN=1 or --dry-run) nothing is changed: only read-only queries run (tool
# versions, files of this repository), and every "+" line is printed instead of run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OPS_NAME=${OPS_NAME:-ops}
STEP="start"
STEP_HINT=""
STEP_NO=0
STEP_TOTAL=0
WORK=""

case "${DRY_RUN:-0}" in
  1 | true | yes | on) DRY_RUN=1 ;;
  "" | 0 | false | no | off) DRY_RUN=0 ;;
  *) printf '%s: DRY_RUN must be 1 or 0, got "%s"\n' "$OPS_NAME" "$DRY_RUN" >&2; exit 2 ;;
esac

# shellcheck source=/dev/null
. "$ROOT/versions"

is_dry() { [ "$DRY_RUN" = 1 ]; }
warn() { printf '%s: warning: %s\n' "$OPS_NAME" "$*" >&2; }
die() { printf '%s: %s\n' "$OPS_NAME" "$*" >&2; exit 1; }

# A failing command anywhere names the step it broke and what to look at.
on_err() {
  local rc=$?
  trap - ERR
  # In a command substitution or subshell the parent reports the failure.
  if [ "$BASH_SUBSHELL" -gt 0 ]; then exit "$rc"; fi
  printf '%s: step "%s" failed (exit %s). %s\n' "$OPS_NAME" "$STEP" "$rc" "$STEP_HINT" >&2
  exit "$rc"
}
trap on_err ERR

cleanup() { if [ -n "$WORK" ] && [ -d "$WORK" ]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT

# step NAME HINT: announce the next step; HINT is printed if any command of the step fails.
step() {
  STEP_NO=$((STEP_NO + 1))
  STEP=$1
  STEP_HINT=${2:-}
  printf '==> [%s/%s] %s\n' "$STEP_NO" "$STEP_TOTAL" "$STEP"
}

# A temporary directory (mode 700) for files the plan writes; shown as <tmp> in the plan.
workdir() {
  if [ -z "$WORK" ]; then
    if is_dry; then WORK="/nonexistent-dry-run"; else WORK=$(umask 077 && mktemp -d); fi
  fi
}

# Quote one word the way a reader can paste it back into a shell.
shell_word() {
  case $1 in
    "" | *[!A-Za-z0-9_./:=,@%+-]*) printf "'%s'" "${1//\'/\'\\\'\'}" ;;
    *) printf '%s' "$1" ;;
  esac
}

# show TEXT: print a command line of the plan (temporary paths as <tmp>).
show() {
  local text=$1
  if [ -n "$WORK" ]; then text=${text//"$WORK"/<tmp>}; fi
  printf '+ %s\n' "$text"
}

# run CMD ARG...: print the command, then run it unless this is a dry run.
run() {
  local text="" word
  for word in "$@"; do text+="${text:+ }$(shell_word "$word")"; done
  show "$text"
  if ! is_dry; then "$@"; fi
}

# A Python that can read YAML: the project's venv (make setup), else python3 with PyYAML.
PYTHON=""  # set by find_python, used by the sourcing script
# shellcheck disable=SC2034
find_python() {
  local py
  for py in "$ROOT/.venv/bin/python" "$(command -v python3 || true)"; do
    if [ -n "$py" ] && [ -x "$py" ] && "$py" -c 'import yaml' >/dev/null 2>&1; then
      PYTHON=$py
      return 0
    fi
  done
  die "no Python with PyYAML found: run make setup (it creates .venv)"
}

# Tool checks. need_tool NAME HINT: present, or a one-line error (a warning in a dry run).
MISSING_TOOLS=0
need_tool() {
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  if is_dry; then
    warn "$1 not found on PATH (a real run stops here): $2"
  else
    printf '%s: %s not found on PATH: %s\n' "$OPS_NAME" "$1" "$2" >&2
  fi
  MISSING_TOOLS=$((MISSING_TOOLS + 1))
  return 1
}
tools_checked() {
  if [ "$MISSING_TOOLS" -gt 0 ] && ! is_dry; then exit 1; fi
  return 0
}

# "v1.38.0" -> "1 38"
major_minor() {
  local v=${1#v}
  v=${v%%[-+]*}
  local major=${v%%.*} rest=${v#*.}
  printf '%s %s' "$major" "${rest%%.*}"
}

# version_mismatch TOOL FOUND MESSAGE: an error, or only a warning in a dry run.
version_mismatch() {
  if is_dry; then
    warn "$1 $2: $3"
  else
    die "$1 $2: $3"
  fi
}

# check_same_minor TOOL FOUND WANTED: major.minor must match (patch releases may differ).
check_same_minor() {
  local found wanted
  found=$(major_minor "$2")
  wanted=$(major_minor "$3")
  if [ "$found" != "$wanted" ]; then
    version_mismatch "$1" "$2" "version $3 is pinned in ./versions (same major.minor needed)"
  fi
}

# check_kubectl_skew FOUND CLUSTER: kubectl supports one minor version of skew with the server.
check_kubectl_skew() {
  local fmaj fmin cmaj cmin
  read -r fmaj fmin <<<"$(major_minor "$1")"
  read -r cmaj cmin <<<"$(major_minor "$2")"
  if [ "$fmaj" != "$cmaj" ] || [ $((fmin - cmin)) -gt 1 ] || [ $((cmin - fmin)) -gt 1 ]; then
    version_mismatch kubectl "$1" "the cluster runs Kubernetes $2; kubectl must be within one minor version of it"
  fi
}

minikube_version() { minikube version --short 2>/dev/null | head -n 1; }
kubectl_version() {
  kubectl version --client -o json 2>/dev/null |
    sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n 1
}
helm_version() { helm version --template '{{.Version}}' 2>/dev/null; }
# kubectl must point at the minikube cluster before anything is applied.
check_kube_context() {
  local want=${MINIKUBE_PROFILE:-minikube} ctx
  ctx=$(kubectl config current-context 2>/dev/null || true)
  [ "$ctx" = "$want" ] ||
    die "kubectl points at context '${ctx:-none}', not '$want': run 'kubectl config use-context $want' (or 'minikube update-context')"
}
minikube_running() {
  [ "$(minikube status --format '{{.Host}}' 2>/dev/null || true)" = "Running" ]
}

# Escape a string for the pattern / the replacement of a sed s|||.
sed_pattern() { printf '%s' "$1" | sed -e 's/[]|.*^$\\[]/\\&/g'; }
sed_replacement() { printf '%s' "$1" | sed -e 's/[|&\\]/\\&/g'; }
