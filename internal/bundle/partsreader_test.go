package bundle

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"outpost.dev/outpost/internal/durable"
)

// openParts splits data into files of the given sizes and returns a
// partsReader over them, each listed with its size (listed: the sizes the
// reader is told, which may differ from the files').
func openParts(t *testing.T, data []byte, sizes, listed []int) *partsReader {
	t.Helper()
	dir := t.TempDir()
	r := &partsReader{}
	t.Cleanup(r.close)
	off := 0
	for i, n := range sizes {
		name := filepath.Join(dir, "part"+string(rune('a'+i)))
		if err := os.WriteFile(name, data[off:off+n], 0o600); err != nil {
			t.Fatal(err)
		}
		off += n
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		r.add(f, int64(listed[i]))
	}
	return r
}

func TestPartsReader(t *testing.T) {
	data := make([]byte, 10000)
	rand.Read(data)
	sizes := []int{4096, 4096, 1, 1807}
	r := openParts(t, data, sizes, sizes)

	// Read as one stream, in reads that end inside and across parts.
	got, err := io.ReadAll(io.LimitReader(r, 5000))
	if err != nil || !bytes.Equal(got, data[:5000]) {
		t.Fatalf("first 5000 bytes differ (err %v)", err)
	}
	if pos, _ := r.Seek(3000, io.SeekCurrent); pos != 8000 {
		t.Fatalf("Seek to %d, want 8000", pos)
	}
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(rest, data[8000:]) {
		t.Fatalf("bytes from 8000 differ (err %v)", err)
	}

	// copyRange across parts equals the slice of the stream.
	for _, c := range []struct{ off, n int64 }{{0, 10000}, {4000, 200}, {4095, 3}, {8191, 2}, {9999, 1}, {5, 0}} {
		f, _ := os.Create(filepath.Join(t.TempDir(), "out"))
		if err := r.copyRange(durable.NewRawWriter(f), c.off, c.n); err != nil {
			t.Fatalf("copyRange(%d, %d): %v", c.off, c.n, err)
		}
		f.Close()
		b, _ := os.ReadFile(f.Name())
		if !bytes.Equal(b, data[c.off:c.off+c.n]) {
			t.Fatalf("copyRange(%d, %d) wrote other bytes", c.off, c.n)
		}
	}
	f, _ := os.Create(filepath.Join(t.TempDir(), "out"))
	defer f.Close()
	if err := r.copyRange(durable.NewRawWriter(f), 9990, 11); !errors.Is(err, ErrMalformed) {
		t.Fatalf("copyRange past the end = %v, want ErrMalformed", err)
	}

	// A part shorter than listed is an unexpected end, not a quiet one.
	short := openParts(t, data, []int{100, 50}, []int{100, 60})
	if _, err := io.ReadAll(short); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading a short part = %v, want io.ErrUnexpectedEOF", err)
	}
	if err := short.copyRange(durable.NewRawWriter(f), 90, 70); err == nil {
		t.Fatal("copyRange over a short part succeeded")
	}
}
