package agent

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/weightdelta"
)

func TestChooseDeltas(t *testing.T) {
	chunk := func(s string, n int64) artifact.Chunk {
		return artifact.Chunk{Length: n, Digest: digest.FromString(s)}
	}
	file := func(name string, cs ...artifact.Chunk) artifact.FileChunks {
		return artifact.FileChunks{Path: name, Digest: digest.FromString("file " + name), Chunks: cs}
	}
	delta := func(target, base string, size int64) artifact.FileDelta {
		return artifact.FileDelta{Path: target, Target: digest.FromString("file " + target), Base: digest.FromString(base), BaseSize: 10,
			Blob: ocispec.Descriptor{Digest: digest.FromString("delta " + target + base), Size: size}}
	}
	big := file("w", chunk("a", 100), chunk("b", 100))
	held := map[digest.Digest]chunkLoc{digest.FromString("a"): {}}
	holds := func(d digest.Digest, _ int64) bool { return d == digest.FromString("parent") }
	for _, tc := range []struct {
		name    string
		missing []artifact.FileChunks
		deltas  []artifact.FileDelta
		have    map[digest.Digest]chunkLoc
		want    map[string]int64 // path -> delta size chosen
	}{
		{"smaller than the chunks", []artifact.FileChunks{big}, []artifact.FileDelta{delta("w", "parent", 150)}, nil, map[string]int64{"w": 150}},
		{"larger than the chunks still missing", []artifact.FileChunks{big}, []artifact.FileDelta{delta("w", "parent", 150)}, held, map[string]int64{}},
		{"base not held", []artifact.FileChunks{big}, []artifact.FileDelta{delta("w", "other", 10)}, nil, map[string]int64{}},
		{"the smaller of two", []artifact.FileChunks{big}, []artifact.FileDelta{delta("w", "parent", 150), delta("w", "parent", 90)}, held, map[string]int64{"w": 90}},
		{"for another file", []artifact.FileChunks{big}, []artifact.FileDelta{delta("x", "parent", 1)}, nil, map[string]int64{}},
		{"no deltas", []artifact.FileChunks{big}, nil, nil, map[string]int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := chooseDeltas(tc.missing, tc.deltas, tc.have, holds)
			if len(got) != len(tc.want) {
				t.Fatalf("chose %d deltas, want %d: %+v", len(got), len(tc.want), got)
			}
			for _, fc := range tc.missing {
				fd, ok := got[fc.Digest]
				if want, w := tc.want[fc.Path]; ok != w || fd.Blob.Size != want {
					t.Errorf("%s: chose %v (%d bytes), want %v (%d)", fc.Path, ok, fd.Blob.Size, w, want)
				}
			}
			if n := transferBytes(tc.missing, got, tc.have); tc.want["w"] > 0 && n != tc.want["w"] {
				t.Errorf("transferBytes %d, want the delta's %d", n, tc.want["w"])
			}
		})
	}
}

