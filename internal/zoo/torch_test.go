package zoo

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo/torchzoo"
)

// Tolerances of the comparison with PyTorch (numpy.allclose's rule).
const (
	torchRTol = 1e-3
	torchATol = 1e-4
)

// Real architectures exported by PyTorch at opset 17 (torchvision's, with
// random weights from a fixed seed; a TransformerEncoder text classifier;
// the Fashion-MNIST CNN whose AvgPool2d makes PyTorch emit a Pad) load in
// the Go runtime and give PyTorch's outputs on a fixed input, within rtol
// 1e-3 and atol 1e-4. The exports are cached under the user's cache folder,
// keyed by the export script's hash (torchzoo.Cached).
func TestTorchArchitectures(t *testing.T) {
	if testing.Short() {
		t.Skip("exports and runs nine PyTorch models: not in -short mode")
	}
	if raceEnabled {
		t.Skip("ViT-B/16 and ConvNeXt under the race detector take many minutes: make test runs this test without it")
	}
	ctx := context.Background()
	if err := torchzoo.Available(ctx); err != nil {
		testenv.MissingPeer(t, err.Error()+" (scripts/debian-deps.sh installs it)")
	}
	for _, a := range torchzoo.Archs() {
		t.Run(a.Name, func(t *testing.T) {
			start := time.Now()
			e, err := torchzoo.Cached(ctx, a.Name, 1)
			if err != nil {
				t.Fatal(err)
			}
			exported := time.Since(start)
			data, err := os.ReadFile(e.Model())
			if err != nil {
				t.Fatal(err)
			}
			start = time.Now()
			m, err := interp.Load(data)
			if err != nil {
				if s, serr := engine.CheckSupport(data); serr == nil && len(s.GoMissing) > 0 {
					t.Fatalf("%d-byte model at opset %d: the Go runtime lacks %s", len(data), s.Opset, strings.Join(s.GoMissing, ", "))
				}
				t.Fatalf("%d-byte model: %v", len(data), err)
			}
			loaded := time.Since(start)
			x, err := e.Input()
			if err != nil {
				t.Fatal(err)
			}
			want, err := e.Output()
			if err != nil {
				t.Fatal(err)
			}
			start = time.Now()
			out, err := m.Run(ctx, map[string]*interp.Tensor{torchzoo.InputName: x})
			if err != nil {
				t.Fatal(err)
			}
			ran := time.Since(start)
			got := out[torchzoo.OutputName]
			if got == nil {
				t.Fatalf("no output %q among %d outputs", torchzoo.OutputName, len(out))
			}
			if interp.ShapeString(got.Shape) != interp.ShapeString(want.Shape) {
				t.Fatalf("output shape %s, PyTorch's %s", interp.ShapeString(got.Shape), interp.ShapeString(want.Shape))
			}
			d, err := torchzoo.Compare(got.F32, want.F32, torchRTol, torchATol)
			if err != nil {
				t.Fatal(err)
			}
			var scale float64
			for _, v := range want.F32 {
				scale = max(scale, math.Abs(float64(v)))
			}
			t.Logf("%s: %d bytes; export or cache %v, load %v, run %v; PyTorch's outputs up to %.3g; max |diff| %.3g, max rel %.3g; worst [%d] %g vs PyTorch %g",
				a.Name, len(data), exported.Round(time.Millisecond), loaded.Round(time.Millisecond), ran.Round(time.Millisecond),
				scale, d.MaxAbs, d.MaxRel, d.Worst, d.Got, d.Want)
			if scale < 10*torchATol {
				t.Errorf("PyTorch's outputs are all within %g of 0: the comparison would pass whatever the Go runtime computed", scale)
			}
			if d.Bad > 0 {
				t.Errorf("%d of %d outputs outside rtol %g / atol %g of PyTorch's: worst [%d] %g, PyTorch %g (max |diff| %.3g)",
					d.Bad, len(want.F32), torchRTol, torchATol, d.Worst, d.Got, d.Want, d.MaxAbs)
			}
		})
	}
}
