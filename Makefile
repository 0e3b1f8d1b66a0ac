# Outpost build entry points. Each target is self-contained; add new targets below.

GO ?= go
TOOLS_BIN := $(CURDIR)/.tools/bin
CONTROLLER_GEN_VERSION ?= v0.23.0
CONTROLLER_GEN := $(TOOLS_BIN)/controller-gen

.PHONY: generate
## generate: regenerate deepcopy functions (api/...) and CRD manifests (deploy/crds).
generate: $(CONTROLLER_GEN)
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=deploy/crds

# Installs controller-gen once; a binary already in place is reused.
$(CONTROLLER_GEN):
	mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

.PHONY: tools test test-short build bench
## tools: install the real peers the tests use (oras, the OCI conformance suite) into .tools/bin.
tools:
	./scripts/tools.sh >/dev/null

## build: build the outpost binary into ./bin.
build:
	$(GO) build -o bin/outpost ./cmd/outpost

## test: the full test suite, with the real peers installed and required, and the race detector.
test:
	eval "$$(./scripts/tools.sh)" && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 25m ./...

## test-short: unit tests only, no peers needed (tests that need a peer say so and skip).
test-short:
	$(GO) test -short ./...

## bench: push/pull of a 1 GiB model, outpost vs oras vs curl (see bench/README.md).
bench: build tools
	$(GO) run ./bench/pushpull