// writeFineTune writes v1 and v2 of a model whose weights (4 MiB) all moved
// a little, as a full fine-tune leaves them.
func writeFineTune(t *testing.T, v1, v2 string) {
	t.Helper()
	const n = 1 << 20
	rng := rand.New(rand.NewPCG(3, 4))
	b1, b2 := make([]byte, 4*n), make([]byte, 4*n)
	for i := range n {
		w := rng.NormFloat64() * 0.05
		binary.LittleEndian.PutUint32(b1[4*i:], math.Float32bits(float32(w)))
		binary.LittleEndian.PutUint32(b2[4*i:], math.Float32bits(float32(w+rng.NormFloat64()*0.001)))
	}
	for dir, b := range map[string][]byte{v1: b1, v2: b2} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "weights.bin"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAgentWeightDelta: a version that declares its parent gets weight
// deltas attached by the hub; an agent holding the parent fetches the
// delta, not the changed chunks, and the result is the new file exactly. A
// forged delta (well formed, wrong result) is caught by the file's digest,
// and the agent fetches the chunks instead.
func TestAgentWeightDelta(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		src := t.TempDir()
		v1, v2, v3 := filepath.Join(src, "v1"), filepath.Join(src, "v2"), filepath.Join(src, "v3")
		writeFineTune(t, v1, v2)
		h.push(v1, "demo", "1.0.0")
		h.deploy("fashion", "demo", ">=1.0.0", false)
		dir := filepath.Join(t.TempDir(), "agent")
		a, stop, _ := startAgent(t, agentConfig(h, dir, h.joinToken()))
		defer stop()
		testenv.WaitFor(t, 30*time.Second, "v1 active", func() bool { return activeVersion(a, "fashion") == "1.0.0" })

		desc2, err := artifact.Push(t.Context(), h.repo("demo"), v2, artifact.PushOptions{Name: "demo", Version: "2.0.0", Parent: "demo@1.0.0"})
		if err != nil {
			t.Fatal(err)
		}
		ds, err := artifact.FetchWeightDeltas(t.Context(), h.repo("demo"), desc2)
		if err != nil || len(ds) != 1 {
			t.Fatalf("weight deltas of 2.0.0: %v, %v; want one, attached by the hub", ds, err)
		}
		fi, _ := os.Stat(filepath.Join(v2, "weights.bin"))
		h.Served.Store(0)
		h.deploy("fashion", "demo", "2.0.0", false)
		testenv.WaitFor(t, 30*time.Second, "v2 active", func() bool { return activeVersion(a, "fashion") == "2.0.0" })
		sameFiles(t, a.Active()[0], v2)
		served := h.Served.Load()
		t.Logf("2.0.0 (every weight moved): %d bytes served for a %d byte file; its delta is %d", served, fi.Size(), ds[0].Blob.Size)
		if served > fi.Size()*3/4 || served < ds[0].Blob.Size {
			t.Errorf("served %d bytes: want about the delta's %d, well under the file's %d", served, ds[0].Blob.Size, fi.Size())
		}
		if st := modelStatus(t, dir, "fashion"); st.BytesTotal != ds[0].Blob.Size {
			t.Errorf("bytesTotal %d, want the delta's %d", st.BytesTotal, ds[0].Blob.Size)
		}

		// 3.0.0 names a parent the hub does not hold, so the hub attaches
		// nothing; a forged delta, against 2.0.0's file, makes the wrong bytes.
		writeFineTune(t, filepath.Join(src, "unused"), v3)
		w3, _ := os.ReadFile(filepath.Join(v3, "weights.bin"))
		w3[0] ^= 1
		if err := os.WriteFile(filepath.Join(v3, "weights.bin"), w3, 0o644); err != nil {
			t.Fatal(err)
		}
		desc3, err := artifact.Push(t.Context(), h.repo("demo"), v3, artifact.PushOptions{Name: "demo", Version: "3.0.0", Parent: "ghost@1.0.0"})
		if err != nil {
			t.Fatal(err)
		}
		w2, _ := os.ReadFile(filepath.Join(v2, "weights.bin"))
		forged, err := weightdelta.Encode(w2, w2) // rebuilds 2.0.0's file, not 3.0.0's
		if err != nil {
			t.Fatal(err)
		}
		fd := artifact.FileDelta{Path: "weights.bin", Target: digest.FromBytes(w3), TargetSize: int64(len(w3)), Base: digest.FromBytes(w2), BaseSize: int64(len(w2)),
			Blob: ocispec.Descriptor{MediaType: artifact.MediaTypeWeightDelta, Digest: digest.FromBytes(forged), Size: int64(len(forged))}}
		body, err := artifact.WeightDeltaManifest(desc3, desc2.Digest, []artifact.FileDelta{fd})
		if err != nil {
			t.Fatal(err)
		}
		r := h.repo("demo")
		for _, b := range [][]byte{forged, ocispec.DescriptorEmptyJSON.Data} {
			if err := r.Push(t.Context(), ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(b), Size: int64(len(b))}, bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		if err := r.Push(t.Context(), ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(body), Size: int64(len(body))}, bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		h.deploy("fashion", "demo", "3.0.0", false)
		testenv.WaitFor(t, 30*time.Second, "v3 active", func() bool { return activeVersion(a, "fashion") == "3.0.0" })
		sameFiles(t, a.Active()[0], v3)
		if st := modelStatus(t, dir, "fashion"); st.Phase != v1alpha1.PhaseActive || st.Error != "" {
			t.Errorf("status after the forged delta: %+v", st)
		}
	})
}
