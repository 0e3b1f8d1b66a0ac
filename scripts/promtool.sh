#!/usr/bin/env bash
# Installs promtool, idempotently, from Debian's prometheus package: the
# package is downloaded (not installed, so no service starts) into a
# temporary directory, unpacked with dpkg-deb, and its usr/bin/promtool
# copied into .tools/bin. Prints promtool's path on stdout. The /metrics
# tests run `promtool check metrics` on what they scrape, reading the path
# from OUTPOST_PROMTOOL:
#
#	export OUTPOST_PROMTOOL="$(scripts/promtool.sh)"
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"
promtool="$bin/promtool"

if [[ -x "$promtool" ]] && "$promtool" --version >/dev/null 2>&1; then
	echo "$promtool"
	exit 0
fi
if command -v promtool >/dev/null 2>&1; then
	command -v promtool
	exit 0
fi

echo "installing promtool (Debian's prometheus package) into .tools/bin" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(
	cd "$tmp"
	if ! apt-get download prometheus >&2 2>/dev/null; then
		apt-get update -qq >&2
		apt-get download prometheus >&2
	fi
	dpkg-deb -x prometheus_*.deb root
)
mkdir -p "$bin"
install -m 0755 "$tmp/root/usr/bin/promtool" "$promtool"
echo "$promtool"
