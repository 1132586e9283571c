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

# Everything CI runs: formatting, vet, all tests with the race detector, then
# again without it the tests the race detector makes meaningless (they skip
# themselves there): allocation pins (every *Allocs test), heap sizes, and
# ristretto's admission policy.
RACE_SKIPPED ?= Allocs|AllocSizeHeap|RistrettoPolicyRejects

test: vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -run '$(RACE_SKIPPED)' $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

vet:
	$(GO) vet $(PKGS)

# Micro-benchmarks of the hot paths (allocations per hit, store, rules).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Side by side with nginx and Varnish on this machine (installs them with
# apt-get when missing, so run as root): bench/results/<date>.md and .svg.
# BENCHFLAGS passes flags to the driver, e.g. BENCHFLAGS='-d 5s -rounds 3'.
bench: build
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/bench ./bench/cmd/bench
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/bench-loadgen ./bench/cmd/loadgen
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/bench-ceiling ./bench/cmd/ceiling
	./bin/bench $(BENCHFLAGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
