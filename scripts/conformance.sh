#!/usr/bin/env bash
# Builds the OCI distribution-spec conformance suite into .tools/bin/conformance.test
# (idempotent: does nothing when the binary exists), then, unless --build-only is given,
# runs the registry's conformance test against it.
#
#   scripts/conformance.sh              build if needed, then run TestConformance
#   scripts/conformance.sh --build-only build only
set -euo pipefail

VERSION="${CONFORMANCE_VERSION:-v0.0.0-20260831232431-97274622c111}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin/conformance.test"

if [[ ! -x "$bin" ]]; then
	mkdir -p "$root/.tools/bin"
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	(
		cd "$tmp"
		go mod init conformance-build >/dev/null 2>&1
		go get "github.com/opencontainers/distribution-spec/conformance@$VERSION"
		go test -c -o "$bin.tmp" github.com/opencontainers/distribution-spec/conformance
	)
	mv "$bin.tmp" "$bin"
fi

if [[ "${1:-}" == "--build-only" ]]; then
	echo "$bin"
	exit 0
fi

cd "$root"
OUTPOST_CONFORMANCE_BIN="$bin" OUTPOST_REQUIRE_PEERS=1 \
	go test -count=1 -run '^TestConformance$' -v ./internal/registry/
