# sysobsd: `make run` and `make test` do all the set-up on Debian 12 (as root).
export PATH := /usr/local/go/bin:$(PATH)

GO        ?= go
BIN       := build/sysobsd
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
VERSIONPKG := github.com/prometheus/common/version
LDFLAGS   := -s -w -X $(VERSIONPKG).Version=$(VERSION) -X $(VERSIONPKG).Revision=$(REVISION) \
             -X $(VERSIONPKG).Branch=$(BRANCH) -X $(VERSIONPKG).BuildUser=sysobsd \
             -X $(VERSIONPKG).BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)
GOFILES   := $(shell find . -name '*.go' -not -path './build/*') go.mod go.sum \
             internal/loader/sysobsd_x86_bpfel.o internal/loader/sysobsd_arm64_bpfel.o internal/config/default.yml

.PHONY: all build run test deps deps-run check unit-test generate check-generate kernel-test bench bench-servers package dashboards fuzz-smoke clean

all: build

build: $(BIN)

# Static, no cgo: the committed BPF objects are embedded, no clang needed.
$(BIN): $(GOFILES)
	@mkdir -p build
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/sysobsd

# The daemon with its embedded defaults on :10190 (needs root or CAP_BPF+CAP_PERFMON).
run: deps-run build
	./$(BIN)

# Installs what the tests need, then runs every test (unit, real-BPF
# integration, end to end with promtool). As root; CI=true turns skips into failures.
test: deps check
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) fuzz-smoke

# A bounded run of every fuzz target (longer: FUZZTIME=1000000x make fuzz-smoke).
# A count, not a duration: Go 1.26's fuzzer can fail a target with "context
# deadline exceeded" when a duration ends while a starved worker is busy
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
FUZZTIME ?= 20000x
fuzz-smoke:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/config/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeLifecycle$$' -fuzztime $(FUZZTIME) ./internal/lifecycle/

# Style and static checks that need no root: gofmt, go vet, go.mod tidy,
# golangci-lint (.golangci.yml; pinned, built once from the module proxy
# into build/tools) and clang-format for the BPF C (bpf/.clang-format).
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := build/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)

check: $(GOLANGCI_LINT)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy and commit"; exit 1; }
	$(GOLANGCI_LINT) run ./...
	clang-format --dry-run -Werror bpf/*.c bpf/headers/sysobsd_vmlinux.h # byte_calls.h is generated

$(GOLANGCI_LINT):
	@mkdir -p build/tools
	GOBIN=$(abspath build/tools) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv build/tools/golangci-lint $@

unit-test:
	$(GO) test -count=1 ./internal/config/ ./internal/lifecycle/ ./internal/notable/ ./internal/syscalls/ ./internal/tally/ ./internal/metrics/

deps:
	scripts/install-deps.sh test

deps-run:
	scripts/install-deps.sh run

# Rebuild the BPF objects and their Go bindings (needs clang, llvm, libbpf-dev).
generate: deps
	$(GO) generate ./internal/loader/

# CI: the committed objects must be what `make generate` produces.
check-generate: generate
	@git diff --exit-code --stat -- internal/loader/ || \
	  { echo "committed BPF objects differ from 'make generate': run it and commit"; exit 1; }

# Boots Debian 11's 5.10 (must be refused in one line), 12's 6.1, 13's 6.12
# and 12's arm64 6.1 under qemu (TCG) and runs the BPF and exact-count tests
# there: verifier rejections on older kernels fail here. KERNELS picks some.
kernel-test:
	test/kernel/run.sh

# Overhead per syscall, side by side with the alternatives (docs/benchmarks.md).
bench: build
	bench/run.sh

# nginx (wrk) and PostgreSQL (pgbench) on loopback under each tracer, in
# paired rounds (docs/benchmarks.md, "Real servers"); about 25 minutes.
bench-servers: build
	bench/servers.sh

# A .deb with the binary, the systemd unit and the config (nfpm).
package: build
	$(GO) run ./deploy/package --version $(VERSION) --binary $(BIN) --out dist/

# Regenerates the Grafana dashboards (JSON in deploy/grafana/) from Go.
dashboards:
	$(GO) run ./deploy/grafana/generate --out deploy/grafana

clean:
	rm -rf build dist
