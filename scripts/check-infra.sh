#!/usr/bin/env bash
# Offline checks of infra/: the Terraform is formatted (tofu fmt), the Prometheus alert
# rules are valid (promtool check rules) and pass their unit tests (promtool test rules).
# The semantic checks of infra/ (health check, ingress, IAM, alarms, fluentd, names) are
# Go tests: go test ./internal/infracheck/
#
# Builds .cache/bin/tofu and .cache/bin/promtool from their tools modules (tools/tofu,
# tools/promtool) through scripts/build-tools.sh, which reuses earlier builds.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="$root/.cache/bin"
mkdir -p "$bin"

scripts/build-tools.sh tofu promtool

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
