#!/usr/bin/env bash
# The README's demo: start the local stack, seed fan registrations, create the indexes,
# enqueue one export job, run the worker until the export is in S3, show it, and stop what
# this script started (a stack that was already running is left running).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

stack_was_up=0
if scripts/stack.sh status >/dev/null 2>&1; then stack_was_up=1; fi

worker_pid=""
cleanup() {
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  if [ "$stack_was_up" = 0 ]; then
    say "stopping the local stack this demo started"
    scripts/stack.sh stop || true
  fi
}
trap cleanup EXIT

say "starting the local stack (FerretDB, SeaweedFS S3+STS, local-aws-sqs)"
scripts/stack.sh start
set -a; . .stack/env; set +a
export MONGO_DATABASE="${MONGO_DATABASE:-titan}"

say "building export-service"
scripts/build.sh

say "seeding fan registrations"
go run ./tools/demo seed -per-campaign "${DEMO_PER_CAMPAIGN:-1000}"

say "creating indexes (export-service indexes)"
bin/export-service indexes

say "enqueueing one export job"
key="$(go run ./tools/demo enqueue -campaign "${DEMO_CAMPAIGN:-cmp-coldplay-spheres}")"

say "running the worker until the export is in S3 (its JSON log: .stack/logs/demo-worker.log)"
export HTTP_ADDR="${DEMO_HTTP_ADDR:-127.0.0.1:8080}"
bin/export-service worker > .stack/logs/demo-worker.log 2>&1 &
worker_pid=$!
go run ./tools/demo show -key "$key" -wait 2m

say "worker health and metrics"
HEALTHCHECK_URL="http://$HTTP_ADDR/heartbeat" bin/export-service healthcheck
curl -fsS "http://$HTTP_ADDR/metrics" | grep -E '^export_(jobs_total|rows_total|bytes_written_total)' || true

say "worker log"
grep -E '"message":"export (started|succeeded)"' .stack/logs/demo-worker.log || cat .stack/logs/demo-worker.log
