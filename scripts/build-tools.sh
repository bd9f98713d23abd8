#!/usr/bin/env bash
# Builds the local stack's servers into .cache/bin/ (and installs the SQS
# server's npm dependencies) when they are missing or out of date:
#
#   .cache/bin/weed            SeaweedFS, from the tools/weed module (about 6 min cold on 2 cores)
#   .cache/bin/ferretdb-local  embedded FerretDB, from the tools/ferretdb module
#   tools/sqs/node_modules     local-aws-sqs, by `npm ci` from tools/sqs/package-lock.json
#
# A binary counts as out of date when the go.mod/go.sum (or sources) of its
# tools module changed since it was built (a .stamp file beside it records
# that). STACK_REBUILD=1 rebuilds everything. Concurrent runs wait on a lock.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/.cache/bin"
mkdir -p "$BIN_DIR"

log() { printf 'build-tools: %s\n' "$*" >&2; }

# One build at a time: two stack starts at once would otherwise build twice.
exec 9>"$ROOT/.cache/build-tools.lock"
if ! flock -n 9; then
  log "another build-tools run holds .cache/build-tools.lock; waiting for it"
  flock 9
fi

# stamp_of DIR FILE...: a hash of the files that decide what a tool builds.
stamp_of() {
  local dir=$1; shift
  (cd "$dir" && cat "$@" | sha256sum | cut -d' ' -f1)
}

# build_go NAME MODULE_DIR PACKAGE STAMP_FILES...
build_go() {
  local name=$1 dir=$2 pkg=$3; shift 3
  local out="$BIN_DIR/$name" stamp_file="$BIN_DIR/$name.stamp" stamp
  stamp="$(stamp_of "$dir" "$@")"
  if [[ -x "$out" && "${STACK_REBUILD:-0}" != 1 ]]; then
    if [[ ! -f "$stamp_file" ]]; then
      # Built by hand with the same command; adopt it.
      echo "$stamp" >"$stamp_file"
      return 0
    fi
    [[ "$(cat "$stamp_file")" == "$stamp" ]] && return 0
    log "$name: $dir changed since it was built; rebuilding"
  fi
  log "building $name ($pkg in ${dir#"$ROOT"/}) ..."
  local start=$SECONDS
  # Build to a temporary name so that an interrupted build never leaves a
  # half-written binary that a later run would take for a good one.
  (cd "$dir" && go build -o "$out.tmp" "$pkg")
  mv -f "$out.tmp" "$out"
  echo "$stamp" >"$stamp_file"
  log "built $name in $((SECONDS - start))s"
}

# The version of SeaweedFS is the one tools/weed/go.mod requires (it carries
# the go-bip39 replace that SeaweedFS's own go.mod needs, so `go install` of
# SeaweedFS is refused and a tools module it is).
build_go weed "$ROOT/tools/weed" github.com/seaweedfs/seaweedfs/weed go.mod go.sum
build_go ferretdb-local "$ROOT/tools/ferretdb" . go.mod go.sum main.go

SQS_DIR="$ROOT/tools/sqs"
if [[ ! -f "$SQS_DIR/node_modules/local-aws-sqs/package.json" || "${STACK_REBUILD:-0}" == 1 ]]; then
  log "npm ci in tools/sqs ..."
  (cd "$SQS_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
