package zoo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/ort"
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

func models(t testing.TB) []Model {
	ms, err := Models()
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// The manifest describes the embedded files exactly, README.md is the
// manifest's rendering, and every file stays small.
func TestManifest(t *testing.T) {
	ms := models(t)
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
		got, data, err := Get(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got.File != m.File {
			t.Fatalf("Get(%q) = %+v", m.Name, got)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != m.SHA256 || len(data) != m.Bytes {
			t.Errorf("%s: %d bytes, sha256 %x; manifest says %d, %s", m.File, len(data), sum, m.Bytes, m.SHA256)
		}
		if len(data) > 2<<20 {
			t.Errorf("%s is %d bytes, over 2 MiB", m.File, len(data))
		}
	}
	if want := "mlp,cnn,mlp-int8"; strings.Join(names, ",") != want {
		t.Fatalf("models %v, want %s", names, want)
	}
	if _, _, err := Get("nope"); err == nil {
		t.Fatal("Get of an unknown model succeeded")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readme, Readme(ms)) {
		t.Fatal("README.md is not the rendering of zoo.json: run go run ./internal/zoo/gen")
	}
}

// The Go runtime loads every model and measures the accuracy written down.
func TestAccuracyWithGoRuntime(t *testing.T) {
	_, te := subset(t)
	floor := map[string]float64{"mlp": 0.80, "cnn": 0.80, "mlp-int8": 0.80}
	for _, m := range models(t) {
		t.Run(m.Name, func(t *testing.T) {
			_, data, err := Get(m.Name)
			if err != nil {
				t.Fatal(err)
			}
			gm, err := interp.Load(data)
			if err != nil {
				t.Fatal(err)
			}
			acc, err := Accuracy(context.Background(), gm, m, te)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: test accuracy %.1f%% (manifest %.1f%%)", m.File, 100*acc, 100*m.TestAccuracy)
			if math.Abs(acc-m.TestAccuracy) > 1e-9 {
				t.Errorf("accuracy %.4f, manifest says %.4f", acc, m.TestAccuracy)
			}
			if acc < floor[m.Name] {
				t.Errorf("accuracy %.4f below %.2f", acc, floor[m.Name])
			}
		})
	}
}

// Every zoo file passes onnx.checker.check_model with full_check (which runs
// ONNX's shape inference too).
func TestONNXChecker(t *testing.T) {
	py := testenv.Python(t, "onnx", "python3 with the onnx module not found (Debian python3-onnx; scripts/debian-deps.sh installs it)")
	dir := t.TempDir()
	args := []string{"-c", `import sys, onnx
for p in sys.argv[1:]:
    m = onnx.load(p)
    onnx.checker.check_model(m, full_check=True)
    print(p.rsplit("/", 1)[-1], "onnx", onnx.__version__, "ir", m.ir_version, "opset", m.opset_import[0].version, "ok")`}
	for _, m := range models(t) {
		_, data, err := Get(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, m.File)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	out, err := exec.Command(py, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("onnx.checker.check_model: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// On 256 test images, the Go runtime's outputs match ONNX Runtime's within
// 1e-4 for every zoo model, in one batch of 256 and image by image.
func TestGoRuntimeMatchesONNXRuntime(t *testing.T) {
	rt, err := ort.FromEnv()
	if errors.Is(err, ort.ErrNoLibrary) {
		testenv.MissingPeer(t, err.Error())
	}
	if noCgo(err) {
		testenv.MissingPeer(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	_, te := subset(t)
	ctx := context.Background()
	const n, tol = 256, 1e-4
	for _, m := range models(t) {
		t.Run(m.Name, func(t *testing.T) {
			_, data, err := Get(m.Name)
			if err != nil {
				t.Fatal(err)
			}
			gm, err := interp.Load(data)
			if err != nil {
				t.Fatal(err)
			}
			os, err := rt.LoadBytes(ctx, data)
			if err != nil {
				t.Fatal(err)
			}
			defer os.Close()
			in := m.Batch(te, 0, n)
			run := func(r Runner, x *interp.Tensor) []float32 {
				out, err := r.Run(ctx, map[string]*interp.Tensor{InputName: x})
				if err != nil {
					t.Fatal(err)
				}
				p := out[OutputName]
				if p == nil || len(p.F32) != x.Shape[0]*10 {
					t.Fatalf("output %q missing or misshapen: %+v", OutputName, p)
				}
				return p.F32
			}
			goOut, ortOut := run(gm, in), run(os, in)
			maxDiff, disagree := 0.0, 0
			for i := range n {
				g, o := goOut[i*10:(i+1)*10], ortOut[i*10:(i+1)*10]
				for j := range g {
					maxDiff = max(maxDiff, math.Abs(float64(g[j])-float64(o[j])))
				}
				if argmax(g) != argmax(o) {
					disagree++
				}
			}
			// Batch 1: the first 16 images one at a time.
			d := len(in.F32) / n
			maxDiff1 := 0.0
			for i := range 16 {
				x := interp.FromFloat32(in.F32[i*d:(i+1)*d], append([]int{1}, m.Input...)...)
				g, o := run(gm, x), run(os, x)
				for j := range g {
					maxDiff1 = max(maxDiff1, math.Abs(float64(g[j])-float64(o[j])))
					maxDiff1 = max(maxDiff1, math.Abs(float64(g[j])-float64(goOut[i*10+j])))
				}
			}
			t.Logf("%s: %d images, max |go - onnxruntime| = %.3g (batch %d), %.3g (batch 1); top-1 disagreements %d",
				m.File, n, maxDiff, n, maxDiff1, disagree)
			if maxDiff > tol || maxDiff1 > tol {
				t.Errorf("max abs difference %.3g / %.3g over %g", maxDiff, maxDiff1, tol)
			}
		})
	}
}

func argmax(v []float32) int {
	best := 0
	for j, x := range v {
		if x > v[best] {
			best = j
		}
	}
	return best
}

// Retraining gives the committed files byte for byte (on amd64, where they
// were made; elsewhere, fused multiply-adds may change the last bits, so
// only the accuracies are compared).
func TestGeneratorReproducesZoo(t *testing.T) {
	if testing.Short() {
		t.Skip("retrains the zoo (about 40 s of CPU); skipped with -short")
	}
	if raceEnabled {
		t.Skip("retrains the zoo, many minutes under the race detector; make test runs it without -race")
	}
	tr, te := subset(t)
	built, err := Build(context.Background(), tr, te, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	ms := models(t)
	if len(built) != len(ms) {
		t.Fatalf("built %d models, zoo has %d", len(built), len(ms))
	}
	for i, b := range built {
		m := ms[i]
		if b.Name != m.Name {
			t.Fatalf("model %d: built %s, zoo has %s", i, b.Name, m.Name)
		}
		if runtime.GOARCH != "amd64" {
			if math.Abs(b.TestAccuracy-m.TestAccuracy) > 0.01 {
				t.Errorf("%s: accuracy %.4f, zoo %.4f", m.Name, b.TestAccuracy, m.TestAccuracy)
			}
			continue
		}
		_, data, err := Get(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Data, data) || b.Model.SHA256 != m.SHA256 || b.Model.TestAccuracy != m.TestAccuracy {
			t.Errorf("%s: regenerated file differs from the committed one (sha256 %s, zoo %s): run go run ./internal/zoo/gen", m.File, b.SHA256, m.SHA256)
		}
	}
}
