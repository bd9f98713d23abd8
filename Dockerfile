# syntax=docker/dockerfile:1
#
# export-service image: a static binary on distroless, running as nonroot.
#   docker build --build-arg VERSION=$(git describe --tags --always) -t vf-export:$VERSION .
# The binary is built with exactly the flags CI and the Taskfile use.
#
# Memory: the container is started with --memory (infra/terraform, vf-export.service).
# When GOMEMLIMIT is not set, export-service reads /sys/fs/cgroup/memory.max at start
# and sets its Go memory limit to 90% of it, so the garbage collector works harder
# before the kernel's OOM killer would. Set GOMEMLIMIT (e.g. -e GOMEMLIMIT=2700MiB)
# to override; without a --memory limit (memory.max is "max") no limit is set.
#
# Stopping: SIGTERM starts a drain of up to DRAIN_TIMEOUT (600 s), so stop with
# `docker stop -t 630` (or --stop-timeout 630 on docker run); the default 10 s
# would kill jobs in flight instead of releasing them.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/verifiedfan/export-service/internal/buildinfo.Version=${VERSION}" \
      -o /out/export-service ./cmd/export-service

FROM gcr.io/distroless/static-debian12:nonroot
# CA certificates and tzdata come with the base image; nothing else is in it (no shell).
COPY --from=build /out/export-service /export-service
USER nonroot:nonroot
EXPOSE 8080
# GET http://127.0.0.1:8080/heartbeat must answer 200. It answers 503 while draining
# or when the receive loop has stalled; a MongoDB or S3 outage does not fail it.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=2 \
  CMD ["/export-service", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/export-service"]
CMD ["worker"]
