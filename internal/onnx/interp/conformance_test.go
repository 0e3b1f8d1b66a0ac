package interp

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx/onnxpb"
	"outpost.dev/outpost/internal/testenv"
)

// confDebianDir is where Debian's libonnx-testdata puts ONNX's node tests.
const confDebianDir = "/usr/share/libonnx-testdata/data/node"

// confSkip lists the conformance cases of implemented operators that are
// not run, with the reason. Every other case whose operators are all
// implemented and whose tensors are of supported types must pass.
var confSkip = map[string]string{
	"test_averagepool_3d_default":          "3-D pooling is not implemented (1-D and 2-D are)",
	"test_maxpool_3d_default":              "3-D pooling is not implemented (1-D and 2-D are)",
	"test_convtranspose_3d":                "3-D transposed convolution is not implemented (1-D and 2-D are)",
	"test_batchnorm_epsilon_training_mode": "training_mode=1 is not implemented (inference runtime)",
	"test_batchnorm_example_training_mode": "training_mode=1 is not implemented (inference runtime)",
	"test_training_dropout":                "training_mode=1 with a nonzero ratio is not implemented (inference runtime)",
	"test_training_dropout_default":        "training_mode=1 with a nonzero ratio is not implemented (inference runtime)",
	"test_training_dropout_default_mask":   "training_mode=1 with a nonzero ratio is not implemented (inference runtime)",
	"test_training_dropout_mask":           "training_mode=1 with a nonzero ratio is not implemented (inference runtime)",
}

// confNoCase lists the implemented operators that have no case in the
// conformance data, with the reason; every other one must pass a case.
var confNoCase = map[string]string{
	"Gelu":            "defined at opset 20, newer than the data (ONNX 1.12) and than MaxOpset; tested in Go",
	"CumSum":          "its cases are DOUBLE only; TestDoubleCasesAsFloat32 runs them in float32",
	"ReduceLogSumExp": "its cases are DOUBLE only; TestDoubleCasesAsFloat32 runs them in float32",
	"Einsum":          "its cases are DOUBLE only; TestEinsumConformanceFloat32 runs them in float32",
}

// confRtol and confAtol are ONNX's backend test tolerances for floats.
const (
	confRtol = 1e-3
	confAtol = 1e-5
)

func confDir(t *testing.T) string {
	dir := os.Getenv("OUTPOST_ONNX_TESTDATA")
	if dir == "" {
		dir = confDebianDir
	}
	if _, err := os.Stat(filepath.Join(dir, "test_abs", "model.onnx")); err != nil {
		testenv.MissingPeer(t, fmt.Sprintf("ONNX node tests not found in %s (install libonnx-testdata or set OUTPOST_ONNX_TESTDATA): %v", dir, err))
	}
	return dir
}

// confTypesReason names the first unsupported type among the model's
// inputs, outputs, initializers and Cast targets, or returns "".
func confTypesReason(m *onnxpb.ModelProto) string {
	g := m.GetGraph()
	for _, vi := range append(append([]*onnxpb.ValueInfoProto{}, g.GetInput()...), g.GetOutput()...) {
		tt := vi.GetType().GetTensorType()
		if tt == nil {
			return fmt.Sprintf("non-tensor value %q (sequence, map or optional)", vi.GetName())
		}
		if !supportedDType(tt.GetElemType()) {
			return "element type " + elemTypeName(tt.GetElemType())
		}
	}
	for _, p := range g.GetInitializer() {
		if !supportedDType(p.GetDataType()) {
			return "element type " + elemTypeName(p.GetDataType())
		}
	}
	for _, n := range g.GetNode() {
		for _, a := range n.GetAttribute() {
			if n.GetOpType() == "Cast" && a.GetName() == "to" && !supportedDType(int32(a.GetI())) {
				return "cast to element type " + elemTypeName(int32(a.GetI()))
			}
			if a.GetT() != nil && !supportedDType(a.GetT().GetDataType()) {
				return "element type " + elemTypeName(a.GetT().GetDataType())
			}
		}
	}
	return ""
}

func confReadTensor(path string) (*Tensor, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	p := &onnxpb.TensorProto{}
	if err := proto.Unmarshal(data, p); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	t, err := TensorFromProto(p)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return t, p.GetName(), nil
}

// confPBs lists prefix_0.pb, prefix_1.pb, ... in a data set directory.
func confPBs(dir, prefix string) []string {
	var out []string
	for i := 0; ; i++ {
		p := filepath.Join(dir, fmt.Sprintf("%s_%d.pb", prefix, i))
		if _, err := os.Stat(p); err != nil {
			return out
		}
		out = append(out, p)
	}
}

