package durable

import (
	"bytes"
	"crypto/rand"
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var reported int64
			err = Copy(f, iotest.HalfReader(bytes.NewReader(tt.src)), tt.size, tt.want, func(n int64) { reported += n })
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
