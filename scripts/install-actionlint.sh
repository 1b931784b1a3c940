#!/usr/bin/env bash
# Build actionlint (ACTIONLINT_VERSION in ./versions) into .tools/bin with `go install`.
# A stamp (.tools/stamps/actionlint) holds the installed version: a second run installs nothing.
# Called by scripts/setup.sh; safe to run on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=/dev/null
. ./versions
if [ -z "${ACTIONLINT_VERSION:-}" ]; then
  echo "install-actionlint: ACTIONLINT_VERSION is not set in ./versions (add ACTIONLINT_VERSION=v1.7.12)" >&2
  exit 2
fi

BIN=$ROOT/.tools/bin
STAMP=$ROOT/.tools/stamps/actionlint
if [ -x "$BIN/actionlint" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$ACTIONLINT_VERSION" ]; then
  exit 0
fi
command -v go >/dev/null 2>&1 ||
  { echo "install-actionlint: 'go' not found: install Go 1.24 or newer" >&2; exit 2; }

mkdir -p "$BIN" "$(dirname "$STAMP")"
echo "setup: building actionlint $ACTIONLINT_VERSION (go install)"
GOBIN=$BIN CGO_ENABLED=0 go install -ldflags "-s -w" \
  "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
printf '%s' "$ACTIONLINT_VERSION" >"$STAMP"
