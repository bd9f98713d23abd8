#!/usr/bin/env bash
# Builds the local stack's servers into .cache/bin/ (and installs the SQS
# server's npm dependencies) when they are missing or out of date:
#
#   .cache/bin/weed            SeaweedFS, from the tools/weed module (about 6 min cold on 2 cores)
#   .cache/bin/ferretdb-local  embedded FerretDB, from the tools/ferretdb module
#   .cache/bin/toxiproxy       Toxiproxy v2.5.0 (TCP fault injection), from the tools/toxiproxy module (about a minute)
#   tools/sqs/node_modules     local-aws-sqs, by `npm ci` from tools/sqs/package-lock.json
#   .cache/bin/tofu, promtool  only when named: scripts/build-tools.sh tofu promtool
#
# Usage: scripts/build-tools.sh [NAME...]   (default: the stack's weed, ferretdb-local, toxiproxy and npm)
#
# Built binaries are also kept in a per-user cache ($EXPORT_SERVICE_TOOL_CACHE, default
# ~/.cache/export-service-tools), keyed by the same stamp, so a fresh clone on the same machine
# (CI) copies them in seconds instead of building them for minutes.
#
# A binary counts as out of date when the go.mod/go.sum (or sources) of its
# tools module changed since it was built (a .stamp file beside it records
# that). STACK_REBUILD=1 rebuilds everything. Concurrent runs wait on a lock.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/.cache/bin"
TOOL_CACHE="${EXPORT_SERVICE_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/export-service-tools}"
mkdir -p "$BIN_DIR" "$TOOL_CACHE"

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
    fi
    if [[ "$(cat "$stamp_file")" == "$stamp" ]]; then
      keep_in_cache "$name" "$stamp" "$out"
      return 0
    fi
    log "$name: $dir changed since it was built; rebuilding"
  fi
  if [[ -x "$TOOL_CACHE/$name-$stamp" && "${STACK_REBUILD:-0}" != 1 ]]; then
    cp -f "$TOOL_CACHE/$name-$stamp" "$out.tmp" && mv -f "$out.tmp" "$out"
    echo "$stamp" >"$stamp_file"
    log "$name: reused the build in $TOOL_CACHE"
    return 0
  fi
  log "building $name ($pkg in ${dir#"$ROOT"/}) ..."
  local start=$SECONDS
  # Build to a temporary name so that an interrupted build never leaves a
  # half-written binary that a later run would take for a good one.
  (cd "$dir" && go build -o "$out.tmp" "$pkg")
  mv -f "$out.tmp" "$out"
  echo "$stamp" >"$stamp_file"
  keep_in_cache "$name" "$stamp" "$out"
  log "built $name in $((SECONDS - start))s"
}

# keep_in_cache NAME STAMP BINARY: copy a good build into the per-user cache.
keep_in_cache() {
  local dst="$TOOL_CACHE/$1-$2"
  [[ -x "$dst" ]] && return 0
  cp -f "$3" "$dst.tmp" && mv -f "$dst.tmp" "$dst" || true
}

# The version of SeaweedFS is the one tools/weed/go.mod requires (it carries
# the go-bip39 replace that SeaweedFS's own go.mod needs, so `go install` of
# SeaweedFS is refused and a tools module it is).
build_npm_sqs() {
  local dir="$ROOT/tools/sqs"
  if [[ ! -f "$dir/node_modules/local-aws-sqs/package.json" || "${STACK_REBUILD:-0}" == 1 ]]; then
    log "npm ci in tools/sqs ..."
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

[[ $# -gt 0 ]] || set -- weed ferretdb-local toxiproxy sqs
for tool in "$@"; do
  case "$tool" in
    weed) build_go weed "$ROOT/tools/weed" github.com/seaweedfs/seaweedfs/weed go.mod go.sum ;;
    ferretdb-local) build_go ferretdb-local "$ROOT/tools/ferretdb" . go.mod go.sum main.go ;;
    toxiproxy) build_go toxiproxy "$ROOT/tools/toxiproxy" github.com/Shopify/toxiproxy/v2/cmd/server go.mod go.sum ;;
    tofu) build_go tofu "$ROOT/tools/tofu" github.com/opentofu/opentofu/cmd/tofu go.mod go.sum ;;
    promtool) build_go promtool "$ROOT/tools/promtool" github.com/prometheus/prometheus/cmd/promtool go.mod go.sum ;;
    sqs) build_npm_sqs ;;
    *) log "unknown tool $tool"; exit 2 ;;
  esac
done
