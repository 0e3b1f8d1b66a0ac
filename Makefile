# Outpost build entry points. Each target is self-contained; add new targets below.

GO ?= go
TOOLS_BIN := $(CURDIR)/.tools/bin
CONTROLLER_GEN_VERSION ?= v0.23.0
CONTROLLER_GEN := $(TOOLS_BIN)/controller-gen

.PHONY: generate
## generate: regenerate deepcopy functions (api/...), CRD manifests (deploy/crds, with each kind's names
## and printer columns from api/v1alpha1's table of kinds) and the protobuf code.
generate: $(CONTROLLER_GEN) generate-onnx generate-oip generate-tflite generate-crds
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: generate-crds
## generate-crds: the CRD manifests alone (deploy/crds, validation rules included), copied into
## the helm chart's crds/.
generate-crds: $(CONTROLLER_GEN)
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=deploy/crds
	$(GO) run ./hack/crdkinds deploy/crds
	mkdir -p deploy/helm/outpost/crds && rm -f deploy/helm/outpost/crds/*.yaml && \
		cp deploy/crds/*.yaml deploy/helm/outpost/crds/

# Installs controller-gen once; a binary already in place is reused.
$(CONTROLLER_GEN):
	mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

# protoc-gen-go is built from the google.golang.org/protobuf version in go.mod, so the
# generated code always matches the runtime it links against (a test checks this).
PROTOC_GEN_GO_VERSION = $(shell $(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)

# protoc-gen-go-grpc is pinned here; its generated code needs google.golang.org/grpc >= 1.64.
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

.PHONY: protoc-tools
# protoc-tools: protoc (Debian's protobuf-compiler) and the pinned Go plugins, each installed once
# into $(TOOLS_BIN) under a versioned name.
protoc-tools:
	command -v protoc >/dev/null || { apt-get update && apt-get install -y protobuf-compiler; }
	v=$(PROTOC_GEN_GO_VERSION); test -x $(TOOLS_BIN)/protoc-gen-go-$$v || { \
		mkdir -p $(TOOLS_BIN) && GOBIN=$(TOOLS_BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go && \
		mv $(TOOLS_BIN)/protoc-gen-go $(TOOLS_BIN)/protoc-gen-go-$$v; }
	g=$(PROTOC_GEN_GO_GRPC_VERSION); test -x $(TOOLS_BIN)/protoc-gen-go-grpc-$$g || { \
		mkdir -p $(TOOLS_BIN) && GOBIN=$(TOOLS_BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$$g && \
		mv $(TOOLS_BIN)/protoc-gen-go-grpc $(TOOLS_BIN)/protoc-gen-go-grpc-$$g; }

.PHONY: generate-onnx
## generate-onnx: regenerate internal/onnx/onnxpb/onnx.pb.go from the onnx.proto beside it.
generate-onnx: protoc-tools
	v=$(PROTOC_GEN_GO_VERSION); \
	protoc --plugin=protoc-gen-go=$(TOOLS_BIN)/protoc-gen-go-$$v -I internal/onnx/onnxpb \
		--go_out=internal/onnx/onnxpb --go_opt=paths=source_relative \
		--go_opt=Monnx.proto=outpost.dev/outpost/internal/onnx/onnxpb internal/onnx/onnxpb/onnx.proto

.PHONY: generate-oip
## generate-oip: regenerate internal/serving/oippb (the Open Inference Protocol's gRPC messages and
## service) from the grpc_predict_v2.proto beside them.
generate-oip: protoc-tools
	protoc --plugin=protoc-gen-go=$(TOOLS_BIN)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION) \
		--plugin=protoc-gen-go-grpc=$(TOOLS_BIN)/protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION) \
		-I internal/serving/oippb \
		--go_out=internal/serving/oippb --go_opt=paths=source_relative \
		--go-grpc_out=internal/serving/oippb --go-grpc_opt=paths=source_relative \
		internal/serving/oippb/grpc_predict_v2.proto

.PHONY: generate-tflite
## generate-tflite: regenerate internal/tflite/schema/tflite (Go code of the TensorFlow Lite model
## format) from the tflite.fbs beside it, with flatc (Debian's flatbuffers-compiler, the same 2.0.8
## as the github.com/google/flatbuffers runtime in go.mod).
generate-tflite:
	command -v flatc >/dev/null || ./scripts/debian-deps.sh
	rm -rf internal/tflite/schema/tflite
	flatc --go -o internal/tflite/schema internal/tflite/schema/tflite.fbs
	gofmt -w internal/tflite/schema/tflite

.PHONY: tools test test-short build bench onnx-conformance
## tools: install the real peers the tests use (oras, the OCI conformance suite, python3-onnx, Python gRPC, Fashion-MNIST,
## promtool; kube-apiserver, etcd, kubectl and helm through scripts/kube.sh, once per machine).
tools:
	./scripts/tools.sh >/dev/null

## build: build the outpost binary into ./bin.
build:
	$(GO) build -o bin/outpost ./cmd/outpost

# COVERDIR is where make test collects coverage counters: unit/ from the packages' tests,
# e2e/ from the outpost processes that test/e2e runs (built with go build -cover).
COVERDIR ?= $(CURDIR)/.cover

# HOT_PKGS spend their tests in tight loops of their own code, where coverage counters under the
# race detector (atomic ones) cost 3-6x the CPU: make test runs them under the race detector
# without counters, and counts their coverage in the run without it.
HOT_PKGS := outpost.dev/outpost/internal/onnx/interp outpost.dev/outpost/internal/train \
	outpost.dev/outpost/internal/artifact outpost.dev/outpost/internal/fl \
	outpost.dev/outpost/internal/compress outpost.dev/outpost/internal/tflite

## test: the full test suite, with the real peers installed and required, and the race detector;
## then, without it, the packages whose checks the race detector makes too slow (the training
## checks among them); last, every package's statement coverage, from its own tests and with the
## end-to-end runs counted.
test:
	rm -rf $(COVERDIR) && mkdir -p $(COVERDIR)/unit $(COVERDIR)/e2e
	eval "$$(./scripts/tools.sh)" && $(GO) vet ./... && \
		OUTPOST_E2E_COVERDIR=$(COVERDIR)/e2e $(GO) test -race -count=1 -timeout 25m -cover \
			$$($(GO) list ./... | grep -vxF $(addprefix -e ,$(HOT_PKGS))) -args -test.gocoverdir=$(COVERDIR)/unit && \
		$(GO) test -race -count=1 -timeout 25m $(HOT_PKGS) && \
		$(GO) test -count=1 -timeout 10m -cover $(HOT_PKGS) ./internal/zoo -args -test.gocoverdir=$(COVERDIR)/unit && \
		$(MAKE) --no-print-directory onnx-conformance
	./scripts/coverage.sh $(COVERDIR)

## onnx-conformance: list the ONNX node conformance tests (Debian libonnx-testdata) the Go runtime
## passes and the ones it skips, with the reason.
onnx-conformance:
	eval "$$(./scripts/tools.sh)" && $(GO) test -count=1 -run '^TestNodeConformance$$' -v ./internal/onnx/interp | \
		grep -E '(passed|skipped) test_|^ONNX node conformance' | sed -E 's/^ *conformance_test.go:[0-9]+: //'

## test-short: unit tests only, no peers needed (tests that need a peer say so and skip).
test-short:
	$(GO) test -short ./...

## bench: push/pull of a 1 GiB model (outpost, oras, curl); a v1->v2 update over a throttled link
## (outpost, rsync, oras, curl); 1,000 simulated agents against one hub (see bench/README.md).
bench: build
	./scripts/bench-deps.sh
	$(GO) run ./bench/pushpull
	$(GO) run ./bench/sync
	$(GO) run ./bench/fleet
