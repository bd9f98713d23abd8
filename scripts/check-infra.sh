#!/usr/bin/env bash
# Offline checks of infra/: the Terraform is formatted (tofu fmt), the Prometheus alert
# rules are valid (promtool check rules) and pass their unit tests (promtool test rules).
# The semantic checks of infra/ (health check, ingress, IAM, alarms, fluentd, names) are
# Go tests: go test ./internal/infracheck/
#
# Builds .cache/bin/tofu and .cache/bin/promtool from their tools modules (tools/tofu,
# tools/promtool) when missing or older than their go.mod/go.sum. A cold build of each
# takes several minutes on 2 cores; CI should cache .cache/bin.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="$root/.cache/bin"
mkdir -p "$bin"

# build NAME MODULE_DIR PACKAGE
build() {
  local name=$1 dir=$2 pkg=$3
  if [[ -x "$bin/$name" && ! "$dir/go.mod" -nt "$bin/$name" && ! "$dir/go.sum" -nt "$bin/$name" ]]; then
    return
  fi
  echo "check-infra: building $name from $dir (a cold build takes minutes)" >&2
  local start=$SECONDS
  (cd "$dir" && go build -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "check-infra: built $name in $((SECONDS - start)) s" >&2
}

build tofu tools/tofu github.com/opentofu/opentofu/cmd/tofu
build promtool tools/promtool github.com/prometheus/prometheus/cmd/promtool

# fmt needs no CLI configuration; do not let a missing one print warnings.
if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -e "$TF_CLI_CONFIG_FILE" ]]; then
  export TF_CLI_CONFIG_FILE=/dev/null
fi

echo "== tofu fmt -check -recursive infra/"
"$bin/tofu" fmt -check -recursive -diff infra/

echo "== promtool check rules infra/prometheus/alerts.yml"
"$bin/promtool" check rules infra/prometheus/alerts.yml

echo "== promtool test rules infra/prometheus/alerts_test.yml"
"$bin/promtool" test rules infra/prometheus/alerts_test.yml

echo "check-infra: OK"
