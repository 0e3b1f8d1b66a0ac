package artifact

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/content/memory"
)

const (
	d1 = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	d2 = "sha256:486ea46224d1bb4fb680f34f7c9ad96a8f24ec88be73ea8e5a6c65260e9cb8a7"
)

func validIndexJSON() string {
	return `{"version":1,"params":{"min":2048,"avg":8192,"max":32768},"files":[
{"path":"a/w.bin","digest":"` + d1 + `","size":40000,"chunks":[
 {"offset":0,"length":30000,"digest":"` + d2 + `"},
 {"offset":30000,"length":10000,"digest":"` + d1 + `"}]},
{"path":"empty","digest":"` + d2 + `","size":0,"chunks":[]},
{"path":"tiny","digest":"` + d2 + `","size":5,"chunks":[{"offset":0,"length":5,"digest":"` + d2 + `"}]}]}`
}

func TestParseChunkIndex(t *testing.T) {
	x, err := ParseChunkIndex([]byte(validIndexJSON()))
	if err != nil {
		t.Fatal(err)
	}
	if len(x.Files) != 3 || x.File("a/w.bin").Chunks[1].Offset != 30000 {
		t.Fatalf("parsed %+v", x)
	}
	tests := []struct{ name, from, to, wantErr string }{
		{"version", `"version":1`, `"version":2`, "version 2"},
		{"params", `"avg":8192`, `"avg":8000`, "power of two"},
		{"huge max", `"max":32768`, `"max":1099511627776`, "above"},
		{"gap", `"offset":30000`, `"offset":30001`, "offset 30001, want 30000"},
		{"short total", `"size":40000`, `"size":40001`, "cover 40000 of 40001"},
		{"past size", `"size":40000`, `"size":35000`, "past size"},
		{"short middle chunk", `"length":30000,"digest":"` + d2 + `"},
 {"offset":30000`, `"length":1000,"digest":"` + d2 + `"},
 {"offset":1000`, "outside"},
		{"long chunk", `"length":10000`, `"length":40000`, "outside"},
		{"zero last chunk", `"length":5,`, `"length":0,`, "outside"},
		{"bad chunk digest", `"offset":0,"length":30000,"digest":"` + d2, `"offset":0,"length":30000,"digest":"sha256:abc`, "invalid digest"},
		{"md5 file digest", `"digest":"` + d1 + `","size":40000`, `"digest":"md5:abc","size":40000`, "invalid digest"},
		{"traversal", `"a/w.bin"`, `"../w.bin"`, "unsafe file path"},
		{"absolute", `"a/w.bin"`, `"/w.bin"`, "unsafe file path"},
		{"duplicate", `"path":"tiny"`, `"path":"empty"`, "duplicate"},
		{"file and dir", `"path":"tiny"`, `"path":"a/w.bin/x"`, "also a directory"},
		{"unknown field", `"version":1`, `"version":1,"extra":true`, "unknown field"},
		{"negative size", `"size":0`, `"size":-1`, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validIndexJSON()
			if !strings.Contains(in, tt.from) {
				t.Fatalf("test setup: %q not in input", tt.from)
			}
			_, err := ParseChunkIndex([]byte(strings.Replace(in, tt.from, tt.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := ParseChunkIndex([]byte(validIndexJSON() + " {}")); err == nil {
		t.Fatal("trailing data accepted")
	}
}

func FuzzParseChunkIndex(f *testing.F) {
	f.Add([]byte(validIndexJSON()))
	f.Add([]byte(`{"version":1,"params":{"min":64,"avg":128,"max":256},"files":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := ParseChunkIndex(b)
		if err != nil {
			return
		}
		// Anything accepted round-trips and keeps its invariants.
		out, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseChunkIndex(out); err != nil {
			t.Fatalf("re-parse of accepted index failed: %v", err)
		}
		for _, fc := range x.Files {
			var off int64
			for _, c := range fc.Chunks {
				if c.Offset != off || c.Length <= 0 {
					t.Fatal("non-contiguous chunks accepted")
				}
				off += c.Length
			}
			if off != fc.Size {
				t.Fatal("chunks not covering the file accepted")
			}
		}
	})
}

func TestFetchChunkIndexRejectsMismatch(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"w.onnx": randBytes(8, 100000)})
	store := memory.New()
	desc, err := Push(ctx, store, src, testOpts("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	// Replace the index with one for other bytes: a second model's index
	// attached to this manifest must not be accepted.
	other, err := pushCraftedModelWithoutIndex(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := FetchChunkIndex(ctx, store, desc)
	if err != nil {
		t.Fatal(err)
	}
	idx.Files[0].Digest = digest.FromString("other")
	if _, err := pushChunkIndex(ctx, store, other, idx); err != nil {
		t.Fatal(err)
	}
	if _, err := FetchChunkIndex(ctx, store, other); !errors.Is(err, ErrNoChunkIndex) {
		t.Fatalf("err = %v, want ErrNoChunkIndex", err)
	}
}
