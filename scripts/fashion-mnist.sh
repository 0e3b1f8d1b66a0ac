#!/usr/bin/env bash
# Regenerates the committed Fashion-MNIST subset in internal/dataset/testdata from
# the Debian package dataset-fashion-mnist (scripts/debian-deps.sh installs it).
#
# Selection is deterministic: the first TRAIN_N images of the training set and the
# first TEST_N images of the test set, in file order, with their labels. The output is
# IDX (ubyte) compressed with `gzip -n -9` (no name, no timestamp), so running the
# script twice gives the same bytes.
#
# Usage: scripts/fashion-mnist.sh [SRC_DIR [OUT_DIR]]
set -eu # no pipefail: readers that stop early (head) end their writers with SIGPIPE

SRC=${1:-/usr/share/datasets/fashion-mnist}
OUT=${2:-$(cd "$(dirname "$0")/.." && pwd)/internal/dataset/testdata}
TRAIN_N=${TRAIN_N:-6000}
TEST_N=${TEST_N:-1000}

for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
	if [ ! -f "$SRC/$f" ]; then
		echo "fashion-mnist.sh: $SRC/$f is missing; install it with scripts/debian-deps.sh" >&2
		exit 1
	fi
done
mkdir -p "$OUT"

# dc FILE: decompress to stdout (integrity is checked by gzip -t beforehand).
dc() {
	gzip -dc "$1" 2>/dev/null
}

# field FILE OFFSET: the big-endian uint32 at OFFSET of the decompressed FILE, in hex.
field() {
	dc "$1" | head -c $(($2 + 4)) | tail -c 4 | od -An -tx1 | tr -d ' \n'
}

# be32 N: N as four big-endian bytes.
be32() {
	printf "\\x$(printf %02x $(( ($1 >> 24) & 255 )))\\x$(printf %02x $(( ($1 >> 16) & 255 )))\\x$(printf %02x $(( ($1 >> 8) & 255 )))\\x$(printf %02x $(( $1 & 255 )))"
}

# subset SRC_FILE OUT_FILE N: the first N records of an IDX ubyte file (1 or 3 dims).
subset() {
	local src=$1 out=$2 n=$3 magic ndims total rows cols rec=1 hdr=8
	gzip -t "$src"
	magic=$(field "$src" 0)
	total=$((16#$(field "$src" 4)))
	if [ "$n" -gt "$total" ]; then
		echo "fashion-mnist.sh: $src has $total records, asked for $n" >&2
		exit 1
	fi
	case "$magic" in
	00000801) ndims=1 ;;
	00000803) ndims=3 ;;
	*) echo "fashion-mnist.sh: $src: unexpected IDX magic $magic" >&2; exit 1 ;;
	esac
	if [ "$ndims" = 3 ]; then
		rows=$((16#$(field "$src" 8)))
		cols=$((16#$(field "$src" 12)))
		rec=$((rows * cols))
		hdr=16
	fi
	{
		printf "\\x00\\x00\\x08\\x$(printf %02x "$ndims")"
		be32 "$n"
		if [ "$ndims" = 3 ]; then
			be32 "$rows"
			be32 "$cols"
		fi
		dc "$src" | tail -c +$((hdr + 1)) | head -c $((n * rec))
	} | gzip -n -9 >"$out.tmp"
	local want=$(( (ndims == 3 ? 16 : 8) + n * rec )) got
	got=$(gzip -dc "$out.tmp" | wc -c)
	if [ "$got" -ne "$want" ]; then
		echo "fashion-mnist.sh: $out: wrote $got bytes, want $want" >&2
		exit 1
	fi
	mv "$out.tmp" "$out"
	echo "$out: $n records, $(wc -c <"$out") bytes"
}

subset "$SRC/train-images-idx3-ubyte.gz" "$OUT/fashion-train-images-idx3-ubyte.gz" "$TRAIN_N"
subset "$SRC/train-labels-idx1-ubyte.gz" "$OUT/fashion-train-labels-idx1-ubyte.gz" "$TRAIN_N"
subset "$SRC/t10k-images-idx3-ubyte.gz" "$OUT/fashion-test-images-idx3-ubyte.gz" "$TEST_N"
subset "$SRC/t10k-labels-idx1-ubyte.gz" "$OUT/fashion-test-labels-idx1-ubyte.gz" "$TEST_N"
