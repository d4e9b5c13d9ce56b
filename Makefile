# kubekms — build, generate, test and run.
#
#   make run      local control plane + manager + samples, in the foreground
#   make test     unit tests and envtest Ginkgo suites (what CI runs)
#   make verify   regenerate everything generated and fail on any diff

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(CURDIR)/bin
GO ?= go

# Pinned tool versions.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
BUF_VERSION ?= v1.75.0
BUF ?= $(LOCALBIN)/buf-$(BUF_VERSION)
HELM_VERSION ?= v3.22.0
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
GRPCURL_VERSION ?= v1.9.3
GRPCURL ?= $(LOCALBIN)/grpcurl-$(GRPCURL_VERSION)
# local-kms (the bench's AWS KMS emulator) is pinned by hack/localkms/go.mod.
LOCALKMS_VERSION := $(shell awk '/nsmithuk\/local-kms / {print $$NF}' hack/localkms/go.mod)
LOCALKMS ?= $(LOCALBIN)/local-kms-$(LOCALKMS_VERSION)
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2
# protoc plugins, found by buf on PATH; the folder name pins both versions.
PROTOC_PLUGINS ?= $(LOCALBIN)/protoc-plugins-$(PROTOC_GEN_GO_VERSION)-$(PROTOC_GEN_GO_GRPC_VERSION)

# The local control plane (kube-apiserver, etcd, kubectl), built from the Go
# module proxy on first use by hack/controlplane.sh and cached where
# setup-envtest keeps its binaries.
ENVTEST_ASSETS = $(shell hack/controlplane.sh)

# Paths that hold generated files: make verify fails if regenerating changes them.
GENERATED_PATHS = api config charts

# Test knobs.
GINKGO_FLAGS ?=
TEST_TIMEOUT ?= 20m
FUZZTIME ?= 30s

.PHONY: all
all: build

##@ Development

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC from markers.
	$(CONTROLLER_GEN) rbac:roleName=kubekms-manager crd webhook paths="./..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac output:webhook:artifacts:config=config/webhook

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: chart
chart: manifests ## Generate the chart's CRDs and RBAC from config/.
	hack/chartgen.sh

.PHONY: proto
proto: $(BUF) $(PROTOC_PLUGINS) ## Generate Go code from api/proto.
	PATH="$(PROTOC_PLUGINS):$$PATH" $(BUF) generate

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet.
	$(GO) vet ./...

.PHONY: verify
verify: manifests generate proto chart ## Regenerate all generated files, then fail on any diff or unformatted file.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt'ed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@changed=$$(git status --porcelain -- $(GENERATED_PATHS)); if [ -n "$$changed" ]; then \
		echo "$$changed"; git --no-pager diff -- $(GENERATED_PATHS) | head -50; \
		echo "generated files are out of date: run 'make manifests generate' and commit the result"; exit 1; fi

##@ Build

.PHONY: build
# The release binaries; the Dockerfile runs the same commands (test/packaging checks).
RELEASE_BUILD = CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w"

build: ## Build the manager, the kubectl-kms plugin, the workload agent and the dev environment runner into bin/.
	$(RELEASE_BUILD) -o $(LOCALBIN)/manager ./cmd/manager
	$(RELEASE_BUILD) -o $(LOCALBIN)/kubectl-kms ./cmd/kubectl-kms
	$(RELEASE_BUILD) -o $(LOCALBIN)/kubekms-agent ./cmd/agent
	$(GO) build -o $(LOCALBIN)/devenv ./hack/devenv

# The manager with the pkcs11 root of trust: cgo, to load the HSM's
# PKCS#11 library; Dockerfile.pkcs11 runs the same command (test/packaging
# checks).
PKCS11_BUILD = CGO_ENABLED=1 $(GO) build -tags pkcs11 -trimpath -ldflags="-s -w"

.PHONY: build-pkcs11
build-pkcs11: ## Build the manager with the pkcs11 root of trust (cgo) into bin/manager-pkcs11.
	$(PKCS11_BUILD) -o $(LOCALBIN)/manager-pkcs11 ./cmd/manager

IMG ?= kubekms:dev

.PHONY: deploy
deploy: ## Install kubekms into the cluster of the current kubeconfig (kustomize, config/default).
	kubectl apply --server-side -k config/default

.PHONY: undeploy
undeploy: ## Remove what deploy installed (CRDs too: this deletes every Key).
	kubectl delete --ignore-not-found -k config/default

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: docker-build-pkcs11
docker-build-pkcs11: ## Build the -pkcs11 image variant (glibc, the manager with the pkcs11 root of trust).
	docker build -f Dockerfile.pkcs11 -t $(IMG)-pkcs11 .

