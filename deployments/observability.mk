# Observability checks: alert rules (promtool), their unit tests, the check
# that rules and dashboards use only metrics the services export, and the
# proof against a running pipeline (traces in a real Jaeger, log fields).
# Included by the top-level Makefile. promtool and Jaeger are pinned in
# deployments/obs-tools (not in go.work); the first build takes minutes,
# later runs use the Go build cache.

OBS_TOOLS := $(CURDIR)/deployments/obs-tools
OBS_RULES := $(CURDIR)/deployments/prometheus/rules
OBS_GO    := GOWORK=off go

.PHONY: check-alerts jaeger-proof obs-tools

check-alerts: ## promtool check + unit-test the alert rules; rules and dashboards may use only exported metrics
	cd $(OBS_TOOLS) && $(OBS_GO) tool promtool check rules --lint=all --lint-fatal $(wildcard $(OBS_RULES)/*.yml)
	cd $(OBS_TOOLS) && $(OBS_GO) tool promtool test rules $(wildcard $(OBS_RULES)/tests/*.yml)
	cd $(OBS_TOOLS) && $(OBS_GO) test -count=1 ./obscheck/

jaeger-proof: ## Run a real sync with a real Jaeger: one trace holds poller publish + processor write; log lines match the database
	cd $(OBS_TOOLS) && $(OBS_GO) test -count=1 -timeout 15m -v -run TestObservedRun ./runproof/

obs-tools: ## Build promtool and Jaeger into the Go build cache (slow the first time)
	cd $(OBS_TOOLS) && $(OBS_GO) tool promtool --version >/dev/null
	cd $(OBS_TOOLS)/jaeger && $(OBS_GO) tool jaeger version >/dev/null
