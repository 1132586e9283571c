// Package examples holds no code of its own: it is the home of the tests of
// the container packaging, which need no Docker engine. They check the
// repository's Dockerfile (its structure, and that its own go build command
// gives a static binary), .dockerignore, and the Docker Compose and
// Kubernetes examples in compose/ and kubernetes/, whose settings go through
// the real configuration loader, and the Grafana dashboard and Prometheus
// rules in monitoring/, whose every metric must be on a live node. Where a check needs ringcache itself, it
// runs the binary built as the Dockerfile builds it, as the container would.
package examples
