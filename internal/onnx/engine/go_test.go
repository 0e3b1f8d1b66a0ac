package engine_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// gemmRelu is y = act(x·w + b), x [N, 3], y [N, 2]: a Relu activation, or
// an operator the interpreter lacks.
func gemmRelu(t testing.TB, act string) []byte {
	t.Helper()
	data, err := onnx.NewBuilder("gemm-relu", 13).
		Input("x", onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(3)).
		Float32("w", []float32{1, -2, 0.5, 3, -1, 0.25}, 3, 2).
		Float32("b", []float32{0.5, -1}, 2).
		Node("Gemm", "gemm", []string{"x", "w", "b"}, []string{"h"}).
		Node(act, "act", []string{"h"}, []string{"y"}).
		Output("y", onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(2)).
		Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestGoMatchesInterp(t *testing.T) {
	data := gemmRelu(t, "Relu")
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := interp.Load(data)
	if err != nil {
		t.Fatal(err)
	}

	var rt engine.Runtime = engine.Go{}
	if got := rt.Name(); got != engine.RuntimeGo {
		t.Errorf("Name() = %q, want %q", got, engine.RuntimeGo)
	}
	sess, err := rt.Load(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sess.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if !reflect.DeepEqual(sess.Inputs(), want.Inputs()) || !reflect.DeepEqual(sess.Outputs(), want.Outputs()) {
		t.Fatalf("session inputs %+v outputs %+v; interp %+v %+v", sess.Inputs(), sess.Outputs(), want.Inputs(), want.Outputs())
	}
	in := map[string]*interp.Tensor{"x": interp.FromFloat32([]float32{1, 2, 3, -1, 0.5, 4}, 2, 3)}
	got, err := sess.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := want.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("Run = %+v, interp gives %+v", got["y"], exp["y"])
	}
}

func TestGoLoadErrors(t *testing.T) {
	dir := t.TempDir()
	unsupported := filepath.Join(dir, "unsupported.onnx")
	if err := os.WriteFile(unsupported, gemmRelu(t, "NoSuchOp"), 0o600); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	missing := filepath.Join(dir, "missing.onnx")
	tests := []struct {
		name    string
		ctx     context.Context
		path    string
		is      error
		message []string // substrings of the error
	}{
		{"missing file", context.Background(), missing, fs.ErrNotExist, []string{"read model", missing}},
		{"unsupported operator", context.Background(), unsupported, interp.ErrUnsupported, []string{"NoSuchOp"}},
		{"canceled", canceled, unsupported, context.Canceled, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess, err := engine.Go{}.Load(tt.ctx, tt.path)
			if err == nil {
				sess.Close()
				t.Fatal("loaded")
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			for _, s := range tt.message {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}
