#!/usr/bin/env bash
# Installs the real peers the tests run against, idempotently: the oras CLI
# and the OCI distribution-spec conformance suite into .tools/bin, ONNX
# Runtime 1.30 (npm onnxruntime-node) into .tools/ort, and Debian's
# python3-onnx, python3-grpcio, python3-grpc-tools, libonnx-testdata and
# dataset-fashion-mnist, and promtool (from Debian's prometheus package)
# into .tools/bin; and, through scripts/kube.sh, kube-apiserver, etcd,
# kubectl and helm into the machine's tools cache. Prints the environment the
# tests read, for eval.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"
ORAS_VERSION="${ORAS_VERSION:-v1.3.6}"
mkdir -p "$bin"

# The Kubernetes binaries build (minutes, cold) while the others install.
kube_env="$(mktemp)"
trap 'rm -f "$kube_env"' EXIT
"$root/scripts/kube.sh" >"$kube_env" &
kube_pid=$!

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
wait "$kube_pid"
cat "$kube_env"
echo "export OUTPOST_REQUIRE_PEERS=1"