// confCompare checks got against want: same type and shape, floats within
// the ONNX tolerances (NaN matching NaN), other types exactly.
func confCompare(got, want *Tensor) error {
	if got.DType != want.DType {
		return fmt.Errorf("element type %s, want %s", got.DType, want.DType)
	}
	if ShapeString(got.Shape) != ShapeString(want.Shape) {
		return fmt.Errorf("shape %s, want %s", ShapeString(got.Shape), ShapeString(want.Shape))
	}
	switch got.DType {
	case Float32:
		for i, w := range want.F32 {
			g := got.F32[i]
			if math.IsNaN(float64(w)) && math.IsNaN(float64(g)) {
				continue
			}
			if g == w {
				continue
			}
			if d := math.Abs(float64(g) - float64(w)); !(d <= confAtol+confRtol*math.Abs(float64(w))) {
				return fmt.Errorf("element %d is %g, want %g", i, g, w)
			}
		}
		return nil
	}
	gc, wc := got.Clone(), want.Clone()
	gc.Shape, wc.Shape = nil, nil
	if fmt.Sprint(*gc) != fmt.Sprint(*wc) {
		return fmt.Errorf("values %v, want %v", confHead(got), confHead(want))
	}
	return nil
}

func confHead(t *Tensor) string {
	s := fmt.Sprint(t.F32, t.U8, t.I8, t.I32, t.I64, t.B)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// confRun runs one test directory's data sets against the loaded model,
// comparing each output with cmp.
func confRun(m *Model, dir string, cmp func(got, want *Tensor) error) error {
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if len(sets) == 0 {
		return fmt.Errorf("no test data sets")
	}
	inputs, outputs := m.Inputs(), m.Outputs()
	for _, set := range sets {
		in := map[string]*Tensor{}
		for i, p := range confPBs(set, "input") {
			t, name, err := confReadTensor(p)
			if err != nil {
				return err
			}
			if !m.hasInput(name) {
				if i >= len(inputs) {
					return fmt.Errorf("%s: more inputs than the model's %d", p, len(inputs))
				}
				name = inputs[i].Name
			}
			in[name] = t
		}
		got, err := m.Run(context.Background(), in)
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(set), err)
		}
		wantFiles := confPBs(set, "output")
		if len(wantFiles) != len(outputs) {
			return fmt.Errorf("%s: %d expected outputs for %d model outputs", filepath.Base(set), len(wantFiles), len(outputs))
		}
		for i, p := range wantFiles {
			want, _, err := confReadTensor(p)
			if err != nil {
				return err
			}
			if err := cmp(got[outputs[i].Name], want); err != nil {
				return fmt.Errorf("%s: output %q: %w", filepath.Base(set), outputs[i].Name, err)
			}
		}
	}
	return nil
}

// TestNodeConformance runs ONNX's own node tests (libonnx-testdata) for
// every case whose operators are all implemented: each must pass unless
// its tensors use an element type the runtime does not claim or it is in
// confSkip. Every implemented operator must pass at least one case.
func TestNodeConformance(t *testing.T) {
	root := confDir(t)
	dirs, err := filepath.Glob(filepath.Join(root, "test_*"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(dirs)
	supported := map[string]bool{}
	for _, op := range Supported() {
		supported[op] = true
	}
	passedByOp := map[string][]string{}
	var passed, skipped, outside []string
	for _, dir := range dirs {
		name := filepath.Base(dir)
		data, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		mp := &onnxpb.ModelProto{}
		if err := proto.Unmarshal(data, mp); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		opSet := map[string]bool{}
		var missing []string
		for _, n := range mp.GetGraph().GetNode() {
			op := n.GetOpType()
			if d := n.GetDomain(); d != "" && d != "ai.onnx" {
				op = d + "." + op
			}
			if !supported[op] && !opSet[op] {
				missing = append(missing, op)
			}
			opSet[op] = true
		}
		if len(missing) > 0 {
			outside = append(outside, fmt.Sprintf("%s (%s)", name, strings.Join(missing, ", ")))
			continue
		}
		reason := confTypesReason(mp)
		if reason == "" {
			reason = confSkip[name]
		}
		if reason != "" {
			skipped = append(skipped, fmt.Sprintf("%s: %s", name, reason))
			continue
		}
		m, err := Load(data)
		if err == nil {
			err = confRun(m, dir, confCompare)
		}
		if err != nil {
			t.Errorf("FAIL %s: %v", name, err)
			continue
		}
		passed = append(passed, name)
		for op := range opSet {
			passedByOp[op] = append(passedByOp[op], name)
		}
	}
	for _, s := range skipped {
		t.Logf("skipped %s", s)
	}
	t.Logf("not run, operators outside the runtime: %d cases", len(outside))
	for _, s := range outside {
		t.Logf("  outside: %s", s)
	}
	for _, p := range passed {
		t.Logf("passed %s", p)
	}
	for _, op := range Supported() {
		if len(passedByOp[op]) == 0 && confNoCase[op] == "" {
			t.Errorf("operator %s: no conformance case passed", op)
		}
	}
	summary := fmt.Sprintf("ONNX node conformance: %d passed, %d skipped (unsupported element types or listed), %d not run (operators outside the runtime)",
		len(passed), len(skipped), len(outside))
	t.Log(summary)
	if testing.Verbose() {
		fmt.Println(summary)
		fmt.Println("passed: " + strings.Join(passed, " "))
		for _, s := range skipped {
			fmt.Println("skipped " + s)
		}
	}
}
