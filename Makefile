# vomosync: polling sync platform for VOMO integrations. `make help` lists targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export GOFLAGS ?= -buildvcs=false

MODULES := $(shell go list -m -f '{{.Dir}}' 2>/dev/null)
TOOL    := GOWORK=off go tool -modfile=$(CURDIR)/tools/go.mod
BIN     := $(CURDIR)/bin
SERVICES := poller processor reconciler vomosim console

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: generate
generate: ## Regenerate protobuf Go code with buf (pinned in tools/go.mod)
	cd proto && $(TOOL) buf lint && $(TOOL) buf generate

.PHONY: check-generated
check-generated: ## Fail when generated code is not what `make generate` produces
	@tmp=$$(mktemp -d); cp -r proto/. $$tmp/; \
	(cd $$tmp && sed -i 's|../tools/go.mod|$(CURDIR)/tools/go.mod|' buf.gen.yaml && $(TOOL) buf generate) && \
	if ! diff -r -q proto/events $$tmp/events; then echo "generated code is stale: run make generate"; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp; echo "generated code is current"

.PHONY: build
build: ## Build every service and syncctl into ./bin
	@mkdir -p $(BIN)
	@for s in $(SERVICES); do go build -o $(BIN)/$$s ./services/$$s/cmd/$$s || exit 1; done
	go build -o $(BIN)/syncctl ./cmd/syncctl

# gosec: every rule but G404 (math/rand only jitters retries), G104 (best-effort
# Close on read paths) and G115 (integer conversions of bounded values).
GOSEC_EXCLUDE := G404,G104,G115

.PHONY: lint
lint: ## go vet and gosec every module
	@for m in $(MODULES); do (cd $$m && go vet ./...) || exit 1; done
	@GOWORK=off go build -C tools -o $(BIN)/gosec github.com/securego/gosec/v2/cmd/gosec
	@for m in $(MODULES); do (cd $$m && $(BIN)/gosec -quiet -exclude=$(GOSEC_EXCLUDE) -exclude-generated -exclude-dir=testdata ./...) || exit 1; done

.PHONY: tidy
tidy: ## go mod tidy every module (and the tools module)
	@for m in $(MODULES) $(CURDIR)/tools; do (cd $$m && GOWORK=off go mod tidy) || exit 1; done

.PHONY: test
test: check-generated lint console-chromium test-go fuzz-short validate-deploy check-alerts ## Everything CI runs: generated code, vet + gosec, every Go test, manifests, alert rules

.PHONY: fuzz-short
fuzz-short: ## A short fuzz of the VOMO page decoder (every decoder for 10 minutes: make fuzz-long)
	cd pkg && go test -run '^$$' -fuzz FuzzDecodePage -fuzztime $(FUZZTIME) ./vomo/

# A count, not a duration: a time limit can end mid-input and report "context deadline exceeded".
FUZZTIME ?= 100000x

.PHONY: test-go
test-go: ## Every module's Go tests against real Postgres and an in-process JetStream
	@set -o pipefail; for m in $(MODULES); do echo "== $$m"; (cd $$m && go test -count=1 -timeout 15m ./...) || exit 1; done

.PHONY: bench
bench: ## Benchmarks with their figures (each prints what it measured; README lists the last results)
	cd services/vomosim && go test -run '^$$' -bench ListPage -benchtime 2s -cpu 1 ./sim/
	cd pkg && go test -run '^$$' -bench PublishDurability -benchtime 20000x ./messaging/
	cd services/processor && go run ./cmd/procbench -n $(BENCH_EVENTS) -cpuprofile ''
	cd services/poller && go run ./cmd/pollbench -customers $(BENCH_CUSTOMERS) -users $(BENCH_USERS) -budget-for $(BENCH_BUDGET_FOR)
	@for m in $(MODULES); do (cd $$m && go test -run '^$$' -bench 'Reconcil' -benchtime 1x ./... 2>/dev/null | grep -E '^Benchmark|/op') ; done; true

# Sizes of `make bench` (the issues' full sizes: BENCH_EVENTS=1000000 BENCH_CUSTOMERS=10000 BENCH_USERS=1000000 BENCH_BUDGET_FOR=2m).
BENCH_EVENTS ?= 200000
BENCH_CUSTOMERS ?= 1000
BENCH_USERS ?= 200000
BENCH_BUDGET_FOR ?= 1m

.PHONY: demo
demo: build ## Run the whole system locally for DEMO_FOR (default: until Ctrl-C)
	$(BIN)/syncctl demo

.PHONY: test-long
test-long: chaos-long fuzz-long ## The long profile: chaos suite at full size, then every decoder fuzzed FUZZ_LONG (10m) each

include pkg/fuzz.mk
include tests/chaos/chaos.mk
include deployments/deploy.mk
include deployments/observability.mk
include services/console/console.mk
