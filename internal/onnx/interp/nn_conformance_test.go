package interp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

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
	dirs, err := filepath.Glob(filepath.Join(confDir(t), "test_*"))
	if err != nil {
		t.Fatal(err)
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
			// Tighter than the node tests' absolute tolerance: 1e-7.
			if err := confRun(m, dir, compareTensors); err != nil {
				t.Fatal(err)
			}
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
