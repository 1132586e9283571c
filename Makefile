# ringcache — see README.md.
GO      ?= go
PKGS    ?= ./...
BIN     ?= bin/ringcache

.PHONY: all build demo test test-short bench vet fmt lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/ringcache

# The quick start: a demo origin and a cache node on loopback.
demo: build
	./$(BIN) demo

# Everything CI runs: formatting, vet, then all tests with the race detector.
test: vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

vet:
	$(GO) vet $(PKGS)

# Micro-benchmarks of the hot paths (allocations per hit, store, rules).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
