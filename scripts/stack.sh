#!/usr/bin/env bash
# The local stack of real servers that the demo, the tests and CI run against:
#
#   ferretdb   MongoDB wire protocol (embedded FerretDB, SQLite)   127.0.0.1:$STACK_MONGO_PORT (27017)
#   seaweedfs  S3 + STS (AssumeRole) + IAM policies (weed mini)     127.0.0.1:$STACK_S3_PORT    (8333)
#   sqs        SQS, AWS JSON 1.0 protocol (local-aws-sqs, Node.js)  127.0.0.1:$STACK_SQS_PORT   (9324)
#   toxiproxy  TCP fault injection (Toxiproxy v2.5.0), HTTP API     127.0.0.1:$STACK_TOXIPROXY_PORT (8474)
#              It starts with no proxies: each test or chaos campaign creates its own
#              (internal/stacktest/toxi.go) in front of the servers above and deletes them.
#
# Usage: scripts/stack.sh start|stop|status|restart|clean
#
#   start    builds the servers if missing (scripts/build-tools.sh), starts each
#            one that is not already running from our pidfile, waits until each
#            answers, provisions buckets and queues (go run ./tools/devstack
#            provision) and writes .stack/env. Idempotent.
#   stop     ends exactly the processes start started (SIGTERM, then SIGKILL
#            after $STACK_STOP_GRACE seconds).
#   status   prints each server up or down; exits 1 unless all are up.
#   restart  stop, then start.
#   clean    stop, then delete .stack/ (all data, logs and generated keys).
#
# Everything binds 127.0.0.1 only. Logs, data, pidfiles and the rendered
# SeaweedFS configs live under .stack/ (git-ignored). Credentials are made up
# at start: each time SeaweedFS starts it gets new random access keys and a new
# STS signing key (kept in .stack/secrets.env while it runs).
#
# .stack/env holds KEY=VALUE lines (no quotes, no `export`) for bash
# (`set -a; . .stack/env; set +a`) and for Go tests: MONGO_URI, AWS_* (the
# worker identity), STACK_ADMIN_* (admin identity), EXPORT_QUEUE_URL,
# TOXIPROXY_URL (the Toxiproxy API), ...
# It is written last, so its presence means the stack was up and provisioned.
#
# Settings (environment):
#   STACK_MONGO_PORT=27017  STACK_S3_PORT=8333  STACK_SQS_PORT=9324
#   STACK_TOXIPROXY_PORT=8474  the Toxiproxy API (its proxies listen on ports of their own)
#   STACK_TOXIPROXY_LOG_LEVEL=warn  info logs every connection through every proxy
#   STACK_WEED_PORT_BASE=19330  weed mini's internal ports: master BASE, volume
#                           BASE+1, filer BASE+2, admin BASE+4, each gRPC +10000,
#                           S3 gRPC BASE+10003. All are passed explicitly: weed mini
#                           silently moves a *default* port that is taken, but
#                           fails on an explicit one, which is what we want.
#   STACK_STS_TOKEN_DURATION=1h    STS session length when the caller sends no
#                           DurationSeconds (Go duration syntax: 30s, 15m, 1h).
#   STACK_STS_MAX_SESSION_LENGTH   cap on any session, whatever DurationSeconds
#                           the caller asks for. Defaults to STACK_STS_TOKEN_DURATION
#                           when that is set, else 12h. SDK credential providers
#                           (stscreds) always send DurationSeconds (900 at least),
#                           so a session shorter than 15 min needs this cap.
#   STACK_VISIBILITY_TIMEOUT=60    jobs queue VisibilityTimeout (seconds)
#   STACK_READY_TIMEOUT=120 seconds to wait for each server to answer
#   STACK_PROVISION_TIMEOUT=60s    how long provisioning retries while servers settle
#   STACK_STOP_GRACE=10     seconds between SIGTERM and SIGKILL on stop
#   STACK_FERRETDB_LOG_LEVEL=error  FerretDB logs every failed command (a duplicate
#                           key, the driver's endSessions on each disconnect) at
#                           warn, with the whole message: use warn or debug to debug.
#   STACK_MIN_FREE_GB=4     start refuses to go on with less free disk than this under
#                           .stack/data: a full disk makes SeaweedFS answer every
#                           write with 500 InternalError (its log says "no space left
#                           on device"), which looks like anything but a full disk.
# Changing a port or an STS setting takes a stop first: start refuses to go on
# when a running server was started with other settings.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="$ROOT/.stack"
RUN_DIR="$STACK_DIR/run"
LOG_DIR="$STACK_DIR/logs"
DATA_DIR="$STACK_DIR/data"
BIN_DIR="$ROOT/.cache/bin"
HOST=127.0.0.1