.PHONY: controlplane
controlplane: ## Build (first time) or find the local kube-apiserver, etcd and kubectl.
	@hack/controlplane.sh

.PHONY: run
run: build ## Start a local control plane, the manager and the samples (Ctrl-C stops all).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(LOCALBIN)/devenv --dir $(LOCALBIN)/dev --manager $(LOCALBIN)/manager

##@ Test

.PHONY: test
test: build $(GRPCURL) $(HELM) $(LOCALKMS) ## Unit tests, envtest suites, packaging checks and end-to-end tests against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" GRPCURL="$(GRPCURL)" HELM="$(HELM)" KUBEKMS_LOCALKMS="$(LOCALKMS)" $(GO) test -timeout $(TEST_TIMEOUT) -count=1 ./... $(GINKGO_FLAGS)
	$(MAKE) --no-print-directory test-fips
	$(MAKE) --no-print-directory test-pkcs11
	$(MAKE) --no-print-directory fuzz FUZZTIME=20000x
	$(MAKE) --no-print-directory bench-smoke

.PHONY: test-pkcs11
test-pkcs11: build-pkcs11 ## The pkcs11 root of trust against SoftHSM2, alone and through the whole manager (hack/softhsm.sh installs SoftHSM2; skipped, saying so, only where it cannot be had).
	@rc=0; hack/softhsm.sh || rc=$$?; \
	if [ $$rc = 3 ]; then echo "test-pkcs11 SKIPPED: SoftHSM2 cannot be installed on this machine (see above)"; exit 0; fi; \
	[ $$rc = 0 ] || exit $$rc; \
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) test -count=1 -tags pkcs11 -run 'PKCS11' ./internal/seal/ ./internal/operator/

.PHONY: fuzz
# make test bounds fuzzing by a count of executions, not a duration: with a
# duration, Go 1.26's fuzz coordinator can fail a run with a bare "context
# deadline exceeded" as the time runs out (golang/go#75804, fixed in Go 1.27).
fuzz: ## Fuzz the ciphertext parser, the policy evaluator and the pod injector, FUZZTIME each (default 30s; a count such as 20000x also works).
	$(GO) test ./internal/kmscrypto/ -run '^$$' -fuzz FuzzDecrypt -fuzztime $(FUZZTIME)
	$(GO) test ./internal/policy/ -run '^$$' -fuzz FuzzEvaluate -fuzztime $(FUZZTIME)
	$(GO) test ./internal/inject/ -run '^$$' -fuzz FuzzInject -fuzztime $(FUZZTIME)

.PHONY: bench
bench: build $(LOCALKMS) ## The reference benchmark: the manager as make run starts it, a bare gRPC+TLS echo and local-kms, each its own process, under a separate load generator (prints ops/s, p99 and the ratios).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) run ./hack/bench -mode=external -devenv $(LOCALBIN)/devenv -manager $(LOCALBIN)/manager -localkms $(LOCALKMS) $(BENCH_FLAGS)

.PHONY: bench-smoke
bench-smoke: ## A bounded run of the external bench (every process starts, every target answers; no figures judged), part of make test.
	$(MAKE) --no-print-directory bench BENCH_FLAGS="-duration=300ms -rounds=1 -paced-rate=500"

.PHONY: bench-inprocess
bench-inprocess: ## Quick A/B benchmark: the data plane and the load generator in one process, against a bare gRPC echo ceiling.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(GO) run ./hack/bench -mode=inprocess $(BENCH_FLAGS)

.PHONY: test-fips
test-fips: $(LOCALKMS) ## Build with Go's validated FIPS 140-3 module and run the crypto, sealing and backup bundle tests in strict mode.
	GOFIPS140=v1.0.0 GODEBUG=fips140=only KUBEKMS_LOCALKMS="$(LOCALKMS)" $(GO) test -count=1 ./internal/kmscrypto/... ./internal/seal/... ./internal/backup/...

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

$(CONTROLLER_GEN): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $(CONTROLLER_GEN)

$(BUF): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	mv $(LOCALBIN)/buf $(BUF)

$(PROTOC_PLUGINS):
	GOBIN=$(PROTOC_PLUGINS).tmp $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(PROTOC_PLUGINS).tmp $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	mv $(PROTOC_PLUGINS).tmp $(PROTOC_PLUGINS)

$(GRPCURL): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	mv $(LOCALBIN)/grpcurl $(GRPCURL)

$(LOCALKMS): hack/localkms/go.mod hack/localkms/main.go | $(LOCALBIN)
	cd hack/localkms && CGO_ENABLED=0 $(GO) build -trimpath -o $(abspath $(LOCALKMS)) .

$(HELM): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/helm $(HELM)
