#!/usr/bin/env bash
# Builds bin/export-service exactly as the Dockerfile does: static, trimmed paths, version stamped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSION="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/verifiedfan/export-service/internal/buildinfo.Version=${VERSION}" \
  -o bin/export-service ./cmd/export-service
echo "built bin/export-service ${VERSION}"