MONGO_PORT="${STACK_MONGO_PORT:-27017}"
S3_PORT="${STACK_S3_PORT:-8333}"
SQS_PORT="${STACK_SQS_PORT:-9324}"
TOXIPROXY_PORT="${STACK_TOXIPROXY_PORT:-8474}"
TOXIPROXY_LOG_LEVEL="${STACK_TOXIPROXY_LOG_LEVEL:-warn}"
WEED_PORT_BASE="${STACK_WEED_PORT_BASE:-19330}"
STS_TOKEN_DURATION="${STACK_STS_TOKEN_DURATION:-1h}"
STS_MAX_SESSION_LENGTH="${STACK_STS_MAX_SESSION_LENGTH:-${STACK_STS_TOKEN_DURATION:-12h}}"
VISIBILITY_TIMEOUT="${STACK_VISIBILITY_TIMEOUT:-60}"
READY_TIMEOUT="${STACK_READY_TIMEOUT:-120}"
STOP_GRACE="${STACK_STOP_GRACE:-10}"
FERRETDB_LOG_LEVEL="${STACK_FERRETDB_LOG_LEVEL:-error}"
MIN_FREE_GB="${STACK_MIN_FREE_GB:-4}"

SERVICES=(ferretdb seaweedfs sqs toxiproxy)

# weed mini's internal ports, all passed explicitly (see above).
WEED_MASTER_PORT=$((WEED_PORT_BASE + 0))
WEED_VOLUME_PORT=$((WEED_PORT_BASE + 1))
WEED_FILER_PORT=$((WEED_PORT_BASE + 2))
WEED_ADMIN_PORT=$((WEED_PORT_BASE + 4))
WEED_S3_GRPC_PORT=$((WEED_PORT_BASE + 10003))

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

check_settings() {
  local p
  for p in MONGO_PORT S3_PORT SQS_PORT TOXIPROXY_PORT WEED_PORT_BASE VISIBILITY_TIMEOUT READY_TIMEOUT STOP_GRACE; do
    [[ "${!p}" =~ ^[0-9]+$ ]] || die "STACK_$p=${!p} is not a number"
  done
  for p in MONGO_PORT S3_PORT SQS_PORT TOXIPROXY_PORT; do
    (( ${!p} > 0 && ${!p} < 65536 )) || die "STACK_$p=${!p} is not a port"
  done
  (( WEED_PORT_BASE > 0 && WEED_PORT_BASE + 10004 < 65536 )) || die "STACK_WEED_PORT_BASE=$WEED_PORT_BASE leaves no room for +10004"
  local d
  for d in STS_TOKEN_DURATION STS_MAX_SESSION_LENGTH; do
    [[ "${!d}" =~ ^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$ ]] || die "STACK_$d=${!d} is not a Go duration (e.g. 30s, 15m, 1h)"
    [[ "${!d}" =~ [1-9] ]] || die "STACK_$d=${!d} must be longer than zero"
  done
}

# --- processes --------------------------------------------------------------

pidfile() { echo "$RUN_DIR/$1.pid"; }

# The string that must appear in the command line of service $1's process; a
# pid from a pidfile that no longer runs this is someone else's and is left alone.
marker() {
  case $1 in
    ferretdb) echo "$BIN_DIR/ferretdb-local" ;;
    seaweedfs) echo "$BIN_DIR/weed" ;;
    sqs) echo "$ROOT/tools/sqs/server.mjs" ;;
    toxiproxy) echo "$BIN_DIR/toxiproxy" ;;
  esac
}

# running_pid NAME: prints the pid of our running NAME, or fails.
running_pid() {
  local f pid cmdline
  f="$(pidfile "$1")"
  [[ -f "$f" ]] || return 1
  pid="$(<"$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$(marker "$1")"* ]] || return 1
  # A zombie or exiting process does not count.
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
  echo "$pid"
}

