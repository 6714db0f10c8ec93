# Chaos suite targets; the root Makefile includes this file.
# `make test` already runs the short profile once, as TestShortProfile in
# `make test-go`; these targets print the tables for people.

CHAOS_SEED ?= 1
CHAOS_SCENARIO ?=

.PHONY: chaos
chaos: ## Chaos suite, short profile (every short scenario, scaled down; about 6 min): tables per scenario, exit 1 on a violation
	cd tests/chaos && go run ./cmd/chaos -profile short -seed $(CHAOS_SEED) $(if $(CHAOS_SCENARIO),-scenario '$(CHAOS_SCENARIO)')

.PHONY: chaos-long
chaos-long: ## Chaos suite, long profile (4 customers x 50,000 users, every scenario; about an hour)
	cd tests/chaos && go run ./cmd/chaos -profile long -seed $(CHAOS_SEED) $(if $(CHAOS_SCENARIO),-scenario '$(CHAOS_SCENARIO)')
