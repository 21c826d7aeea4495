# Switchboard. `make run` starts everything on an embedded JetStream;
# `make test` runs every test against real parts. Only Go and make are needed:
# modules and tools come through the Go module proxy.

GO          ?= go
BIN         := bin/switchboard
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Benchmark knobs: make bench EVENTS=200000 FANOUT=2
EVENTS      ?= 100000
FANOUT      ?= 1
PAYLOAD     ?= 512
BENCH_FLAGS ?=

# The tests that kill things run a real nats-server binary: the version
# go.mod pins, installed into bin/ through the Go module proxy.
NATS_SERVER_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)

.PHONY: all build run test bench gobench lint fmt clean cgo nats-server

all: lint test

# The registry's SQLite driver (mattn/go-sqlite3) is cgo: say so plainly
# rather than let the build fail deep inside it.
cgo:
	@command -v $${CC:-gcc} >/dev/null 2>&1 || { echo "A C compiler is needed for SQLite (cgo): apt-get install gcc"; exit 1; }

build: cgo
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/switchboard

## run: build and start `switchboard serve` on the embedded JetStream (./data)
run: build
	./$(BIN) serve

## test: every test, under the race detector, against an embedded JetStream,
## SQLite files and loopback HTTP, and (internal/chaos) real nats-server and
## switchboard processes killed mid-flight (about 4 minutes cold on 2 cores)
test: cgo nats-server
	$(GO) test -count=1 -race -timeout 12m ./...

## nats-server: install bin/nats-server unless the pinned version is there
nats-server:
	@v='$(NATS_SERVER_VERSION)'; \
	if ! ./bin/nats-server --version 2>/dev/null | grep -qxF "nats-server: $$v"; then \
		echo "installing nats-server $$v into bin/"; \
		GOBIN='$(CURDIR)/bin' $(GO) install "github.com/nats-io/nats-server/v2@$$v"; \
	fi

## bench: end-to-end benchmark against the raw HTTP ceiling of this machine
bench: build
	./$(BIN) bench --events $(EVENTS) --fanout $(FANOUT) --payload-size $(PAYLOAD) $(BENCH_FLAGS)

## gobench: the packages' Go micro-benchmarks
gobench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
