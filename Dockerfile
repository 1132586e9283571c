# ringcache container image: one static binary on distroless, run as non-root.
#
#   docker build -t ringcache .
#   docker run --rm -p 8080:8080 -e RINGCACHE_ORIGIN=http://origin.example:9000 ringcache
#
# examples/ shows a three-node cluster with Docker Compose and a Kubernetes
# sidecar. examples/dockerfile_test.go checks this file and builds the
# binary with this file's own go build command, so keep that on one RUN line.

# --- build: the Go release go.mod asks for ---
FROM golang:1.26 AS build
WORKDIR /src
# Modules in their own layer: editing the source does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off: a static binary needing no libc, so it runs on an image without one.
# -trimpath and -s -w: no build paths or symbol tables in the image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ringcache ./cmd/ringcache

# --- runtime ---
# distroless/static rather than scratch: it already carries CA certificates
# (https:// origins), tzdata, /tmp and an /etc/passwd naming the nonroot user
# 65532, and still no shell or package manager. Pin it by digest in production.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ringcache /ringcache
USER 65532:65532
# proxy, admin (/healthz, /metrics, /cluster), serf gossip
EXPOSE 8080 8081 7946/tcp 7946/udp
# Loopback inside a container is reachable by no one, so the proxy takes
# every interface. The admin listener stays on loopback, where the
# HEALTHCHECK below still reaches it: its read-only endpoints need no token.
# To scrape /metrics or probe /healthz from outside (Kubernetes probes the
# pod IP), set RINGCACHE_ADMIN=0.0.0.0:8081 yourself, never publish the port,
# and set RINGCACHE_ADMIN_TOKEN for its write endpoints.
ENV RINGCACHE_LISTEN=0.0.0.0:8080 RINGCACHE_ADMIN=127.0.0.1:8081
# No shell or curl in the image: the binary probes its own admin /healthz
# (RINGCACHE_ADMIN, 503 while draining). Pass --url if admin is elsewhere.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/ringcache", "healthcheck"]
ENTRYPOINT ["/ringcache"]
CMD ["serve"]
