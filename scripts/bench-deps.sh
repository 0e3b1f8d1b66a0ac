#!/usr/bin/env bash
# Installs what the benchmarks in bench/ need besides Go, idempotently:
#   rsync   Debian's rsync, the delta-transfer peer of bench/sync
#   curl    the raw-HTTP peer of bench/pushpull and bench/sync
# and the oras CLI (through scripts/tools.sh, into .tools/bin).
# Runs apt-get only when a package is missing (needs root, as on the project's machines).
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
missing=()
for p in rsync curl; do
	if ! command -v "$p" >/dev/null 2>&1; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench-deps.sh: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
"$root/scripts/tools.sh" >/dev/null