# The settings a service was started with; start compares them with the
# current ones before it leaves a running server alone.
settings_of() {
  case $1 in
    ferretdb) echo "port=$MONGO_PORT" ;;
    seaweedfs) echo "port=$S3_PORT base=$WEED_PORT_BASE token=$STS_TOKEN_DURATION max=$STS_MAX_SESSION_LENGTH" ;;
    sqs) echo "port=$SQS_PORT" ;;
    toxiproxy) echo "port=$TOXIPROXY_PORT" ;;
  esac
}

port_free() { ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# launch NAME CMD...: starts CMD detached in its own session (so a terminal's
# Ctrl-C or hangup does not reach it), output appended to .stack/logs/NAME.log.
launch() {
  local name=$1; shift
  local f log_file
  f="$(pidfile "$name")"
  log_file="$LOG_DIR/$name.log"
  rm -f "$f"
  printf '\n=== %s: starting %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log_file"
  # The inner shell writes its own pid and then execs the server, so the pid in
  # the pidfile is the server's own.
  # 8>&-: the server must not inherit (and so hold) the lock of this script.
  # shellcheck disable=SC2016 # $$ and $@ are the inner shell's
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$f" "$@" >>"$log_file" 2>&1 </dev/null 8>&- &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s "$f" ]] && break
    sleep 0.1
  done
  [[ -s "$f" ]] || die "$name did not start; see $log_file"
  settings_of "$name" >"$RUN_DIR/$name.settings"
}

# wait_ready NAME CHECK_FUNCTION: polls until the check passes; fails with the
# log's tail if the process dies or the timeout passes.
wait_ready() {
  local name=$1 check=$2 log_file="$LOG_DIR/$1.log" start=$SECONDS
  while ! "$check"; do
    if ! running_pid "$name" >/dev/null; then
      tail -n 30 "$log_file" >&2 || true
      die "$name exited during start; see $log_file"
    fi
    if (( SECONDS - start >= READY_TIMEOUT )); then
      tail -n 30 "$log_file" >&2 || true
      die "$name did not become ready within ${READY_TIMEOUT}s (STACK_READY_TIMEOUT); see $log_file"
    fi
    sleep 0.25
  done
  log "$name ready ($((SECONDS - start))s)"
}

ready_ferretdb() { ! port_free "$MONGO_PORT"; }
ready_seaweedfs() { curl -fsS -o /dev/null --max-time 2 "http://$HOST:$S3_PORT/healthz" 2>/dev/null; }
ready_sqs() {
  curl -fsS -o /dev/null --max-time 2 -X POST \
    -H 'Content-Type: application/x-amz-json-1.0' -H 'X-Amz-Target: AmazonSQS.ListQueues' \
    -d '{}' "http://$HOST:$SQS_PORT/" 2>/dev/null
}
ready_toxiproxy() { curl -fsS -o /dev/null --max-time 2 "http://$HOST:$TOXIPROXY_PORT/version" 2>/dev/null; }

# --- credentials and SeaweedFS configs ---------------------------------------

rand_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# An access key id shaped like AWS's (20 upper-case characters).
rand_access_key() { printf 'AKIA%s' "$(rand_hex 8 | tr 'a-f' 'A-F')"; }
# A 40-character secret of letters and digits.
rand_secret() { head -c 30 /dev/urandom | base64 | tr '+/' 'xZ'; }

new_secrets() {
  local f="$STACK_DIR/secrets.env"
  (
    umask 077
    {
      echo "WORKER_ACCESS_KEY_ID=$(rand_access_key)"
      echo "WORKER_SECRET_ACCESS_KEY=$(rand_secret)"
      echo "ADMIN_ACCESS_KEY_ID=$(rand_access_key)"
      echo "ADMIN_SECRET_ACCESS_KEY=$(rand_secret)"
      echo "STS_SIGNING_KEY=$(head -c 32 /dev/urandom | base64)"
    } >"$f.tmp"
    mv -f "$f.tmp" "$f"
  )
}

load_secrets() {
  local f="$STACK_DIR/secrets.env"
  [[ -f "$f" ]] || die "seaweedfs runs but $f is gone, so its keys are unknown: run scripts/stack.sh stop, then start"
  # shellcheck disable=SC1090
  . "$f"
}

# render TEMPLATE OUT: fills in @NAME@ placeholders from the shell variables.
render() {
  local tmpl=$1 out=$2
  (
    umask 077
    sed -e "s|@WORKER_ACCESS_KEY_ID@|$WORKER_ACCESS_KEY_ID|g" \
      -e "s|@WORKER_SECRET_ACCESS_KEY@|$WORKER_SECRET_ACCESS_KEY|g" \
      -e "s|@ADMIN_ACCESS_KEY_ID@|$ADMIN_ACCESS_KEY_ID|g" \
      -e "s|@ADMIN_SECRET_ACCESS_KEY@|$ADMIN_SECRET_ACCESS_KEY|g" \
      -e "s|@STS_SIGNING_KEY@|$STS_SIGNING_KEY|g" \
      -e "s|@STS_TOKEN_DURATION@|$STS_TOKEN_DURATION|g" \
      -e "s|@STS_MAX_SESSION_LENGTH@|$STS_MAX_SESSION_LENGTH|g" \
      "$tmpl" >"$out"
  )
  if grep -q '@[A-Z_]*@' "$out"; then
    die "$out: unfilled placeholders: $(grep -o '@[A-Z_]*@' "$out" | sort -u | tr '\n' ' ')"
  fi
}

# --- start / stop / status ---------------------------------------------------

# already_running NAME: true (and says so) when our NAME runs with the current
# settings; dies when it runs with others.
already_running() {
  local name=$1 pid want have
  pid="$(running_pid "$name")" || return 1
  want="$(settings_of "$name")"
  have="$(cat "$RUN_DIR/$name.settings" 2>/dev/null || true)"
  if [[ "$have" != "$want" ]]; then
    die "$name (pid $pid) runs with settings [$have], not [$want]: run scripts/stack.sh stop first"
  fi
  log "$name already running (pid $pid)"
  return 0
}

require_free() {
  local name=$1 port
  shift
  for port in "$@"; do
    port_free "$port" || die "port $HOST:$port, needed by $name, is taken by another process (ss -ltnp | grep :$port)"
  done
}

ports_of() {
  case $1 in
    ferretdb) echo "$MONGO_PORT" ;;
    seaweedfs)
      echo "$S3_PORT" "$WEED_S3_GRPC_PORT" \
        "$WEED_MASTER_PORT" "$((WEED_MASTER_PORT + 10000))" \
        "$WEED_VOLUME_PORT" "$((WEED_VOLUME_PORT + 10000))" \
        "$WEED_FILER_PORT" "$((WEED_FILER_PORT + 10000))" \
        "$WEED_ADMIN_PORT" "$((WEED_ADMIN_PORT + 10000))"
      ;;
    sqs) echo "$SQS_PORT" ;;
    toxiproxy) echo "$TOXIPROXY_PORT" ;;
  esac
}

