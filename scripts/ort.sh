#!/usr/bin/env bash
# Installs ONNX Runtime's CPU shared library, idempotently, from the npm
# package onnxruntime-node (with --ignore-scripts: its CPU library ships inside
# the package, no download step is needed) into .tools/ort, and prints the
# library's path on stdout. Tests and the benchmark read it from
# OUTPOST_ONNXRUNTIME_LIB:
#
#	export OUTPOST_ONNXRUNTIME_LIB="$(scripts/ort.sh)"
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
ORT_VERSION="${ORT_VERSION:-1.30.0}"
prefix="$root/.tools/ort"
pkg="$prefix/node_modules/onnxruntime-node"

case "$(uname -m)" in
x86_64 | amd64) arch=x64 ;;
aarch64 | arm64) arch=arm64 ;;
*)
	echo "ort.sh: unsupported architecture $(uname -m)" >&2
	exit 1
	;;
esac
case "$(uname -s)" in
Linux) os=linux lib='libonnxruntime.so.1*' ;;
Darwin) os=darwin lib='libonnxruntime.1*.dylib' ;;
*)
	echo "ort.sh: unsupported OS $(uname -s)" >&2
	exit 1
	;;
esac

have="$(node -p "require('$pkg/package.json').version" 2>/dev/null || true)"
if [[ "$have" != "$ORT_VERSION" ]]; then
	echo "installing onnxruntime-node@$ORT_VERSION into .tools/ort" >&2
	mkdir -p "$prefix"
	npm install --ignore-scripts --no-save --no-audit --no-fund --loglevel=error \
		--prefix "$prefix" "onnxruntime-node@$ORT_VERSION" >&2
fi

# The CPU library of this platform: bin/napi-v*/<os>/<arch>/libonnxruntime.so.1.x.y
# (the real file, not a symlink alias).
path="$(find "$pkg/bin" -path "*/$os/$arch/*" -name "$lib" -type f 2>/dev/null | sort | tail -n 1)"
if [[ -z "$path" ]]; then
	echo "ort.sh: no $lib for $os/$arch under $pkg/bin" >&2
	exit 1
fi
echo "$path"
