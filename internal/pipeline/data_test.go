package pipeline

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/feedback"
	"outpost.dev/outpost/internal/testenv"
)

func TestNPZRoundTrip(t *testing.T) {
	for _, tab := range []*table{
		{shape: []int{2, 2}, u8: []byte{0, 255, 3, 4, 5, 6, 7, 8}, labels: []uint8{1, 0}, classes: 3},
		{shape: []int{3}, f32: []float32{0.5, -1, 2, 3, 4, 1e-9}, labels: []uint8{2, 2}, classes: 3},
	} {
		b, err := tab.marshalNPZ()
		if err != nil {
			t.Fatal(err)
		}
		again, _ := tab.marshalNPZ()
		if !bytes.Equal(b, again) {
			t.Fatal("two encodings of the same data differ")
		}
		got, test, err := readNPZ(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		if test != nil || got.classes != tab.classes || !bytes.Equal(got.u8, tab.u8) || len(got.f32) != len(tab.f32) || !bytes.Equal(got.labels, tab.labels) {
			t.Fatalf("read back %+v, wrote %+v", got, tab)
		}
		for i := range tab.f32 {
			if got.f32[i] != tab.f32[i] {
				t.Fatalf("value %d: %v, wrote %v", i, got.f32[i], tab.f32[i])
			}
		}
	}
}

// NumPy reads the engine's data sets, and the engine reads NumPy's .npz.
func TestNPZAndNumPy(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import numpy").Run(); err != nil {
		testenv.MissingPeer(t, "Debian's python3-numpy ("+py+" -c 'import numpy')")
		return
	}
	dir := t.TempDir()
	tab := &table{shape: []int{2, 3}, u8: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, labels: []uint8{4, 1}, classes: 5}
	b, _ := tab.marshalNPZ()
	ours := filepath.Join(dir, "ours.npz")
	os.WriteFile(ours, b, 0o644)
	theirs := filepath.Join(dir, "theirs.npz")
	out, err := exec.Command(py, "-c", `
import numpy as np, sys
d = np.load(sys.argv[1])
print(d["x"].dtype, d["x"].shape, int(d["x"].sum()), list(d["y"]), int(d["classes"][0]))
np.savez(sys.argv[2], x_train=np.arange(12, dtype=np.float64).reshape(4, 3) / 2, y_train=np.array([0, 1, 2, 1]),
         x_test=np.ones((2, 3), dtype=np.float32), y_test=np.array([2, 0], dtype=np.int32))
`, ours, theirs).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "uint8 (2, 2, 3) 78 [4, 1] 5" {
		t.Errorf("numpy read %q", got)
	}
	src, err := readSource(theirs, "")
	if err != nil {
		t.Fatal(err)
	}
	if src.train.Len() != 4 || src.test.Len() != 2 || src.train.f32[11] != 5.5 || src.train.classes != 3 || src.test.labels[0] != 2 {
		t.Errorf("read numpy's archive: train %+v, test %+v", src.train, src.test)
	}
}

// idxFile encodes an IDX file of unsigned bytes, gzipped.
func idxFile(t *testing.T, path string, dims []uint32, data []byte) {
	t.Helper()
	var b bytes.Buffer
	b.Write([]byte{0, 0, 8, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, d)
	}
	b.Write(data)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b.Bytes())
	zw.Close()
	if err := os.WriteFile(path, z.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadSources(t *testing.T) {
	idx := t.TempDir()
	idxFile(t, filepath.Join(idx, "train-images-idx3-ubyte.gz"), []uint32{3, 2, 2}, make([]byte, 12))
	idxFile(t, filepath.Join(idx, "train-labels-idx1-ubyte.gz"), []uint32{3}, []byte{0, 1, 2})
	idxFile(t, filepath.Join(idx, "t10k-images-idx3-ubyte.gz"), []uint32{1, 2, 2}, make([]byte, 4))
	idxFile(t, filepath.Join(idx, "t10k-labels-idx1-ubyte.gz"), []uint32{1}, []byte{3})

	csvDir := t.TempDir()
	os.WriteFile(filepath.Join(csvDir, "a.csv"), []byte("label,x,y\n1,0.5,2\n0,1,1\n"), 0o644)
	os.WriteFile(filepath.Join(csvDir, "b.csv"), []byte("2,3,4\n"), 0o644)

	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "notes.txt"), []byte("hello"), 0o644)

	badLabel := t.TempDir()
	os.WriteFile(filepath.Join(badLabel, "d.csv"), []byte("1.5,2\n"), 0o644)

	for _, tc := range []struct {
		name, path, format string
		train, test, dim   int
		classes            int
		err                string
	}{
		{name: "builtin", path: BuiltinFashion, train: 6000, test: 1000, dim: 784, classes: 10},
		{name: "idx folder", path: idx, train: 3, test: 1, dim: 4, classes: 4},
		{name: "csv folder", path: csvDir, train: 3, dim: 2, classes: 3},
		{name: "csv file", path: filepath.Join(csvDir, "a.csv"), train: 2, dim: 2, classes: 2},
		{name: "nothing", path: empty, err: "holds no data: want IDX files"},
		{name: "no such folder", path: filepath.Join(empty, "nope"), err: "no such file"},
		{name: "forced format", path: csvDir, format: "idx", err: "no IDX files"},
		{name: "bad label", path: badLabel, err: "labels are class numbers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := readSource(tc.path, tc.format)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.train.Len() != tc.train || lenOf(s.test) != tc.test || s.train.Dim() != tc.dim || max(s.train.classes, classesOf(s.test)) != tc.classes {
				t.Fatalf("train %d, test %d, dim %d, classes %d", s.train.Len(), lenOf(s.test), s.train.Dim(), s.train.classes)
			}
		})
	}
}