# Before starting anything: every port of every server that is not running yet
# must be free, so that a conflict leaves nothing half started.
preflight() {
  local name free_kb
  free_kb=$(df -Pk "$DATA_DIR" | awk 'NR == 2 { print $4 }')
  if ((free_kb < MIN_FREE_GB * 1024 * 1024)); then
    die "only $((free_kb / 1024)) MB free under $DATA_DIR (STACK_MIN_FREE_GB=$MIN_FREE_GB): SeaweedFS would answer writes with 500 InternalError once the disk fills; free some space (scripts/stack.sh clean deletes this stack's data)"
  fi
  for name in "${SERVICES[@]}"; do
    running_pid "$name" >/dev/null && continue
    # shellcheck disable=SC2046
    require_free "$name" $(ports_of "$name")
  done
}

start_ferretdb() {
  already_running ferretdb && return 0
  require_free ferretdb "$MONGO_PORT"
  mkdir -p "$DATA_DIR/ferretdb"
  launch ferretdb "$BIN_DIR/ferretdb-local" -listen "$HOST:$MONGO_PORT" -dir "$DATA_DIR/ferretdb" \
    -log-level "$FERRETDB_LOG_LEVEL"
}

start_seaweedfs() {
  if already_running seaweedfs; then
    load_secrets
    return 0
  fi
  # shellcheck disable=SC2046
  require_free seaweedfs $(ports_of seaweedfs)
  new_secrets
  load_secrets
  local conf="$STACK_DIR/seaweedfs"
  mkdir -p "$conf" "$DATA_DIR/seaweedfs" "$LOG_DIR/weed"
  render "$ROOT/dev/seaweedfs/identities.json.tmpl" "$conf/identities.json"
  render "$ROOT/dev/seaweedfs/iam.json.tmpl" "$conf/iam.json"
  # -logdir keeps glog's files out of /tmp. Extras weed mini would start by
  # default (WebDAV, Iceberg and Lance catalogs, the legacy admin port,
  # telemetry) are switched off.
  launch seaweedfs "$BIN_DIR/weed" -logdir="$LOG_DIR/weed" mini \
    -dir="$DATA_DIR/seaweedfs" \
    -ip="$HOST" -ip.bind="$HOST" \
    -admin.ui=false \
    -s3.port="$S3_PORT" -s3.port.grpc="$WEED_S3_GRPC_PORT" \
    -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$conf/identities.json" -s3.iam.config="$conf/iam.json" \
    -master.port="$WEED_MASTER_PORT" -master.port.grpc="$((WEED_MASTER_PORT + 10000))" \
    -volume.port="$WEED_VOLUME_PORT" -volume.port.grpc="$((WEED_VOLUME_PORT + 10000))" \
    -filer.port="$WEED_FILER_PORT" -filer.port.grpc="$((WEED_FILER_PORT + 10000))" \
    -admin.port="$WEED_ADMIN_PORT" -admin.port.grpc="$((WEED_ADMIN_PORT + 10000))" -admin.port.legacy=0 \
    -webdav=false \
    -master.telemetry=false
}

