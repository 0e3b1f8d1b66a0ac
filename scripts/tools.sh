#!/usr/bin/env bash
# Installs the real peers the tests run against, idempotently: the oras CLI
# and the OCI distribution-spec conformance suite into .tools/bin, ONNX
# Runtime 1.30 (npm onnxruntime-node) into .tools/ort, and Debian's
# python3-onnx, python3-grpcio, python3-grpc-tools, libonnx-testdata and
# dataset-fashion-mnist, and promtool (from Debian's prometheus package)
# into .tools/bin. Prints the environment the tests read, for eval.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"
ORAS_VERSION="${ORAS_VERSION:-v1.3.6}"
mkdir -p "$bin"

have="$("$bin/oras" version 2>/dev/null || true)"
if [[ "$have" != *"Version:    ${ORAS_VERSION#v}"* ]]; then
	echo "installing oras $ORAS_VERSION" >&2
	GOBIN="$bin" go install "oras.land/oras/cmd/oras@$ORAS_VERSION" >&2
fi
"$root/scripts/conformance.sh" --build-only >/dev/null
"$root/scripts/debian-deps.sh" >&2

echo "export OUTPOST_ORAS=$bin/oras"
echo "export OUTPOST_CONFORMANCE_BIN=$bin/conformance.test"
echo "export OUTPOST_ONNXRUNTIME_LIB=$("$root/scripts/ort.sh")"
echo "export OUTPOST_PROMTOOL=$("$root/scripts/promtool.sh")"
echo "export OUTPOST_REQUIRE_PEERS=1"
