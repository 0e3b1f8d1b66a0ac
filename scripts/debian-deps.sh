#!/usr/bin/env bash
# Installs the Debian packages that tests and data scripts use, if missing:
#   python3-onnx           onnx.checker for exported models (internal/train tests)
#   python3-grpcio,        a Python gRPC client of the inference server, with stubs
#   python3-grpc-tools     generated from its .proto (internal/serving tests)
#   python3-torchvision    PyTorch and torchvision (CPU): real architectures exported to ONNX
#                          by internal/zoo/torchzoo/export.py (internal/zoo tests, bench/serving)
#   python3-scipy          SciPy, the reference the drift statistics are checked against
#                          (internal/drift tests, run with /usr/bin/python3)
#   dataset-fashion-mnist  the full Fashion-MNIST set, /usr/share/datasets/fashion-mnist
#                          (scripts/fashion-mnist.sh cuts the committed subset from it)
#   flatbuffers-compiler  flatc, for `make generate-tflite` (internal/tflite/schema)
#   python3-pyarmnn,      Arm NN's TensorFlow Lite parser and its reference CPU backend:
#   libarmnn-cpuref-backend22  run the .tflite files internal/tflite writes (internal/tflite tests)
#   prometheus             only its promtool, for `promtool check metrics` on the /metrics of
#                          hub and agent: scripts/promtool.sh unpacks it into .tools/bin
#                          without installing the package (no service)
# Idempotent: runs apt-get only when a package is missing, and apt-get update once.
# Needs root (as on the project's machines). Extra package names may be passed.
set -eu

pkgs=(python3-onnx python3-grpcio python3-grpc-tools python3-scipy python3-torchvision dataset-fashion-mnist libonnx-testdata
	flatbuffers-compiler python3-pyarmnn libarmnn-cpuref-backend22 "$@")
missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "debian-deps.sh: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
"$(dirname "$0")/promtool.sh" >&2
