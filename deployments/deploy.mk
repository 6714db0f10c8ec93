# Deployment targets: included by the top-level Makefile, or run alone from
# the repository root:   make -f deployments/deploy.mk validate-deploy
#
# Everything is validated without a Docker engine or a cluster, by the tools
# real pipelines run, pinned in deployments/tools/go.mod (built from the Go
# module proxy, nothing else is downloaded). The Kubernetes and CRD schemas
# kubeconform needs are generated offline from Go modules (k8s.io/kubernetes'
# OpenAPI document, KEDA's and the Prometheus Operator's CRDs).

DEPLOY_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
DEPLOY_ROOT := $(abspath $(DEPLOY_DIR)/..)
DEPLOY_OUT ?= $(DEPLOY_DIR)/.out

# The cluster version manifests are checked against, and the CRD sources.
K8S_VERSION ?= 1.36.3
KEDA_VERSION ?= v2.21.0
PROMETHEUS_OPERATOR_VERSION ?= v0.85.0
K8S_OVERLAYS ?= dev prod

DEPLOY_GO := GOWORK=off GOFLAGS='-mod=readonly -buildvcs=false' go
DEPLOY_TOOL := $(DEPLOY_GO) -C $(DEPLOY_DIR)/tools tool
DEPLOY_SCHEMAS := $(DEPLOY_OUT)/schemas
DEPLOY_SCHEMA_STAMP := $(DEPLOY_SCHEMAS)/.stamp-$(K8S_VERSION)-$(KEDA_VERSION)-$(PROMETHEUS_OPERATOR_VERSION)
# Directory of a module in the module cache, fetched through the Go proxy if absent.
deploy_moddir = $(shell cd $(DEPLOY_DIR)/tools && $(DEPLOY_GO) mod download -json $(1) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')

DOCKER ?= docker
IMAGE_PREFIX ?= vomosync
VERSION ?= $(shell git -C $(DEPLOY_ROOT) describe --tags --always --dirty 2>/dev/null || echo dev)
DOCKER_IMAGES := services/poller services/processor services/reconciler services/console services/vomosim cmd/syncctl

.PHONY: validate-deploy validate-compose validate-kubernetes validate-deploy-rules deploy-tools deploy-schemas render-kubernetes docker-images

validate-deploy: validate-compose validate-kubernetes validate-deploy-rules ## Validate docker-compose.yml, the k8s overlays (kustomize + kubeconform strict) and the deployment rules, offline
	@echo "validate-deploy: ok"

validate-compose: ## docker-compose.yml: compose-spec schema and references (compose-go, as `docker compose config`), health checks, depends_on, env contract
	@mkdir -p $(DEPLOY_OUT)
	@$(DEPLOY_TOOL) composecheck -out $(DEPLOY_OUT)/compose.yaml $(DEPLOY_ROOT)/docker-compose.yml

render-kubernetes: ## Render each k8s overlay with kustomize into deployments/.out/k8s-<overlay>.yaml
	@mkdir -p $(DEPLOY_OUT)
	@set -e; for o in $(K8S_OVERLAYS); do \
		$(DEPLOY_TOOL) kustomize build $(DEPLOY_DIR)/k8s/overlays/$$o > $(DEPLOY_OUT)/k8s-$$o.yaml; \
		echo "kustomize build overlays/$$o: $$(grep -c '^kind:' $(DEPLOY_OUT)/k8s-$$o.yaml) objects"; \
	done

validate-kubernetes: render-kubernetes $(DEPLOY_SCHEMA_STAMP) ## kubeconform -strict every rendered overlay against the Kubernetes, KEDA and Prometheus Operator schemas
	@set -e; for o in $(K8S_OVERLAYS); do \
		printf 'kubeconform overlays/%s: ' $$o; \
		$(DEPLOY_TOOL) kubeconform -strict -summary -kubernetes-version $(K8S_VERSION) \
			-schema-location '$(DEPLOY_SCHEMAS)/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json' \
			$(DEPLOY_OUT)/k8s-$$o.yaml; \
	done

validate-deploy-rules: ## go vet, then Go tests of the manifests' promises: probes, limits, grace periods, PDBs, network policies, scaling, NATS permissions
	@$(DEPLOY_GO) -C $(DEPLOY_DIR)/tools vet ./...
	@$(DEPLOY_GO) -C $(DEPLOY_DIR)/tools test -count=1 ./...

deploy-schemas: $(DEPLOY_SCHEMA_STAMP) ## Generate the strict JSON schemas kubeconform uses (offline, from Go modules)

$(DEPLOY_SCHEMA_STAMP):
	@rm -rf $(DEPLOY_SCHEMAS) && mkdir -p $(DEPLOY_SCHEMAS)
	@$(DEPLOY_TOOL) schemagen -k8s-version $(K8S_VERSION) -out $(DEPLOY_SCHEMAS) \
		-swagger $(call deploy_moddir,k8s.io/kubernetes@v$(K8S_VERSION))/api/openapi-spec/swagger.json \
		$(call deploy_moddir,github.com/kedacore/keda/v2@$(KEDA_VERSION))/config/crd/bases/keda.sh_scaledobjects.yaml \
		$(call deploy_moddir,github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION))/example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml
	@touch $@

deploy-tools: ## Build the pinned deployment tools (kustomize, kubeconform, checks) into the Go cache
	@$(DEPLOY_GO) -C $(DEPLOY_DIR)/tools build -o /dev/null tool

docker-images: ## Build every image with Docker (needs an engine): IMAGE_PREFIX=vomosync VERSION=<git describe>
	@set -e; for s in $(DOCKER_IMAGES); do \
		n=$$(basename $$s); \
		echo "docker build $(IMAGE_PREFIX)/$$n:$(VERSION)"; \
		$(DOCKER) build -f $(DEPLOY_DIR)/docker/Dockerfile --build-arg SERVICE=$$s --build-arg VERSION=$(VERSION) \
			-t $(IMAGE_PREFIX)/$$n:$(VERSION) $(DEPLOY_ROOT); \
	done