start_sqs() {
  already_running sqs && return 0
  require_free sqs "$SQS_PORT"
  # local-aws-sqs keeps queues in memory: they are provisioned again below.
  STACK_SQS_HOST="$HOST" launch sqs node "$ROOT/tools/sqs/server.mjs" "$SQS_PORT"
}

start_toxiproxy() {
  already_running toxiproxy && return 0
  require_free toxiproxy "$TOXIPROXY_PORT"
  # Toxiproxy keeps proxies in memory and starts with none: whoever needs one
  # creates it (internal/stacktest/toxi.go) and deletes it when done.
  LOG_LEVEL="$TOXIPROXY_LOG_LEVEL" launch toxiproxy "$BIN_DIR/toxiproxy" -host "$HOST" -port "$TOXIPROXY_PORT"
}

write_env() {
  local f="$STACK_DIR/env" queues
  rm -f "$f"
  # Provisioning needs the endpoints and the admin keys; it prints the queue URLs.
  export AWS_REGION=us-east-1
  export AWS_ENDPOINT_URL_S3="http://$HOST:$S3_PORT"
  export AWS_ENDPOINT_URL_SQS="http://$HOST:$SQS_PORT"
  export STACK_ADMIN_ACCESS_KEY_ID="$ADMIN_ACCESS_KEY_ID"
  export STACK_ADMIN_SECRET_ACCESS_KEY="$ADMIN_SECRET_ACCESS_KEY"
  export EXPORT_BUCKET=exports SFMC_BUCKET=sfmc-drop TMOL_BUCKET=tmol-drop
  export STACK_VISIBILITY_TIMEOUT="$VISIBILITY_TIMEOUT"
  # With these, provisioning also proves that STS and the roles work.
  export AWS_ENDPOINT_URL_STS="http://$HOST:$S3_PORT"
  export AWS_ACCESS_KEY_ID="$WORKER_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$WORKER_SECRET_ACCESS_KEY"
  export SFMC_ROLE_ARN=arn:aws:iam::222233334444:role/sfmc-export
  log "provisioning buckets and queues ..."
  (cd "$ROOT" && go build -o "$BIN_DIR/devstack" ./tools/devstack) || die "could not build tools/devstack"
  if ! queues="$("$BIN_DIR/devstack" provision)"; then
    # SeaweedFS keeps serving S3 when its IAM config does not load (STS then
    # answers 503); its errors say why.
    awk '/^=== /{n=0} /^E[0-9][0-9][0-9][0-9] /{last[n++]=$0} END{for(i=(n>5?n-5:0);i<n;i++)print last[i]}' \
      "$LOG_DIR/seaweedfs.log" >&2 || true
    die "provisioning failed (logs: $LOG_DIR)"
  fi
  (
    umask 077
    cat >"$f.tmp" <<EOF
MONGO_URI=mongodb://$HOST:$MONGO_PORT/
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
AWS_ENDPOINT_URL_S3=http://$HOST:$S3_PORT
AWS_ENDPOINT_URL_STS=http://$HOST:$S3_PORT
AWS_ENDPOINT_URL_SQS=http://$HOST:$SQS_PORT
AWS_ACCESS_KEY_ID=$WORKER_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$WORKER_SECRET_ACCESS_KEY
STACK_ADMIN_ACCESS_KEY_ID=$ADMIN_ACCESS_KEY_ID
STACK_ADMIN_SECRET_ACCESS_KEY=$ADMIN_SECRET_ACCESS_KEY
$queues
EXPORT_BUCKET=exports
SFMC_BUCKET=sfmc-drop
TMOL_BUCKET=tmol-drop
SFMC_ROLE_ARN=arn:aws:iam::222233334444:role/sfmc-export
TMOL_ROLE_ARN=arn:aws:iam::333344445555:role/tmol-export
FORBIDDEN_ROLE_ARN=arn:aws:iam::444455556666:role/forbidden-export
S3_FORCE_PATH_STYLE=true
STACK_STS_TOKEN_DURATION=$STS_TOKEN_DURATION
STACK_STS_MAX_SESSION_LENGTH=$STS_MAX_SESSION_LENGTH
STACK_VISIBILITY_TIMEOUT=$VISIBILITY_TIMEOUT
TOXIPROXY_URL=http://$HOST:$TOXIPROXY_PORT
EOF
    mv -f "$f.tmp" "$f"
  )
}

