package interp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// onnxNodeTestDir holds the ONNX node conformance tests (Debian package
// libonnx-testdata).
const onnxNodeTestDir = "/usr/share/libonnx-testdata/data/node"

// nnConformanceRefused lists the conformance cases of the nn and quant
// operators that the interpreter refuses at load, with the reason it gives.
var nnConformanceRefused = map[string]string{
	"test_averagepool_3d_default":          "only 1-D and 2-D",
	"test_maxpool_3d_default":              "only 1-D and 2-D",
	"test_batchnorm_epsilon_training_mode": "training_mode",
	"test_batchnorm_example_training_mode": "training_mode",
}

// TestNNConformance runs the ONNX node conformance cases whose operators
// are all among those of nn.go and quant.go. Models older than opset 13
// are loaded at opset 13 when the operator's definition is unchanged
// since their opset.
func TestNNConformance(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(onnxNodeTestDir, "test_*"))
	if err != nil || len(dirs) == 0 {
		t.Skipf("no ONNX node tests under %s (install libonnx-testdata)", onnxNodeTestDir)
	}
	mine := ops{}
	addNNOps(mine)
	addQuantOps(mine)
	ran := 0
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
		if err != nil {
			continue
		}
		mp, err := onnx.Unmarshal(data)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if !nnOwnsModel(mp, mine) {
			continue
		}
		name := filepath.Base(dir)
		ran++
		t.Run(name, func(t *testing.T) {
			if want, ok := nnConformanceRefused[name]; ok {
				_, err := LoadProto(mp)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("load error %v, want a refusal containing %q", err, want)
				}
				return
			}
			m, err := LoadProto(mp)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			runConformanceDir(t, m, mp, dir)
		})
	}
	if ran == 0 {
		t.Fatal("no conformance case uses the nn or quant operators")
	}
}

// nnOwnsModel reports whether every node of the model is one of the given
// operators, and raises an opset below 13 to 13 when each operator's
// definition dates from the model's opset or earlier.
func nnOwnsModel(mp *onnxpb.ModelProto, mine ops) bool {
	var opset int64
	var imp *onnxpb.OperatorSetIdProto
	for _, o := range mp.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			opset, imp = o.GetVersion(), o
		}
	}
	if imp == nil || len(mp.GetGraph().GetNode()) == 0 {
		return false
	}
	for _, n := range mp.GetGraph().GetNode() {
		op, ok := mine[n.GetOpType()]
		if !ok || n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
			return false
		}
		if opset < 13 && op.MinOpset > opset {
			return false
		}
	}
	if opset < 13 {
		imp.Version = proto.Int64(13)
	}
	return true
}

// runConformanceDir runs every test_data_set_* of a case and compares the
// outputs as the ONNX backend tests do (rtol 1e-3, atol 1e-7; integers
// exactly).
func runConformanceDir(t *testing.T, m *Model, mp *onnxpb.ModelProto, dir string) {
	t.Helper()
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	sort.Strings(sets)
	if len(sets) == 0 {
		t.Fatal("no test data sets")
	}
	inits := map[string]bool{}
	for _, i := range mp.GetGraph().GetInitializer() {
		inits[i.GetName()] = true
	}
	var inNames []string
	for _, vi := range mp.GetGraph().GetInput() {
		if !inits[vi.GetName()] {
			inNames = append(inNames, vi.GetName())
		}
	}
	for _, set := range sets {
		in := map[string]*Tensor{}
		for i, name := range inNames {
			tt, err := readTensorFile(filepath.Join(set, fmt.Sprintf("input_%d.pb", i)))
			if err != nil {
				t.Fatalf("%s: input %s: %v", set, name, err)
			}
			in[name] = tt
		}
		got, err := m.Run(context.Background(), in)
		if err != nil {
			t.Fatalf("%s: run: %v", filepath.Base(set), err)
		}
		for i, vi := range mp.GetGraph().GetOutput() {
			want, err := readTensorFile(filepath.Join(set, fmt.Sprintf("output_%d.pb", i)))
			if err != nil {
				t.Fatalf("%s: output %s: %v", set, vi.GetName(), err)
			}
			if err := compareTensors(got[vi.GetName()], want); err != nil {
				t.Errorf("%s: output %s: %v", filepath.Base(set), vi.GetName(), err)
			}
		}
	}
}

func readTensorFile(path string) (*Tensor, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p onnxpb.TensorProto
	if err := proto.Unmarshal(data, &p); err != nil {
		return nil, err
	}
	return TensorFromProto(&p)
}
