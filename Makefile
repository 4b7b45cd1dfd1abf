# offlane — run `make help` for the targets.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin/offlane
FUZZTIME ?= 5s
LONG_FUZZTIME ?= 2m
GOLANGCI_VERSION := v2.6.2
GOLANGCI := bin/golangci-lint

.PHONY: help deps build test test-unit test-lab test-kernel lint vet generate verify-generate fuzz fuzz-short bench demo demo-down clean

help: ## show this help
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps: ## install Debian packages and Go modules (idempotent, cheap when present)
	@bash deploy/install-deps.sh

build: ## build bin/offlane
	$(GO) build -trimpath -o $(BIN) ./cmd/offlane

# The kernel lab runs alone, after the rest: its qemu guest (TCG) holds a core for
# minutes, and the throughput checks of the other lab packages (QoS rates through
# iperf3) must not share the machine with it.
test: deps verify-generate lint ## everything CI runs: unit + lab tests (lab needs root) + short fuzzing
	$(GO) test -count=1 -timeout 45m $$($(GO) list ./... | grep -v '/test/kernellab$$')
	$(GO) test -count=1 -timeout 30m ./test/kernellab
	@$(MAKE) --no-print-directory fuzz-short

test-unit: ## unit tests only (no root, no OVS)
	OFFLANE_LAB=off $(GO) test -count=1 ./...

test-lab: deps ## privileged lab tests only (real OVS, netns VMs, DPDK); needs root
	$(GO) test -count=1 -timeout 45m -run 'Lab' ./...

test-kernel: deps ## kernel lab only: Debian's kernel under qemu runs the guest tests (TestKernel…); needs root
	$(GO) test -count=1 -timeout 30m -v -run '^TestLabKernel$$' ./test/kernellab

vet: ## go vet + gofmt check
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

$(GOLANGCI):
	GOBIN=$(CURDIR)/bin $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

lint: vet $(GOLANGCI) ## golangci-lint with the project's short list (.golangci.yml)
	$(GOLANGCI) run ./...

generate: ## regenerate generated code (libovsdb models from the committed schema)
	$(GO) generate ./...

verify-generate: ## fail if generated code drifts from its committed inputs
	@sum() { find . -path ./bin -prune -o -type f -name '*.go' -print0 | sort -z | xargs -0 sha256sum; }; \
	  before=$$(sum); $(GO) generate ./... || exit 1; after=$$(sum); \
	  if [ "$$before" != "$$after" ]; then diff <(echo "$$before") <(echo "$$after"); \
	    echo "generated code was out of date: 'make generate' rewrote the files above; commit them"; exit 1; fi

fuzz-short: ## run every fuzz target for FUZZTIME (default 5s)
	@bash test/fuzz.sh $(FUZZTIME)

fuzz: ## run every fuzz target for LONG_FUZZTIME (default 2m)
	@bash test/fuzz.sh $(LONG_FUZZTIME)

bench: deps ## benchmarks with their same-run baselines; results in bench-results/
	@mkdir -p bench-results
	$(GO) test -count=1 -run '^$$' -bench . -benchmem -timeout 60m ./... | tee bench-results/go-bench.txt

demo: deps build ## all-in-one: real OVS + offlane serve --agent + a sample NFV topology, checked with traffic; Ctrl-C ends it
	./$(BIN) detect
	bash deploy/demo.sh up

demo-down: ## remove a demo left running (from another shell)
	bash deploy/demo.sh down

clean: ## remove build outputs
	rm -rf bin bench-results