func classesOf(t *table) int {
	if t == nil {
		return 0
	}
	return t.classes
}

// A dataset step with no path and a run with no data folder says what to do.
func TestDatasetWithoutData(t *testing.T) {
	te := startEngine(t, t.TempDir())
	r := te.run(t, "nodata", "steps: [{name: data, type: dataset}]", RunOptions{})
	if s := step(t, r, "data"); s.Phase != v1alpha1.RunFailed || !strings.Contains(s.Message, "--data DIR") || !strings.Contains(s.Message, "path param") {
		t.Fatalf("%+v", s)
	}
}

func FuzzReadNPZ(f *testing.F) {
	good, _ := (&table{shape: []int{2}, f32: []float32{1, 2, 3, 4}, labels: []uint8{0, 1}, classes: 2}).marshalNPZ()
	f.Add(good)
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, te, err := readNPZ(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for _, tab := range []*table{tr, te} {
			if tab == nil {
				continue
			}
			if n := tab.Len() * tab.Dim(); len(tab.u8)+len(tab.f32) != n {
				t.Fatalf("%d samples of %d values, %d values held", tab.Len(), tab.Dim(), len(tab.u8)+len(tab.f32))
			}
			for _, l := range tab.labels {
				if int(l) >= tab.classes {
					t.Fatalf("label %d of %d classes", l, tab.classes)
				}
			}
		}
	})
}

func FuzzReadCSV(f *testing.F) {
	f.Add("label,a\n1,2\n0,3\n")
	f.Add("1,2,3\n")
	f.Fuzz(func(t *testing.T, s string) {
		tab, err := readCSV(strings.NewReader(s), ',')
		if err != nil {
			return
		}
		if len(tab.f32) != tab.Len()*tab.Dim() || tab.Len() == 0 {
			t.Fatalf("%d samples of %d values, %d values held", tab.Len(), tab.Dim(), len(tab.f32))
		}
	})
}

// A dataset step reads a deployment's labelled feedback samples, the
// cache sees a new label, and a deployment with none says how to send them.
func TestDatasetFromFeedback(t *testing.T) {
	ctx := t.Context()
	store, err := feedback.Open(ctx, filepath.Join(t.TempDir(), "feedback.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for i := range 10 {
		id := fmt.Sprintf("req-%d", i)
		r := feedback.Request{Deployment: "fashion", Version: "1.0.0", ID: id, Shape: []int{3},
			X: []float32{float32(i), 0.5, -1}, Predicted: []int{0}, At: time.Unix(int64(i), 0)}
		if err := store.Keep(ctx, r, 100); err != nil {
			t.Fatal(err)
		}
		if i < 8 { // two left unlabelled
			if _, err := store.Label(ctx, "fashion", id, []int{i % 3}); err != nil {
				t.Fatal(err)
			}
		}
	}
	te := startEngine(t, t.TempDir(), func(o *Options) { o.Feedback = store })
	const spec = "steps: [{name: data, type: dataset, params: {path: 'feedback:fashion', split: '0.75'}}]"
	r := te.run(t, "fb1", spec, RunOptions{})
	s := step(t, r, "data")
	if s.Phase != v1alpha1.RunSucceeded || s.Outputs["samples"] != "8" {
		t.Fatalf("data step %+v, want 8 samples", s)
	}
	train, test := readArtifactTable(t, te.Engine, s.Outputs["train"]), readArtifactTable(t, te.Engine, s.Outputs["test"])
	if train.Len() != 6 || test.Len() != 2 || train.classes != 3 || !slices.Equal(train.shape, []int{3}) || train.f32 == nil {
		t.Fatalf("train %d samples of %v, %d classes; test %d", train.Len(), train.shape, train.classes, test.Len())
	}
	if log := logOf(t, te.Engine, "fb1", "data"); !strings.Contains(log, "8 labelled samples of feedback:fashion") {
		t.Errorf("log:\n%s", log)
	}
	if s := step(t, te.run(t, "fb2", spec, RunOptions{}), "data"); !s.Cached {
		t.Errorf("same feedback, not cached: %+v", s)
	}
	if _, err := store.Label(ctx, "fashion", "req-8", []int{2}); err != nil {
		t.Fatal(err)
	}
	if s := step(t, te.run(t, "fb3", spec, RunOptions{}), "data"); s.Cached || s.Outputs["samples"] != "9" {
		t.Errorf("a new label, but %+v", s)
	}
	r = te.run(t, "fb4", "steps: [{name: data, type: dataset, params: {path: 'feedback:shoes'}}]", RunOptions{})
	if s := step(t, r, "data"); s.Phase != v1alpha1.RunFailed || !strings.Contains(s.Message, "POST /v2/models/shoes/feedback") {
		t.Errorf("no feedback: %+v", s)
	}
	// An engine without a feedback store says so.
	te2 := startEngine(t, t.TempDir())
	r = te2.run(t, "fb5", spec, RunOptions{})
	if s := step(t, r, "data"); s.Phase != v1alpha1.RunFailed || !strings.Contains(s.Message, "no feedback store") {
		t.Errorf("no store: %+v", s)
	}
}

// readArtifactTable reads a data set artifact of the engine.
func readArtifactTable(t *testing.T, e *Engine, d string) *table {
	t.Helper()
	tab, err := readTable(e.layout.BlobPath(digest.Digest(d)))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}
