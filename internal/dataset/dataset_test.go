package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"

	"outpost.dev/outpost/internal/testenv"
)

func idxBytes(typ byte, dims []uint32, data []byte) []byte {
	b := []byte{0, 0, typ, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, data...)
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadIDXValid(t *testing.T) {
	raw := idxBytes(8, []uint32{2, 2, 3}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	for name, in := range map[string][]byte{"plain": raw, "gzip": gz(t, raw)} {
		x, err := ReadIDX(bytes.NewReader(in), 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(x.Dims) != 3 || x.Dims[0] != 2 || x.Dims[1] != 2 || x.Dims[2] != 3 {
			t.Fatalf("%s: dims %v", name, x.Dims)
		}
		if got := x.Record(1); !bytes.Equal(got, []byte{7, 8, 9, 10, 11, 12}) {
			t.Fatalf("%s: record 1 = %v", name, got)
		}
	}
}

func TestReadIDXRejectsMalformed(t *testing.T) {
	ok := idxBytes(8, []uint32{3}, []byte{1, 2, 3})
	corruptGzip := gz(t, ok)
	corruptGzip[len(corruptGzip)-6] ^= 0xff // CRC
	cases := map[string][]byte{
		"empty":            {},
		"short header":     {0, 0, 8},
		"bad magic":        append([]byte{1}, ok[1:]...),
		"float type":       idxBytes(0x0d, []uint32{1}, []byte{0, 0, 0, 0}),
		"int type":         idxBytes(0x0c, []uint32{1}, []byte{0, 0, 0, 0}),
		"zero dims":        {0, 0, 8, 0},
		"too many dims":    idxBytes(8, []uint32{1, 1, 1, 1, 1}, []byte{0}),
		"zero dim":         idxBytes(8, []uint32{2, 0}, nil),
		"truncated dims":   ok[:6],
		"truncated data":   ok[:len(ok)-1],
		"trailing data":    append(append([]byte{}, ok...), 9),
		"huge claim":       idxBytes(8, []uint32{0xffffffff, 0xffffffff, 0xffffffff}, []byte{1}),
		"over limit":       idxBytes(8, []uint32{1 << 16, 1 << 11}, []byte{1}),
		"gzip bad crc":     corruptGzip,
		"gzip truncated":   gz(t, ok)[:10],
		"gzip then junk":   append(gz(t, ok), 'x', 'y'),
		"gzip of bad file": gz(t, ok[:len(ok)-1]),
	}
	for name, in := range cases {
		_, err := ReadIDX(bytes.NewReader(in), 1<<26)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, ErrFormat) {
			t.Errorf("%s: error %v does not wrap ErrFormat", name, err)
		}
	}
}

func TestNewChecksPairing(t *testing.T) {
	im := &IDX{Dims: []int{2, 1, 2}, Data: []byte{1, 2, 3, 4}}
	if _, err := New(im, &IDX{Dims: []int{3}, Data: []byte{0, 1, 2}}, 10); err == nil {
		t.Error("count mismatch accepted")
	}
	if _, err := New(im, &IDX{Dims: []int{2}, Data: []byte{0, 10}}, 10); err == nil {
		t.Error("label 10 accepted with 10 classes")
	}
	if _, err := New(&IDX{Dims: []int{4}, Data: []byte{1, 2, 3, 4}}, &IDX{Dims: []int{4}, Data: make([]byte, 4)}, 10); err == nil {
		t.Error("1-D images accepted")
	}
	s, err := New(im, &IDX{Dims: []int{2}, Data: []byte{0, 9}}, 10)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, s.Dim())
	if l := s.Sample(1, dst); l != 9 || dst[0] != 3.0/255 || dst[1] != 4.0/255 {
		t.Fatalf("Sample(1) = %d %v", l, dst)
	}
}

func TestFashionSubset(t *testing.T) {
	train, test, err := FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != SubsetTrainLen || test.Len() != SubsetTestLen {
		t.Fatalf("sizes %d/%d", train.Len(), test.Len())
	}
	if train.Rows != 28 || train.Cols != 28 || train.Dim() != 784 {
		t.Fatalf("shape %dx%d", train.Rows, train.Cols)
	}
	var counts [10]int
	for _, l := range train.Labels {
		counts[l]++
	}
	for c, n := range counts {
		if n < 500 || n > 700 {
			t.Errorf("class %d (%s): %d training images, want a roughly balanced subset", c, FashionClasses[c], n)
		}
	}
}

// The subset must be the first records of Debian's full files (when installed).
func TestFashionSubsetMatchesDebian(t *testing.T) {
	if _, err := os.Stat(DebianFashionDir); err != nil {
		testenv.MissingPeer(t, fmt.Sprintf("%s absent (Debian package dataset-fashion-mnist, scripts/debian-deps.sh)", DebianFashionDir))
	}
	if testing.Short() {
		t.Skip("reads the 10,000-image Debian test set; skipped with -short")
	}
	full, err := ReadFashionDir(DebianFashionDir, "t10k")
	if err != nil {
		t.Fatal(err)
	}
	if full.Len() != 10000 {
		t.Fatalf("t10k: %d images", full.Len())
	}
	_, test, err := FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	head := full.Slice(0, test.Len())
	if !bytes.Equal(head.Images, test.Images) || !bytes.Equal(head.Labels, test.Labels) {
		t.Fatal("embedded test subset differs from the first 1000 images of Debian's t10k files")
	}
}

func FuzzIDX(f *testing.F) {
	f.Add(idxBytes(8, []uint32{2, 2}, []byte{1, 2, 3, 4}))
	f.Add(gz(f, idxBytes(8, []uint32{3}, []byte{1, 2, 3})))
	f.Add(idxBytes(8, []uint32{0xffffffff}, nil))
	f.Add([]byte{0, 0, 8, 3, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		x, err := ReadIDX(bytes.NewReader(in), 1<<20)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		n := 1
		for _, d := range x.Dims {
			if d < 1 {
				t.Fatalf("dims %v", x.Dims)
			}
			n *= d
		}
		if n != len(x.Data) || n > 1<<20 {
			t.Fatalf("dims %v with %d bytes", x.Dims, len(x.Data))
		}
	})
}
