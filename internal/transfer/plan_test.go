package transfer

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/internal/artifact"
)

// synthFile builds a file of chunks with the given lengths and contents
// (chunks with the same name have the same digest).
func synthFile(names string, lengths ...int64) artifact.FileChunks {
	fc := artifact.FileChunks{Path: "f", Digest: digest.FromString(names)}
	for i, l := range lengths {
		fc.Chunks = append(fc.Chunks, artifact.Chunk{Offset: fc.Size, Length: l, Digest: digest.FromString(names[i : i+1])})
		fc.Size += l
	}
	return fc
}

// holding is a chunk lookup over chunks named by the strings synthFile
// hashes.
func holding(held map[string]ChunkRef) func(digest.Digest) (ChunkRef, bool) {
	return func(d digest.Digest) (ChunkRef, bool) {
		for k, v := range held {
			if digest.FromString(k) == d {
				return v, true
			}
		}
		return ChunkRef{}, false
	}
}

func TestNewPlan(t *testing.T) {
	file := synthFile("abcab", 10, 20, 30, 10, 20)
	ref := func(n int64) ChunkRef { return ChunkRef{Path: "v1", Offset: 100, Length: n} }
	tests := []struct {
		name       string
		have       map[string]ChunkRef
		wantLocal  []int
		wantRemote []int
		wantCopies map[int]int
		remote     int64
		local      int64
	}{
		{"nothing held", nil, nil, []int{0, 1, 2}, map[int]int{3: 0, 4: 1}, 60, 0},
		{"some held", map[string]ChunkRef{"b": ref(20)}, []int{1, 4}, []int{0, 2}, map[int]int{3: 0}, 40, 40},
		{"all held", map[string]ChunkRef{"a": ref(10), "b": ref(20), "c": ref(30)}, []int{0, 1, 2, 3, 4}, nil, map[int]int{}, 0, 90},
		{"held with wrong length", map[string]ChunkRef{"c": ref(29)}, nil, []int{0, 1, 2}, map[int]int{3: 0, 4: 1}, 60, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPlan(file, holding(tt.have))
			if got := slices.Sorted(maps.Keys(p.Local)); !slices.Equal(got, tt.wantLocal) {
				t.Errorf("local = %v, want %v", got, tt.wantLocal)
			}
			if !slices.Equal(p.Remote, tt.wantRemote) {
				t.Errorf("remote = %v, want %v", p.Remote, tt.wantRemote)
			}
			if !maps.Equal(p.Copies, tt.wantCopies) {
				t.Errorf("copies = %v, want %v", p.Copies, tt.wantCopies)
			}
			if p.RemoteBytes() != tt.remote || p.LocalBytes() != tt.local {
				t.Errorf("remote, local bytes = %d, %d, want %d, %d", p.RemoteBytes(), p.LocalBytes(), tt.remote, tt.local)
			}
			if p.RemoteBytes()+p.LocalBytes()+p.CopiedBytes() != file.Size {
				t.Errorf("bytes do not add up to the file size")
			}
			if err := p.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
	if p := NewPlan(file, nil); len(p.Remote) != 3 {
		t.Errorf("nil have: remote = %v", p.Remote)
	}
}

func TestPlanSimilar(t *testing.T) {
	// Chunks of 10, 20, 30, 40 and 50 bytes.
	file := synthFile("abcde", 10, 20, 30, 40, 50)
	at := func(off, n int64) ChunkRef { return ChunkRef{Path: "v1", Offset: off, Length: n} }
	tests := []struct {
		name string
		have map[string]ChunkRef
		want map[int]ChunkRef
	}{
		{"nothing held: no hint", nil, map[int]ChunkRef{}},
		{"edit inside c: after b's copy, before d's", map[string]ChunkRef{"a": at(0, 10), "b": at(10, 20), "d": at(60, 40), "e": at(100, 50)},
			map[int]ChunkRef{2: at(30, 30)}},
		{"edit from c to the end: two chunks after b's copy", map[string]ChunkRef{"a": at(0, 10), "b": at(10, 20)},
			map[int]ChunkRef{2: at(30, 30), 3: at(60, 40)}},
		{"edit up to d: two chunks before e's copy", map[string]ChunkRef{"e": at(1100, 50)},
			map[int]ChunkRef{2: at(1030, 30), 3: at(1060, 40)}},
		{"copies elsewhere: each edge aligned with its neighbour", map[string]ChunkRef{"a": at(500, 10), "e": at(1000, 50)},
			map[int]ChunkRef{1: at(510, 20), 2: at(530, 30), 3: at(960, 40)}},
		{"successor too close to the start of its file", map[string]ChunkRef{"e": at(10, 50)},
			map[int]ChunkRef{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPlan(file, holding(tt.have))
			if !maps.Equal(p.Similar, tt.want) {
				t.Errorf("similar = %v, want %v", p.Similar, tt.want)
			}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPlanValidate(t *testing.T) {
	file := synthFile("abc", 10, 20, 30)
	good := func() Plan { return NewPlan(file, nil) }
	tests := []struct {
		name    string
		edit    func(p *Plan)
		wantErr string
	}{
		{"good", func(p *Plan) {}, ""},
		{"missing chunk", func(p *Plan) { p.Remote = p.Remote[:2] }, "chunk 2 has no source"},
		{"twice", func(p *Plan) { p.Local[0] = ChunkRef{Length: 10} }, "planned twice"},
		{"out of range", func(p *Plan) { p.Remote = append(p.Remote, 7) }, "out of range"},
		{"unsorted", func(p *Plan) { p.Remote = []int{1, 0, 2} }, "ascending"},
		{"local wrong length", func(p *Plan) { p.Remote = p.Remote[1:]; p.Local[0] = ChunkRef{Length: 9} }, "length 9"},
		{"copy of other content", func(p *Plan) { p.Remote = p.Remote[:2]; p.Copies[2] = 1 }, "not a remote chunk with the same content"},
		{"gap", func(p *Plan) { p.File.Chunks = slices.Clone(p.File.Chunks); p.File.Chunks[1].Offset++ }, "does not follow"},
		{"size", func(p *Plan) { p.File.Size++ }, "cover 60 of 61"},
		{"bad digest", func(p *Plan) { p.File.Digest = "sha256:zz" }, "file digest"},
		{"similar range of a local chunk", func(p *Plan) {
			p.Remote = p.Remote[1:]
			p.Local[0] = ChunkRef{Length: 10}
			p.Similar[0] = ChunkRef{Length: 10}
		}, "similar range of chunk 0"},
		{"similar range of the wrong length", func(p *Plan) { p.Similar[1] = ChunkRef{Length: 7} }, "similar range of chunk 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good()
			tt.edit(&p)
			err := p.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestSpans(t *testing.T) {
	lengths := []int64{10, 10, 10, 10, 30, 10}
	length := func(i int) int64 { return lengths[i] }
	tests := []struct {
		name    string
		chunks  []int
		partial map[int]int64
		limit   int64
		want    string
	}{
		{"adjacent coalesced", []int{0, 1, 2, 3}, nil, 40, "[0 1 2 3]"},
		{"cap", []int{0, 1, 2, 3}, nil, 20, "[0 1] [2 3]"},
		{"gap splits", []int{0, 1, 3}, nil, 100, "[0 1] [3]"},
		{"big chunk alone", []int{3, 4, 5}, nil, 20, "[3] [4] [5]"},
		{"partial starts a span", []int{0, 1, 2}, map[int]int64{1: 4}, 100, "[0] [1+4 2]"},
		{"partial bytes not counted", []int{1, 2, 3}, map[int]int64{1: 5}, 25, "[1+5 2 3]"},
		{"none", nil, nil, 10, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var parts []string
			for _, s := range spans(tt.chunks, length, tt.partial, tt.limit) {
				var b strings.Builder
				for k, i := range s.chunks {
					if k > 0 {
						b.WriteByte(' ')
					}
					fmt.Fprint(&b, i)
					if k == 0 && s.first > 0 {
						fmt.Fprintf(&b, "+%d", s.first)
					}
				}
				parts = append(parts, "["+b.String()+"]")
			}
			if got := strings.Join(parts, " "); got != tt.want {
				t.Fatalf("spans = %s, want %s", got, tt.want)
			}
		})
	}
}
