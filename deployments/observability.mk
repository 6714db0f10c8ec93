# Observability checks: alert rules (promtool), their unit tests, and the
# check that rules and dashboards use only metrics the services export.
# Included by the top-level Makefile. promtool and Jaeger are pinned in
# deployments/obs-tools (not in go.work); the first build takes minutes,
# later runs use the Go build cache.

OBS_TOOLS := $(CURDIR)/deployments/obs-tools
OBS_RULES := $(CURDIR)/deployments/prometheus/rules
OBS_GO    := GOWORK=off go

.PHONY: check-alerts obs-tools

check-alerts: ## promtool check + unit-test the alert rules; rules and dashboards may use only exported metrics
	cd $(OBS_TOOLS) && $(OBS_GO) tool promtool check rules --lint=all --lint-fatal $(wildcard $(OBS_RULES)/*.yml)
	cd $(OBS_TOOLS) && $(OBS_GO) tool promtool test rules $(wildcard $(OBS_RULES)/tests/*.yml)
	cd $(OBS_TOOLS) && $(OBS_GO) test -count=1 ./...

obs-tools: ## Build promtool and Jaeger into the Go build cache (slow the first time)
	cd $(OBS_TOOLS) && $(OBS_GO) tool promtool --version >/dev/null
	cd $(OBS_TOOLS)/jaeger && $(OBS_GO) tool jaeger version >/dev/null
