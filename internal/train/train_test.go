package train

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/testenv"
)

var (
	subsetOnce        sync.Once
	trainSet, testSet *dataset.Set
	subsetErr         error
)

func subset(t testing.TB) (*dataset.Set, *dataset.Set) {
	subsetOnce.Do(func() { trainSet, testSet, subsetErr = dataset.FashionSubset() })
	if subsetErr != nil {
		t.Fatal(subsetErr)
	}
	return trainSet, testSet
}

// The model the quick tests share: 784-64-10, two epochs on the subset.
var (
	smallOnce sync.Once
	small     *MLP
	smallAcc  float64
	smallErr  error
)

func smallModel(t testing.TB) (*MLP, float64) {
	tr, te := subset(t)
	smallOnce.Do(func() {
		small = NewMLP([]int{784, 64, 10}, 1)
		if _, smallErr = small.Train(context.Background(), tr, TrainOptions{Epochs: 2}); smallErr != nil {
			return
		}
		smallAcc, smallErr = small.Evaluate(te)
	})
	if smallErr != nil {
		t.Fatal(smallErr)
	}
	return small, smallAcc
}

func TestTrainReachesAccuracy(t *testing.T) {
	m, acc := smallModel(t)
	t.Logf("784-64-10, 2 epochs: test accuracy %.1f%%", 100*acc)
	if acc < 0.75 {
		t.Fatalf("test accuracy %.3f, want >= 0.75", acc)
	}
	_, te := subset(t)
	x := make([]float32, 3*784)
	for i := 0; i < 3; i++ {
		te.Sample(i, x[i*784:(i+1)*784])
	}
	p := m.Predict(x)
	if len(p) != 30 {
		t.Fatalf("Predict returned %d values", len(p))
	}
	for i := 0; i < 3; i++ {
		var s float64
		for _, v := range p[i*10 : (i+1)*10] {
			s += float64(v)
		}
		if math.Abs(s-1) > 1e-4 {
			t.Fatalf("sample %d: probabilities sum to %v", i, s)
		}
	}
}

