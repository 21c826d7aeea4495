# Switchboard. `make run` starts everything on an embedded JetStream;
# `make test` runs every test against real parts. Only Go and make are needed:
# modules and tools come through the Go module proxy.

GO          ?= go
BIN         := bin/switchboard
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS     := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Built from the Go module proxy when Debian's package cannot be installed
# (about 9 minutes and 3 GiB of module and build cache on 2 cores). Only DNS
# service discovery, which deploy/prometheus uses: the proxy refuses one
# module that the full set needs (hashicorp/nomad/api).
PROMETHEUS_MODULE := github.com/prometheus/prometheus@v0.316.0
PROMETHEUS_TAGS   := remove_all_sd,enable_dns_sd

# Benchmark knobs: make bench EVENTS=200000 FANOUT=2
EVENTS      ?= 100000
FANOUT      ?= 1
PAYLOAD     ?= 512
BENCH_FLAGS ?=

# The tests that kill things run a real nats-server binary: the version
# go.mod pins, installed into bin/ through the Go module proxy.
NATS_SERVER_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)

.PHONY: all build run test test-go test-deploy tools nats-server bench gobench fuzz lint fmt clean cgo attempt-size

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
## SQLite files, loopback HTTP, a real Prometheus, promtool, node,
## python3 and chromium (the portal), (internal/chaos) real nats-server
## and switchboard processes killed mid-flight, then the deploy/grafana
## module (a few minutes warm on 2 cores; cold, add the builds)
test: test-go test-deploy

test-go: cgo nats-server tools docs/examples/receiver-node/node_modules/standardwebhooks/package.json
	$(GO) test -count=1 -race -timeout 12m ./...

# deploy/grafana is a module of its own: the PromQL parser it needs brings
# the prometheus/prometheus module, which the binary has no use for.
test-deploy:
	cd deploy/grafana && $(GO) test -count=1 ./...

## tools: what the tests run besides Go: prometheus and promtool, sqlite3,
## openssl, node and npm, chromium and its fonts (the portal's browser
## test). Missing ones come from Debian's packages (apt-get, as root);
## without apt, prometheus and promtool are built from the Go module proxy
## into ./bin. Present ones are skipped. Debian's prometheus service
## is not started: policy-rc.d refuses it for the length of the install.
tools:
	@pkgs=""; \
	{ { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || { [ -x bin/prometheus ] && [ -x bin/promtool ]; }; } || pkgs="$$pkgs prometheus"; \
	command -v sqlite3 >/dev/null 2>&1 || pkgs="$$pkgs sqlite3"; \
	command -v openssl >/dev/null 2>&1 || pkgs="$$pkgs openssl"; \
	command -v node >/dev/null 2>&1 || pkgs="$$pkgs nodejs"; \
	command -v npm >/dev/null 2>&1 || pkgs="$$pkgs npm"; \
	command -v chromium >/dev/null 2>&1 || pkgs="$$pkgs chromium fonts-liberation"; \
	[ -z "$$pkgs" ] && exit 0; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "make tools: installing Debian's$$pkgs"; \
		policy=/usr/sbin/policy-rc.d; saved=""; \
		if [ -e $$policy ]; then saved=$$(mktemp); cp -p $$policy $$saved; fi; \
		printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 755 $$policy; \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null 2>&1 || \
		  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null; }; }; rc=$$?; \
		if [ -n "$$saved" ]; then mv $$saved $$policy; else rm -f $$policy; fi; \
		exit $$rc; \
	fi; \
	case "$$pkgs" in *prometheus*) \
		echo "make tools: no apt-get as root; building prometheus and promtool from $(PROMETHEUS_MODULE) into ./bin"; \
		GOBIN=$(CURDIR)/bin $(GO) install -tags $(PROMETHEUS_TAGS) $(subst @,/cmd/prometheus@,$(PROMETHEUS_MODULE)) $(subst @,/cmd/promtool@,$(PROMETHEUS_MODULE)) || exit 1;; \
	esac; \
	rest=$$(echo "$$pkgs" | sed 's/ prometheus//'); \
	if [ -n "$$rest" ]; then echo "make tools: install$$rest (Debian package names) and run make test again"; exit 1; fi

# The Node receiver of docs/receivers.md, with the standardwebhooks package
# from npm, pinned by its package-lock.json.
docs/examples/receiver-node/node_modules/standardwebhooks/package.json: docs/examples/receiver-node/package-lock.json | tools
	cd docs/examples/receiver-node && npm ci --no-audit --no-fund
	@touch $@

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

## fuzz: every fuzz target of every package, one after the other, each for
## FUZZTIME (make test runs their seed corpora only). A failing input is
## saved under the package's testdata/fuzz, which go test then replays.
FUZZTIME  ?= 10m
FUZZFLAGS ?=
fuzz: cgo
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg; \
		done; \
	done

## attempt-size: bytes one attempt takes in registry.db (docs/operations.md, Sizing)
attempt-size: cgo
	$(GO) test -run '^$$' -bench BenchmarkAttemptLogSize -benchtime 50000x ./registry/store/

## gobench: the packages' Go micro-benchmarks
gobench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd deploy/grafana && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
