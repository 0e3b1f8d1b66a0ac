package compress

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/ort"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo"
)

// fullTestSet is Fashion-MNIST's whole test set (10,000 images) from
// Debian's dataset-fashion-mnist.
func fullTestSet(t *testing.T) *dataset.Set {
	t.Helper()
	te, err := dataset.ReadFashionDir(dataset.DebianFashionDir, "t10k")
	if errors.Is(err, os.ErrNotExist) {
		testenv.MissingPeer(t, "Fashion-MNIST not found in "+dataset.DebianFashionDir+" (Debian dataset-fashion-mnist; scripts/debian-deps.sh installs it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	if te.Len() != 10000 {
		t.Fatalf("%d test images, want 10000", te.Len())
	}
	return te
}

// trainedVariants are the variants of the zoo's MLP and CNN that the
// recipes which retrain (pruning, distillation) make from the embedded
// training subset, by model and recipe; made once, as they take seconds.
var trainedVariants = sync.OnceValues(func() (map[string]map[string][]byte, error) {
	tr, _, err := dataset.FashionSubset()
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	out := map[string]map[string][]byte{}
	for _, name := range []string{"mlp", "cnn"} {
		_, data, err := zoo.Get(name)
		if err != nil {
			return nil, err
		}
		src, err := onnx.Unmarshal(data)
		if err != nil {
			return nil, err
		}
		sm, err := readSource(data)
		if err != nil {
			return nil, err
		}
		teacher, err := interp.Load(data)
		if err != nil {
			return nil, err
		}
		out[name] = map[string][]byte{}
		for _, r := range Recipes() {
			if !r.Trained || name == "cnn" && r.Name == "sparse80" {
				continue
			}
			m, err := r.make(ctx, src, sm, teacher, Data{Train: tr})
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", name, r.Name, err)
			}
			if out[name][r.Name], err = onnx.Marshal(m); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
})

// allVariants are makeVariants' variants of zoo model name and, unless
// the race detector makes training too slow, its trained ones.
func allVariants(t *testing.T, name string, calib Dataset) map[string][]byte {
	t.Helper()
	vs := makeVariants(t, name, calib)
	if raceEnabled {
		t.Logf("the race detector makes training slow: the trained variants are checked without it")
		return vs
	}
	trained, err := trainedVariants()
	if err != nil {
		t.Fatal(err)
	}
	for v, b := range trained[name] {
		vs[v] = b
	}
	return vs
}

// Every variant of the zoo's MLP and CNN passes onnx.checker with its full
// check (shape inference included).
func TestVariantsPassONNXChecker(t *testing.T) {
	py := testenv.Python(t, "onnx", "python3 with the onnx module not found (Debian python3-onnx; scripts/debian-deps.sh installs it)")
	tr, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := []string{"-c", `import sys, onnx
for p in sys.argv[1:]:
    onnx.checker.check_model(onnx.load(p), full_check=True)
    print(p.rsplit("/", 1)[-1], "ok")`}
	for _, name := range []string{"mlp", "cnn"} {
		for v, b := range allVariants(t, name, tr) {
			p := filepath.Join(dir, name+"-"+v+".onnx")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			args = append(args, p)
		}
	}
	out, err := exec.Command(py, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("onnx.checker.check_model: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// On the full test set, every variant gives the same outputs in the Go
// runtime as in ONNX Runtime: within 1e-4 for float16; the same argmax on
// at least 99.5% of the images, and probabilities within 0.05, for int8
// (ONNX Runtime runs QDQ nodes in integer kernels, which round otherwise).
// Each variant's accuracy, and its drop from the float model's, is logged
// and bounded.
func TestVariantsAgreeWithONNXRuntime(t *testing.T) {
	if raceEnabled {
		t.Skip("runs 10,000 images through 16 models; make test runs it without -race")
	}
	rt, err := ort.FromEnv()
	if errors.Is(err, ort.ErrNoLibrary) || errors.Is(err, ort.ErrNoCgo) {
		testenv.MissingPeer(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	te := fullTestSet(t)
	tr, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	maxDrop := map[string]float64{"fp16": 0.1, "int8-weights": 0.5, "int8-minmax": 1, "int8-percentile": 1, "int8-dynamic": 1}
	for _, name := range []string{"mlp", "cnn"} {
		_, data := zooModel(t, name)
		base, err := interp.Load(data)
		if err != nil {
			t.Fatal(err)
		}
		baseAcc, err := Accuracy(ctx, base, te, 500)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s float32: accuracy %.2f%% on the 10,000 test images", name, 100*baseAcc)
		vs := allVariants(t, name, tr)
		for _, v := range slices.Sorted(mapsKeys(vs)) {
			t.Run(name+"/"+v, func(t *testing.T) {
				gs, err := interp.Load(vs[v])
				if err != nil {
					t.Fatal(err)
				}
				os, err := rt.LoadBytes(ctx, vs[v])
				if err != nil {
					t.Fatalf("ONNX Runtime refuses it: %v", err)
				}
				defer os.Close()
				maxDiff, same := 0.0, 0
				out := gs.Outputs()[0].Name
				for from := 0; from < te.Len(); from += 500 {
					in, _, err := batch(gs, te, from, from+500)
					if err != nil {
						t.Fatal(err)
					}
					g, err := gs.Run(ctx, in)
					if err != nil {
						t.Fatal(err)
					}
					o, err := os.Run(ctx, in)
					if err != nil {
						t.Fatal(err)
					}
					gy, oy := g[out].F32, o[out].F32
					k := len(gy) / 500
					for i := range 500 {
						if argmax(gy[i*k:(i+1)*k]) == argmax(oy[i*k:(i+1)*k]) {
							same++
						}
					}
					for i := range gy {
						maxDiff = max(maxDiff, math.Abs(float64(gy[i])-float64(oy[i])))
					}
				}
				acc, err := Accuracy(ctx, gs, te, 500)
				if err != nil {
					t.Fatal(err)
				}
				agree := float64(same) / float64(te.Len())
				t.Logf("%s %s: %d bytes, accuracy %.2f%% (%+.2f points); vs ONNX Runtime: max |diff| %.3g, same argmax %.2f%%",
					name, v, len(vs[v]), 100*acc, 100*(acc-baseAcc), maxDiff, 100*agree)
				if !strings.Contains(v, "int8") { // fp16, and the float models pruning and distillation make
					if maxDiff > 1e-4 {
						t.Errorf("max |go - onnxruntime| = %.3g, want at most 1e-4", maxDiff)
					}
				} else if agree < 0.995 || maxDiff > 0.05 {
					t.Errorf("same argmax on %.2f%% (want 99.5%%), max |diff| %.3g (want 0.05)", 100*agree, maxDiff)
				}
				// A trained variant's accuracy is what the search measures and
				// its budget judges (bench/compress has them on this set).
				if bound, ok := maxDrop[v]; ok && 100*(baseAcc-acc) > bound {
					t.Errorf("accuracy dropped %.2f points, want at most %.1f", 100*(baseAcc-acc), bound)
				}
			})
		}
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
