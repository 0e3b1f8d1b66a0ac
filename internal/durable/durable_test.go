package durable

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"
)

func TestCopy(t *testing.T) {
	data := make([]byte, 3*writebackEvery+12345)
	rand.Read(data)
	good := digest.FromBytes(data)
	tests := []struct {
		name    string
		src     []byte
		size    int64
		want    digest.Digest
		wantErr string
	}{
		{"whole and verified", data, int64(len(data)), good, ""},
		{"short", data[:len(data)-1], int64(len(data)), good, "size mismatch"},
		{"long", append(append([]byte{}, data...), 'x'), int64(len(data)), good, "size mismatch"},
		{"corrupt", append([]byte{data[0] ^ 1}, data[1:]...), int64(len(data)), good, "digest mismatch"},
		{"empty", nil, 0, digest.FromBytes(nil), ""},
	}
	// A reader goes through user buffers; a file, through the kernel, with
	// the hash read back from the copy. Both must check the same things.
	sources := map[string]func(t *testing.T, b []byte) io.Reader{
		"reader": func(t *testing.T, b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"file": func(t *testing.T, b []byte) io.Reader {
			p := filepath.Join(t.TempDir(), "src")
			// A prefix the copy must skip: it starts at the file's offset.
			if err := os.WriteFile(p, append([]byte("skip"), b...), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			if _, err := f.Seek(4, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			return f
		},
	}
	for _, tt := range tests {
		for kind, source := range sources {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				f, err := os.Create(filepath.Join(t.TempDir(), "out"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				var reported int64
				err = Copy(f, source(t, tt.src), tt.size, tt.want, func(n int64) { reported += n })
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("err = %v, want %q", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				got, _ := os.ReadFile(f.Name())
				if !bytes.Equal(got, tt.src) || reported != tt.size {
					t.Fatalf("file differs from source or reported %d of %d", reported, tt.size)
				}
			})
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "index.json")
	for _, tt := range []struct {
		content string
		perm    os.FileMode
	}{{"first", 0o600}, {"second, longer than the first", 0o644}} {
		if err := WriteFile(p, []byte(tt.content), tt.perm); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != tt.content {
			t.Fatalf("read %q, %v; want %q", b, err, tt.content)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != tt.perm {
			t.Fatalf("mode %v, %v; want %v", fi.Mode().Perm(), err, tt.perm)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries in the folder, want only the file (no temporary left)", len(entries))
	}
	if err := WriteFile(filepath.Join(dir, "missing", "x"), nil, 0o644); err == nil || !strings.Contains(err.Error(), "write x") {
		t.Errorf("write into a missing folder: %v", err)
	}
}

func TestCopyFrom(t *testing.T) {
	data := make([]byte, 2*writebackEvery+777)
	rand.Read(data)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ranges  [][2]int64 // appended in order
		wantErr bool
	}{
		{"whole", [][2]int64{{0, int64(len(data))}}, false},
		{"pieces out of order", [][2]int64{{writebackEvery, 5}, {0, writebackEvery + 3}, {int64(len(data)) - 1, 1}}, false},
		{"empty", [][2]int64{{10, 0}}, false},
		{"past the end", [][2]int64{{int64(len(data)) - 10, 11}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			out, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			w := NewRawWriter(out)
			var want []byte
			for _, r := range tt.ranges {
				err = w.CopyFrom(in, r[0], r[1])
				if err != nil {
					break
				}
				want = append(want, data[r[0]:r[0]+r[1]]...)
			}
			if tt.wantErr {
				if err == nil {
					t.Fatal("copying past the end of the source succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(out.Name())
			if !bytes.Equal(got, want) || w.Size() != int64(len(want)) {
				t.Fatalf("copied %d bytes (Size %d), want %d equal bytes", len(got), w.Size(), len(want))
			}
		})
	}
	out, _ := os.Create(filepath.Join(dir, "hashed"))
	defer out.Close()
	in, _ := os.Open(src)
	defer in.Close()
	if err := NewWriter(out).CopyFrom(in, 0, 1); err == nil {
		t.Fatal("CopyFrom on a hashing Writer succeeded; its digest would be wrong")
	}
}
