#!/usr/bin/env bash
# Offline checks of infra/: the Terraform is formatted (tofu fmt), the Prometheus alert
# rules are valid (promtool check rules) and pass their unit tests (promtool test rules).
# With CHECK_INFRA_VALIDATE=1 (CI with network) also tofu validate, which needs the provider.
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

# tofu validate needs the AWS provider, which `tofu init` downloads from the registry: CI with
# network access sets CHECK_INFRA_VALIDATE=1. It runs on a copy, without a backend, so no
# state or lock is touched and no .terraform/ is left in the tree.
if [[ "${CHECK_INFRA_VALIDATE:-0}" == 1 ]]; then
  echo "== tofu init -backend=false && tofu validate (infra/terraform)"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  cp -r infra/terraform/. "$tmp/"
  rm -rf "$tmp/.terraform"
  (cd "$tmp" && "$bin/tofu" init -backend=false -input=false -no-color >/dev/null && "$bin/tofu" validate -no-color)
else
  echo "== tofu validate skipped (needs the provider registry; CHECK_INFRA_VALIDATE=1 runs it)"
fi

echo "== promtool check rules infra/prometheus/alerts.yml"
"$bin/promtool" check rules infra/prometheus/alerts.yml

echo "== promtool test rules infra/prometheus/alerts_test.yml"
"$bin/promtool" test rules infra/prometheus/alerts_test.yml

echo "check-infra: OK"
