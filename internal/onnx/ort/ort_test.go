//go:build cgo

package ort

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
	"outpost.dev/outpost/internal/testenv"
)

// runtimeOrSkip returns the Runtime for the library named by
// OUTPOST_ONNXRUNTIME_LIB, skipping the test when it is unset, unless
// peers are required (testenv).
func runtimeOrSkip(t *testing.T) *Runtime {
	t.Helper()
	r, err := FromEnv()
	if errors.Is(err, ErrNoLibrary) {
		testenv.MissingPeer(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	notLib := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(notLib, []byte("not a shared library"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"empty", "", EnvLib},
		{"missing", filepath.Join(dir, "nope.so"), "no such file"},
		{"directory", dir, "is a directory"},
		// Refused by dlopen, or, when a test already loaded the real library
		// in this process, as a second library.
		{"not a library", notLib, "libonnxruntime.so.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.path)
			if err == nil {
				t.Fatalf("New(%q) = %v, want an error", tc.path, r)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	t.Setenv(EnvLib, "")
	if _, err := FromEnv(); !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("FromEnv with %s unset: %v", EnvLib, err)
	}
}

// mlpModel is a 4-3-2 Gemm, Relu, Gemm, Softmax graph with known weights.
func mlpModel(t *testing.T) []byte {
	t.Helper()
	b := onnx.NewBuilder("tiny", 13).
		Input("x", onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(4)).
		Float32("w0", []float32{0.1, -0.2, 0.3, 0.4, 0.5, -0.6, -0.7, 0.8, 0.9, 1.0, -1.1, 1.2}, 4, 3).
		Float32("b0", []float32{0.01, 0.02, -0.03}, 3).
		Float32("w1", []float32{0.5, -0.5, 0.25, 0.75, -1, 1}, 3, 2).
		Float32("b1", []float32{0.1, -0.1}, 2).
		Node("Gemm", "fc0", []string{"x", "w0", "b0"}, []string{"h"}).
		Node("Relu", "relu", []string{"h"}, []string{"r"}).
		Node("Gemm", "fc1", []string{"r", "w1", "b1"}, []string{"z"}).
		Node("Softmax", "sm", []string{"z"}, []string{"p"}, onnx.AttrInt("axis", 1)).
		Output("p", onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(2))
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mlpRef evaluates mlpModel in float64.
func mlpRef(x []float32) []float64 {
	w0 := []float64{0.1, -0.2, 0.3, 0.4, 0.5, -0.6, -0.7, 0.8, 0.9, 1.0, -1.1, 1.2}
	b0 := []float64{0.01, 0.02, -0.03}
	w1 := []float64{0.5, -0.5, 0.25, 0.75, -1, 1}
	b1 := []float64{0.1, -0.1}
	var out []float64
	for n := 0; n < len(x)/4; n++ {
		h := slices.Clone(b0)
		for o := range 3 {
			for k := range 4 {
				h[o] += float64(x[n*4+k]) * w0[k*3+o]
			}
			h[o] = max(h[o], 0)
		}
		z := slices.Clone(b1)
		for o := range 2 {
			for k := range 3 {
				z[o] += h[k] * w1[k*2+o]
			}
		}
		m := max(z[0], z[1])
		e0, e1 := math.Exp(z[0]-m), math.Exp(z[1]-m)
		out = append(out, e0/(e0+e1), e1/(e0+e1))
	}
	return out
}

func writeModel(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunMLP(t *testing.T) {
	r := runtimeOrSkip(t)
	if r.Name() != "onnxruntime" {
		t.Fatalf("Name %q", r.Name())
	}
	t.Logf("ONNX Runtime %s from %s", r.Version(), r.Library())
	ctx := context.Background()
	s, err := r.Load(ctx, writeModel(t, mlpModel(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantIn := []interp.ValueInfo{{Name: "x", DType: interp.Float32, Shape: []int{-1, 4}}}
	wantOut := []interp.ValueInfo{{Name: "p", DType: interp.Float32, Shape: []int{-1, 2}}}
	if !equalInfos(s.Inputs(), wantIn) || !equalInfos(s.Outputs(), wantOut) {
		t.Fatalf("inputs %+v outputs %+v", s.Inputs(), s.Outputs())
	}
	for _, n := range []int{1, 3, 64} {
		x := make([]float32, n*4)
		for i := range x {
			x[i] = float32(math.Sin(float64(i))) * 2
		}
		out, err := s.Run(ctx, map[string]*interp.Tensor{"x": interp.FromFloat32(x, n, 4)})
		if err != nil {
			t.Fatal(err)
		}
		p := out["p"]
		if p == nil || p.DType != interp.Float32 || !slices.Equal(p.Shape, []int{n, 2}) {
			t.Fatalf("batch %d: output %+v", n, p)
		}
		for i, want := range mlpRef(x) {
			if d := math.Abs(float64(p.F32[i]) - want); d > 1e-6 {
				t.Fatalf("batch %d: p[%d] = %v, want %v", n, i, p.F32[i], want)
			}
		}
	}
}

func equalInfos(a, b []interp.ValueInfo) bool {
	return slices.EqualFunc(a, b, func(x, y interp.ValueInfo) bool {
		return x.Name == y.Name && x.DType == y.DType && slices.Equal(x.Shape, y.Shape)
	})
}

// Every element type the adapter converts goes through ONNX Runtime and back
// unchanged (Identity per type; scalars and empty tensors too).
func TestRunElementTypes(t *testing.T) {
	r := runtimeOrSkip(t)
	types := []struct {
		name string
		elem onnxpb.TensorProto_DataType
		in   *interp.Tensor
	}{
		{"f32", onnxpb.TensorProto_FLOAT, interp.FromFloat32([]float32{1.5, -2, 3.25, 0, 1e-30, -7}, 2, 3)},
		{"u8", onnxpb.TensorProto_UINT8, &interp.Tensor{DType: interp.Uint8, Shape: []int{2, 3}, U8: []uint8{0, 1, 127, 128, 254, 255}}},
		{"i8", onnxpb.TensorProto_INT8, &interp.Tensor{DType: interp.Int8, Shape: []int{2, 3}, I8: []int8{-128, -1, 0, 1, 126, 127}}},
		{"i32", onnxpb.TensorProto_INT32, &interp.Tensor{DType: interp.Int32, Shape: []int{2, 3}, I32: []int32{math.MinInt32, -1, 0, 1, 1 << 20, math.MaxInt32}}},
		{"i64", onnxpb.TensorProto_INT64, interp.FromInt64([]int64{math.MinInt64, -1, 0, 1, 1 << 40, math.MaxInt64}, 2, 3)},
		{"bool", onnxpb.TensorProto_BOOL, &interp.Tensor{DType: interp.Bool, Shape: []int{2, 3}, B: []bool{true, false, false, true, true, false}}},
		{"empty", onnxpb.TensorProto_FLOAT, interp.FromFloat32([]float32{}, 0, 3)},
	}
	b := onnx.NewBuilder("types", 13)
	in := map[string]*interp.Tensor{}
	for _, tc := range types {
		b.Input(tc.name, tc.elem, onnx.P("N"), onnx.D(3)).
			Node("Identity", "", []string{tc.name}, []string{tc.name + ".out"}).
			Output(tc.name+".out", tc.elem, onnx.P("N"), onnx.D(3))
		in[tc.name] = tc.in
	}
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.LoadBytes(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range types {
		got := out[tc.name+".out"]
		if got == nil || got.DType != tc.in.DType || !slices.Equal(got.Shape, tc.in.Shape) ||
			!slices.Equal(got.F32, tc.in.F32) || !slices.Equal(got.U8, tc.in.U8) || !slices.Equal(got.I8, tc.in.I8) ||
			!slices.Equal(got.I32, tc.in.I32) || !slices.Equal(got.I64, tc.in.I64) || !slices.Equal(got.B, tc.in.B) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.in)
		}
	}
}

func TestRunRejectsBadInputs(t *testing.T) {
	r := runtimeOrSkip(t)
	ctx := context.Background()
	s, err := r.LoadBytes(ctx, mlpModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ok := interp.FromFloat32(make([]float32, 8), 2, 4)
	tests := []struct {
		name string
		in   map[string]*interp.Tensor
		want string
	}{
		{"missing", map[string]*interp.Tensor{}, `input "x" is missing`},
		{"nil", map[string]*interp.Tensor{"x": nil}, `input "x" is missing`},
		{"dtype", map[string]*interp.Tensor{"x": interp.FromInt64(make([]int64, 8), 2, 4)}, "element type int64, model wants float32"},
		{"rank", map[string]*interp.Tensor{"x": interp.FromFloat32(make([]float32, 8), 8)}, "model wants rank 2"},
		{"dim", map[string]*interp.Tensor{"x": interp.FromFloat32(make([]float32, 10), 2, 5)}, "shape [2,5], model wants [-1,4]"},
		{"length", map[string]*interp.Tensor{"x": interp.FromFloat32(make([]float32, 7), 2, 4)}, "has 7 elements, want 8"},
		{"extra", map[string]*interp.Tensor{"x": ok, "y": ok}, `"y" is not an input`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Run(ctx, tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Run(canceled, map[string]*interp.Tensor{"x": ok}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: %v", err)
	}
	// The session still serves after all that.
	if _, err := s.Run(ctx, map[string]*interp.Tensor{"x": ok}); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	r := runtimeOrSkip(t)
	ctx := context.Background()
	if _, err := r.Load(ctx, filepath.Join(t.TempDir(), "none.onnx")); err == nil {
		t.Error("missing file loaded")
	}
	if s, err := r.Load(ctx, writeModel(t, []byte("garbage, not protobuf"))); err == nil || s != nil {
		t.Errorf("garbage loaded: %v, %v", s, err)
	}
	// An operator ONNX Runtime does not have.
	b := onnx.NewBuilder("bad", 13).
		Input("x", onnxpb.TensorProto_FLOAT, onnx.D(1)).
		Node("NoSuchOp", "", []string{"x"}, []string{"y"}).
		Output("y", onnxpb.TensorProto_FLOAT, onnx.D(1))
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadBytes(ctx, data); err == nil {
		t.Error("unknown operator loaded")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.LoadBytes(canceled, mlpModel(t)); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled load: %v", err)
	}
}

// Many goroutines run one session at once and all get the right answer.
// Close, called while they still run, waits for the runs in flight: each
// run answers right or fails with ErrClosed, never anything else, and a
// run begun after Close returned fails with ErrClosed.
func TestConcurrentRunAndClose(t *testing.T) {
	r := runtimeOrSkip(t)
	ctx := context.Background()
	s, err := r.LoadBytes(ctx, mlpModel(t))
	if err != nil {
		t.Fatal(err)
	}
	const goroutines = 8
	var (
		wg       sync.WaitGroup
		inFlight atomic.Int64 // runs begun and not yet returned
		answered atomic.Int64 // runs that answered right
		closed   atomic.Bool  // Close has returned
	)
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			x := make([]float32, 4*(g+1))
			for i := range x {
				x[i] = float32(g*100+i) / 50
			}
			want := mlpRef(x)
			for {
				afterClose := closed.Load()
				inFlight.Add(1)
				out, err := s.Run(ctx, map[string]*interp.Tensor{"x": interp.FromFloat32(x, g+1, 4)})
				inFlight.Add(-1)
				switch {
				case errors.Is(err, ErrClosed):
					return
				case err != nil:
					errs <- err
					return
				case afterClose:
					errs <- errors.New("a run begun after Close returned answered")
					return
				}
				for i, w := range want {
					if math.Abs(float64(out["p"].F32[i])-w) > 1e-6 {
						errs <- errors.New("wrong result under concurrency")
						return
					}
				}
				answered.Add(1)
			}
		})
	}
	// Every goroutine is well under way, and runs are in flight.
	testenv.WaitFor(t, 30*time.Second, "runs in flight", func() bool {
		return answered.Load() >= 10*goroutines && inFlight.Load() > 0
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	closed.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d runs answered", answered.Load())
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Run(ctx, map[string]*interp.Tensor{"x": interp.FromFloat32(make([]float32, 4), 1, 4)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
}