cmd_start() {
  check_settings
  local t0=$SECONDS
  command -v go >/dev/null || die "go is not on PATH"
  command -v node >/dev/null || die "node is not on PATH"
  mkdir -p "$RUN_DIR" "$LOG_DIR" "$DATA_DIR"
  "$ROOT/scripts/build-tools.sh"
  local t1=$SECONDS

  preflight
  # Start them all, then wait: weed mini takes the longest, the others start meanwhile.
  start_seaweedfs
  start_ferretdb
  start_sqs
  start_toxiproxy
  wait_ready ferretdb ready_ferretdb
  wait_ready sqs ready_sqs
  wait_ready toxiproxy ready_toxiproxy
  wait_ready seaweedfs ready_seaweedfs

  write_env
  log "stack up in $((SECONDS - t0))s (tools $((t1 - t0))s); settings in $STACK_DIR/env, logs in $LOG_DIR"
}

# stop_service NAME: SIGTERM, wait up to STOP_GRACE seconds, then SIGKILL.
stop_service() {
  local name=$1 pid i
  if ! pid="$(running_pid "$name")"; then
    rm -f "$(pidfile "$name")" "$RUN_DIR/$name.settings"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_GRACE * 10; i++)); do
    running_pid "$name" >/dev/null || break
    sleep 0.1
  done
  if running_pid "$name" >/dev/null; then
    log "$name did not stop within ${STOP_GRACE}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      running_pid "$name" >/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$(pidfile "$name")" "$RUN_DIR/$name.settings"
}

cmd_stop() {
  rm -f "$STACK_DIR/env"
  local name
  for name in toxiproxy sqs ferretdb seaweedfs; do
    stop_service "$name"
  done
  # The keys die with the server that used them.
  rm -f "$STACK_DIR/secrets.env" "$STACK_DIR/seaweedfs/identities.json" "$STACK_DIR/seaweedfs/iam.json"
}

cmd_status() {
  local name pid all_up=0
  for name in "${SERVICES[@]}"; do
    if pid="$(running_pid "$name")"; then
      printf '%-10s up    pid %-7s %s\n' "$name" "$pid" "$(cat "$RUN_DIR/$name.settings" 2>/dev/null || true)"
    else
      printf '%-10s down\n' "$name"
      all_up=1
    fi
  done
  return "$all_up"
}

# One start/stop at a time (a test run and the demo may both call start).
lock() {
  mkdir -p "$STACK_DIR"
  exec 8>"$STACK_DIR/.lock"
  if ! flock -n 8; then
    log "waiting for another scripts/stack.sh run to finish"
    flock 8
  fi
}

case "${1:-}" in
  start) lock; cmd_start ;;
  stop) lock; cmd_stop ;;
  status) cmd_status ;;
  restart) lock; cmd_stop; cmd_start ;;
  clean) lock; cmd_stop; rm -rf "$STACK_DIR" ;;
  *)
    echo "usage: $0 start|stop|status|restart|clean" >&2
    exit 2
    ;;
esac