func TestTrainDeterministic(t *testing.T) {
	tr, _ := subset(t)
	part := tr.Slice(0, 600)
	run := func(workers int) []byte {
		m := NewMLP([]int{784, 32, 16, 10}, 7)
		if _, err := m.Train(context.Background(), part, TrainOptions{Epochs: 2, BatchSize: 50, Workers: workers}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.FineTune(context.Background(), part, 1, TrainOptions{Epochs: 2, Optimizer: SGDMomentum, Workers: workers}); err != nil {
			t.Fatal(err)
		}
		b, err := m.MarshalONNX("det")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b, c := run(1), run(1), run(3)
	if !bytes.Equal(a, b) {
		t.Fatal("two identical runs gave different models")
	}
	if !bytes.Equal(a, c) {
		t.Fatal("1 and 3 workers gave different models")
	}
}

func TestExportDeterministicAndRoundTrip(t *testing.T) {
	m, _ := smallModel(t)
	var b1, b2 bytes.Buffer
	if err := m.ExportONNX(&b1, "fashion"); err != nil {
		t.Fatal(err)
	}
	if err := m.Clone().ExportONNX(&b2, "fashion"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
		t.Fatal("exporting twice gave different bytes")
	}
	back, err := ImportONNX(b1.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	b3, err := back.MarshalONNX("fashion")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), b3) {
		t.Fatal("import then export changed the bytes")
	}
	mp, err := onnx.Unmarshal(b1.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if mp.GetIrVersion() != onnx.IRVersion || mp.OpsetImport[0].GetVersion() != ONNXOpset {
		t.Fatalf("ir %d opset %d", mp.GetIrVersion(), mp.OpsetImport[0].GetVersion())
	}
	// Raw data is little-endian float32.
	w0 := mp.Graph.Initializer[0]
	if w0.GetName() != "fc0.weight" || math.Float32frombits(binary.LittleEndian.Uint32(w0.RawData)) != m.Layers[0].W[0] {
		t.Fatalf("first initializer %q does not hold fc0.weight little-endian", w0.GetName())
	}
}

func TestImportRejects(t *testing.T) {
	if _, err := ImportONNX([]byte("not a model")); err == nil {
		t.Error("garbage accepted")
	}
	b := onnx.NewBuilder("x", 13).Input("input", 1, onnx.P("N"), onnx.D(4)).
		Node("Relu", "", []string{"input"}, []string{"y"})
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ImportONNX(data); err == nil {
		t.Error("a graph that is not an MLP accepted")
	}
}

// Fine-tuning the last layers leaves the first layers' tensors (and so their
// bytes in the file) identical and changes the others.
func TestFineTuneChangesOnlyLastLayers(t *testing.T) {
	tr, te := subset(t)
	base := NewMLP([]int{784, 64, 32, 10}, 3)
	if _, err := base.Train(context.Background(), tr.Slice(0, 2000), TrainOptions{Epochs: 1}); err != nil {
		t.Fatal(err)
	}
	v2 := base.Clone()
	st, err := v2.FineTune(context.Background(), tr.Slice(2000, 4000), 2, TrainOptions{Epochs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := 64*32 + 32 + 32*10 + 10; st.Updated != want {
		t.Errorf("Updated = %d, want %d", st.Updated, want)
	}
	acc, err := v2.Evaluate(te)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fine-tuned 784-64-32-10: accuracy %.1f%%", 100*acc)
	d1, err := base.MarshalONNX("m")
	if err != nil {
		t.Fatal(err)
	}
	d2, err := v2.MarshalONNX("m")
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := onnx.Unmarshal(d1)
	m2, _ := onnx.Unmarshal(d2)
	for i, t1 := range m1.Graph.Initializer {
		t2 := m2.Graph.Initializer[i]
		same := bytes.Equal(t1.RawData, t2.RawData)
		frozen := strings.HasPrefix(t1.GetName(), "fc0.")
		if frozen && !same {
			t.Errorf("%s changed although frozen", t1.GetName())
		}
		if !frozen && same {
			t.Errorf("%s did not change", t1.GetName())
		}
	}
	if len(d1) != len(d2) {
		t.Fatalf("file sizes %d and %d differ", len(d1), len(d2))
	}
	changed := 0
	for i := range d1 {
		if d1[i] != d2[i] {
			changed++
		}
	}
	frozenBytes := 4 * (784*64 + 64)
	if changed > len(d1)-frozenBytes {
		t.Fatalf("%d of %d bytes changed; the frozen layer alone is %d", changed, len(d1), frozenBytes)
	}
	// The first layer's bytes sit at the same offsets in both files.
	raw := m1.Graph.Initializer[0].RawData
	at := bytes.Index(d1, raw)
	if at < 0 || !bytes.Equal(d2[at:at+len(raw)], raw) {
		t.Fatal("frozen layer's bytes are not at the same place in both files")
	}
}

func TestTrainOptionsErrors(t *testing.T) {
	tr, _ := subset(t)
	m := NewMLP([]int{784, 8, 10}, 1)
	if _, err := m.Train(context.Background(), tr, TrainOptions{FrozenLayers: 2}); err == nil {
		t.Error("freezing every layer accepted")
	}
	if _, err := NewMLP([]int{10, 2}, 1).Train(context.Background(), tr, TrainOptions{}); err == nil {
		t.Error("wrong input size accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Train(ctx, tr, TrainOptions{}); err == nil {
		t.Error("canceled context ignored")
	}
}

// pythonWithONNX finds a python3 that can import onnx (Debian's python3-onnx
// lives under /usr/bin/python3, which a pyenv python3 on PATH may hide).
func pythonWithONNX() string {
	cands := []string{os.Getenv("OUTPOST_PYTHON"), "/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		cands = append(cands, p)
	}
	for _, p := range cands {
		if p == "" {
			continue
		}
		if exec.Command(p, "-c", "import onnx").Run() == nil {
			return p
		}
	}
	return ""
}

// The exported model passes ONNX's own checker (full_check also runs shape
// inference) from the onnx Python package.
func TestExportPassesONNXChecker(t *testing.T) {
	py := requirePythonONNX(t)
	m, _ := smallModel(t)
	data, err := m.MarshalONNX("fashion-mlp")
	if err != nil {
		t.Fatal(err)
	}
	// Five test images, through the graph evaluated with numpy from the file's
	// own tensors, must give Go's probabilities.
	script := `import sys, json, numpy as np, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
g = m.graph
w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
v = {g.input[0].name: np.fromfile(sys.argv[2], dtype="<f4").reshape(-1, 784).astype(np.float64)}
for n in g.node:
    a = [v[i] if i in v else w[i] for i in n.input]
    if n.op_type == "Gemm":
        v[n.output[0]] = a[0] @ a[1] + a[2]
    elif n.op_type == "Relu":
        v[n.output[0]] = np.maximum(a[0], 0)
    elif n.op_type == "Softmax":
        e = np.exp(a[0] - a[0].max(axis=1, keepdims=True))
        v[n.output[0]] = e / e.sum(axis=1, keepdims=True)
print(json.dumps({"version": onnx.__version__, "ir": m.ir_version, "opset": [o.version for o in m.opset_import],
    "ops": [n.op_type for n in g.node], "out": v[g.output[0].name].ravel().tolist()}))`
	res, x := numpyEval(t, py, data, 5, script)
	res.expect(t, m.Predict(x))
	t.Logf("onnx %s checker passed (ir %d, opset %v, ops %v); numpy evaluation matches Predict within 1e-4", res.Version, res.IR, res.Opset, res.Ops)
}

// requirePythonONNX returns a python3 that imports onnx, or skips the test
// (fails it when OUTPOST_REQUIRE_PEERS=1).
func requirePythonONNX(t *testing.T) string {
	t.Helper()
	py := pythonWithONNX()
	if py == "" {
		msg := "python3 with the onnx module not found (Debian python3-onnx; scripts/debian-deps.sh installs it)"
		testenv.MissingPeer(t, msg)
	}
	return py
}

// numpyResult is what an evaluation script prints.
type numpyResult struct {
	Version string
	IR      int
	Opset   []int
	Ops     []string
	Out     []float64
}

// numpyEval writes model and the first n test images to files, runs script
// with python py on their paths (the script checks the model with
// onnx.checker and evaluates it with numpy), and returns what it printed
// and the images.
func numpyEval(t *testing.T, py string, model []byte, n int, script string) (numpyResult, []float32) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(p, model, 0o644); err != nil {
		t.Fatal(err)
	}
	_, te := subset(t)
	x := make([]float32, n*784)
	for i := range n {
		te.Sample(i, x[i*784:(i+1)*784])
	}
	xp := filepath.Join(dir, "x.f32")
	writeFloat32s(t, xp, x)
	out, err := exec.Command(py, "-c", script, p, xp).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("onnx.checker.check_model or the numpy evaluation failed: %v\n%s", err, stderr)
	}
	var res numpyResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return res, x
}

// expect fails t unless numpy's outputs are want within 1e-4.
func (r numpyResult) expect(t *testing.T, want []float32) {
	t.Helper()
	if len(r.Out) != len(want) {
		t.Fatalf("numpy gave %d values, Go %d", len(r.Out), len(want))
	}
	for i, v := range r.Out {
		if math.Abs(v-float64(want[i])) > 1e-4 {
			t.Fatalf("probability %d: numpy %v, Go %v", i, v, want[i])
		}
	}
}

// TestDemoModel trains the demo's architecture as the doc comment of the package
// describes and checks the figures written there (accuracy within a point, since
// they were measured on this code; sizes and shares exactly as computed).
func TestDemoModel(t *testing.T) {
	if testing.Short() {
		t.Skip("trains the 784-1024-128-10 demo model (several seconds); skipped with -short")
	}
	if raceEnabled {
		t.Skip("trains the demo model, minutes under the race detector; run without -race to check the package doc's figures")
	}
	tr, te := subset(t)
	start := time.Now()
	v1, v2, err := TrainDemo(context.Background(), tr)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	acc1, _ := v1.Evaluate(te)
	acc2, _ := v2.Evaluate(te)
	d1, err := v1.MarshalONNX("fashion-mlp")
	if err != nil {
		t.Fatal(err)
	}
	d2, err := v2.MarshalONNX("fashion-mlp")
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for i := range d1 {
		if d1[i] != d2[i] {
			changed++
		}
	}
	// Share of the file from the first byte that differs to the end: what a
	// chunked transfer must fetch anew.
	first := 0
	for first < len(d1) && d1[first] == d2[first] {
		first++
	}
	t.Logf("TrainDemo took %v", took.Round(time.Millisecond))
	t.Logf("v1 %v: %d params, test accuracy %.1f%%, ONNX %d bytes", DemoSizes, v1.NumParams(), 100*acc1, len(d1))
	t.Logf("v2: test accuracy %.1f%%, %d bytes (%.1f%%) differ, rewritten from byte %d: the last %.1f%%",
		100*acc2, changed, 100*float64(changed)/float64(len(d1)), first, 100*float64(len(d1)-first)/float64(len(d1)))
	// The package doc's figures (training is deterministic; allow float noise
	// across CPUs of the same architecture).
	if math.Abs(acc1-0.820) > 0.01 || math.Abs(acc2-0.857) > 0.01 || len(d1) != 3745920 {
		t.Errorf("accuracy %.3f / %.3f, size %d: the package doc says 0.820 / 0.857, 3745920", acc1, acc2, len(d1))
	}
	// Where the rewrite starts follows from the layout alone (the first
	// layer's tensors come first and stay byte-identical); which bytes of
	// the rewritten tail differ depends on the trained values.
	if tail := float64(len(d1)-first) / float64(len(d1)); math.Round(1000*tail) != 142 {
		t.Errorf("fine-tune rewrote the last %.2f%% of the file, the package doc says 14.2%%", 100*tail)
	}
	if diff := float64(changed) / float64(len(d1)); math.Abs(diff-0.091) > 0.005 {
		t.Errorf("%.2f%% of the file's bytes differ, the package doc says 9.1%%", 100*diff)
	}
	if dir := os.Getenv("OUTPOST_TRAIN_OUT"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "fashion-mlp-v1.onnx"), d1, 0o644)
		_ = os.WriteFile(filepath.Join(dir, "fashion-mlp-v2.onnx"), d2, 0o644)
	}
}

func BenchmarkTrainEpochDemo(b *testing.B) {
	tr, _ := subset(b)
	m := NewMLP(DemoSizes, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Train(context.Background(), tr, TrainOptions{Epochs: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzImportONNX(f *testing.F) {
	m := NewMLP([]int{4, 3, 2}, 1)
	good, err := m.MarshalONNX("f")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ImportONNX(data)
		if err != nil {
			return
		}
		// Whatever was accepted is a consistent MLP that can run.
		for i, l := range m.Layers {
			if len(l.W) != l.In*l.Out || len(l.B) != l.Out || (i > 0 && m.Layers[i-1].Out != l.In) {
				t.Fatalf("inconsistent layer %d: %d x %d, %d weights, %d biases", i, l.In, l.Out, len(l.W), len(l.B))
			}
		}
		if m.NumParams() < 1<<16 {
			m.Predict(make([]float32, m.Inputs()))
		}
	})
}

// writeFloat32s writes x to path as little-endian float32, for numpy's fromfile.
func writeFloat32s(t *testing.T, path string, x []float32) {
	t.Helper()
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
