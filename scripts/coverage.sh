#!/usr/bin/env bash
# Prints the statement coverage of every package of the module from the
# counters that make test collects under DIR: DIR/unit from the packages'
# own tests (go test -cover, -test.gocoverdir), DIR/e2e from the outpost
# processes the end-to-end tests run (a binary built with go build -cover,
# GOCOVERDIR). One line per package: the unit tests' figure, then the figure
# with the end-to-end runs counted; "-" where a package has no counters.
# Then the ten packages lowest with everything counted.
set -euo pipefail
export LC_ALL=C # one collation for sort and join

dir="${1:?usage: scripts/coverage.sh DIR}"
go="${GO:-go}"

# pct DIRS prints "package percent" lines, sorted by package.
pct() {
	"$go" tool covdata percent -i="$1" | awk '$3 ~ /%$/ { sub(/%$/, "", $3); print $1, $3 }' | sort
}

unit="$(mktemp)"
all="$(mktemp)"
pkgs="$(mktemp)"
trap 'rm -f "$unit" "$all" "$pkgs"' EXIT
pct "$dir/unit" >"$unit"
pct "$dir/unit,$dir/e2e" >"$all"
"$go" list -f '{{if .GoFiles}}{{.ImportPath}}{{end}}' ./... | sort >"$pkgs"

table="$(join -a1 -e - -o 0,2.2 "$pkgs" "$unit" | join -a1 -e - -o 0,1.2,2.2 - "$all")"
echo "Statement coverage per package: unit tests, then with the end-to-end runs counted"
awk '{ printf "  %-50s %7s %7s\n", $1, $2, $3 }' <<<"$table"
echo "The ten lowest, with everything counted:"
awk '$3 != "-"' <<<"$table" | sort -k3,3n | head -n 10 | awk '{ printf "  %-50s %7s\n", $1, $3 }'
