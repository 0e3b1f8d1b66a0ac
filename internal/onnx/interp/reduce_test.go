package interp

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

func TestReduce(t *testing.T) {
	x := cF32(sh(2, 3), 1, -2, 3, -4, 5, -6)
	keep0 := onnx.AttrInt("keepdims", 0)
	axes := func(a ...int64) onnx.Attr { return onnx.AttrInts("axes", a...) }
	runVCases(t, []vCase{
		{name: "mean all (no axes)", op: "ReduceMean", in: []*Tensor{x}, want: []*Tensor{cF32(sh(1, 1), -0.5)}},
		{name: "mean all no keepdims is a scalar", op: "ReduceMean", attrs: []onnx.Attr{keep0}, in: []*Tensor{x}, want: []*Tensor{cF32(sh(), -0.5)}},
		{name: "max axis 1", op: "ReduceMax", attrs: []onnx.Attr{axes(1)}, in: []*Tensor{x}, want: []*Tensor{cF32(sh(2, 1), 3, 5)}},
		{name: "min negative axis", op: "ReduceMin", attrs: []onnx.Attr{axes(-2), keep0}, in: []*Tensor{x}, want: []*Tensor{cF32(sh(3), -4, -2, -6)}},
		{name: "prod", op: "ReduceProd", attrs: []onnx.Attr{axes(0)}, in: []*Tensor{x}, want: []*Tensor{cF32(sh(1, 3), -4, -10, -18)}},
		{name: "l1", op: "ReduceL1", attrs: []onnx.Attr{axes(1), keep0}, in: []*Tensor{x}, want: f32s(6, 15)},
		{name: "l2", op: "ReduceL2", attrs: []onnx.Attr{axes(1), keep0}, in: []*Tensor{cF32(sh(2, 2), 3, 4, 0, -2)}, want: f32s(5, 2)},
		{name: "sum square", op: "ReduceSumSquare", attrs: []onnx.Attr{axes(0, 1), keep0}, in: []*Tensor{x}, want: []*Tensor{cF32(sh(), 91)}},
		{name: "log sum", op: "ReduceLogSum", attrs: []onnx.Attr{axes(1), keep0}, in: []*Tensor{cF32(sh(1, 2), 1, 2)}, want: f32s(float32(math.Log(3)))},
		{name: "log sum exp large", op: "ReduceLogSumExp", attrs: []onnx.Attr{axes(1), keep0}, in: []*Tensor{cF32(sh(1, 2), 1000, 1000)}, want: f32s(float32(1000 + math.Ln2))},
		{name: "middle axis of 3-D", op: "ReduceSum", opset: 11, attrs: []onnx.Attr{axes(1), keep0}, in: []*Tensor{cF32(sh(2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8)}, want: []*Tensor{cF32(sh(2, 2), 4, 6, 12, 14)}},
		{name: "outer and inner axes", op: "ReduceSum", opset: 11, attrs: []onnx.Attr{axes(0, 2)}, in: []*Tensor{cF32(sh(2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8)}, want: []*Tensor{cF32(sh(1, 2, 1), 14, 22)}},
		{name: "long rows (unrolled sum)", op: "ReduceMean", attrs: []onnx.Attr{axes(-1), keep0}, in: []*Tensor{cF32(sh(2, 9), 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0)}, want: f32s(5, 8)},
		{name: "empty axis sums to zero", op: "ReduceSum", opset: 11, attrs: []onnx.Attr{axes(1)}, in: []*Tensor{cF32(sh(2, 0))}, want: []*Tensor{cF32(sh(2, 1), 0, 0)}},
		{name: "max over nothing is -inf", op: "ReduceMax", attrs: []onnx.Attr{axes(1), keep0}, in: []*Tensor{cF32(sh(1, 0))}, want: f32s(float32(math.Inf(-1)))},
		{name: "int64 sum exact", op: "ReduceSum", opset: 11, attrs: []onnx.Attr{keep0}, in: []*Tensor{cI64(sh(2), 1<<62, 1)}, want: []*Tensor{cI64(sh(), 1<<62+1)}},
		{name: "int32 mean truncates", op: "ReduceMean", attrs: []onnx.Attr{keep0}, in: []*Tensor{cI32(sh(2), -3, 0)}, want: []*Tensor{cI32(sh(), -1)}},
		{name: "uint8 max", op: "ReduceMax", attrs: []onnx.Attr{keep0}, in: []*Tensor{cU8(sh(3), 7, 250, 3)}, want: []*Tensor{cU8(sh(), 250)}},
		{name: "int8 min", op: "ReduceMin", attrs: []onnx.Attr{keep0}, in: []*Tensor{cI8(sh(3), 7, -128, 3)}, want: []*Tensor{cI8(sh(), -128)}},
		{name: "int log sum refused", op: "ReduceLogSum", in: []*Tensor{cI32(sh(1), 1)}, wantErr: "not supported"},
		{name: "axis out of range", op: "ReduceMean", attrs: []onnx.Attr{axes(2)}, in: []*Tensor{x}, wantErr: "axis 2 out of range for rank 2"},
		{name: "axis repeated (negative alias)", op: "ReduceMean", attrs: []onnx.Attr{axes(1, -1)}, in: []*Tensor{x}, wantErr: "repeat axis 1"},
		{name: "axis repeated at load", op: "ReduceMax", attrs: []onnx.Attr{axes(0, 0)}, in: []*Tensor{x}, wantErr: `ReduceMax node "n0": axes [0 0] repeat an axis`},
		{name: "bad keepdims at load", op: "ReduceMean", attrs: []onnx.Attr{onnx.AttrInt("keepdims", 3)}, in: []*Tensor{x}, wantErr: `ReduceMean node "n0": keepdims is 3`},
		{name: "axes input refused before opset 18", op: "ReduceMean", in: []*Tensor{x, cI64(sh(1), 0)}, wantErr: "2 inputs, want 1 to 1"},
	})
}

// TestReduceSumAxesInput covers ReduceSum's opset 13 form: axes as an
// optional input, and noop_with_empty_axes.
func TestReduceSumAxesInput(t *testing.T) {
	x := cF32(sh(2, 2), 1, 2, 3, 4)
	noop := onnx.AttrInt("noop_with_empty_axes", 1)
	runVCases(t, []vCase{
		{name: "axes input", op: "ReduceSum", in: []*Tensor{x, cI64(sh(1), -1)}, want: []*Tensor{cF32(sh(2, 1), 3, 7)}},
		{name: "axes omitted reduces all", op: "ReduceSum", in: []*Tensor{x}, want: []*Tensor{cF32(sh(1, 1), 10)}},
		{name: "axes empty reduces all", op: "ReduceSum", in: []*Tensor{x, cI64(sh(0))}, want: []*Tensor{cF32(sh(1, 1), 10)}},
		{name: "axes empty with noop is identity", op: "ReduceSum", attrs: []onnx.Attr{noop}, in: []*Tensor{x, cI64(sh(0))}, want: []*Tensor{x}},
		{name: "axes omitted with noop is identity", op: "ReduceSum", attrs: []onnx.Attr{noop}, in: []*Tensor{x}, want: []*Tensor{x}},
		{name: "noop ignored when axes given", op: "ReduceSum", attrs: []onnx.Attr{noop}, in: []*Tensor{x, cI64(sh(1), 0)}, want: []*Tensor{cF32(sh(1, 2), 4, 6)}},
		{name: "axes of int32 refused", op: "ReduceSum", in: []*Tensor{x, cI32(sh(1), 0)}, wantErr: "axes must be a 1-D int64 tensor"},
		{name: "axes attribute refused at opset 13", op: "ReduceSum", attrs: []onnx.Attr{onnx.AttrInts("axes", 0)}, in: []*Tensor{x}, wantErr: `ReduceSum node "n0": axes is an input at opset 13`},
		{name: "axes attribute at opset 11", op: "ReduceSum", opset: 11, attrs: []onnx.Attr{onnx.AttrInts("axes", 0)}, in: []*Tensor{x}, want: []*Tensor{cF32(sh(1, 2), 4, 6)}},
	})
}

func TestArgMaxMin(t *testing.T) {
	x := cF32(sh(2, 3), 1, 5, 5, 7, 0, 7)
	last := onnx.AttrInt("select_last_index", 1)
	keep0 := onnx.AttrInt("keepdims", 0)
	nan := float32(math.NaN())
	runVCases(t, []vCase{
		{name: "argmax axis 0", op: "ArgMax", in: []*Tensor{x}, want: []*Tensor{cI64(sh(1, 3), 1, 0, 1)}},
		{name: "argmax ties first", op: "ArgMax", attrs: []onnx.Attr{onnx.AttrInt("axis", 1), keep0}, in: []*Tensor{x}, want: []*Tensor{cI64(sh(2), 1, 0)}},
		{name: "argmax ties last", op: "ArgMax", attrs: []onnx.Attr{onnx.AttrInt("axis", -1), keep0, last}, in: []*Tensor{x}, want: []*Tensor{cI64(sh(2), 2, 2)}},
		{name: "argmin int64", op: "ArgMin", attrs: []onnx.Attr{onnx.AttrInt("axis", 1)}, in: []*Tensor{cI64(sh(1, 3), 4, -9, 2)}, want: []*Tensor{cI64(sh(1, 1), 1)}},
		{name: "argmin uint8 last", op: "ArgMin", attrs: []onnx.Attr{last, keep0}, in: []*Tensor{cU8(sh(3), 1, 0, 0)}, want: []*Tensor{cI64(sh(), 2)}},
		{name: "argmax NaN wins", op: "ArgMax", attrs: []onnx.Attr{keep0}, in: []*Tensor{cF32(sh(3), 1, nan, 9)}, want: []*Tensor{cI64(sh(), 1)}},
		{name: "empty axis", op: "ArgMax", in: []*Tensor{cF32(sh(0, 2))}, want: []*Tensor{cI64(sh(1, 2))}, wantErr: "has no elements"},
		{name: "axis out of range", op: "ArgMin", attrs: []onnx.Attr{onnx.AttrInt("axis", 2)}, in: []*Tensor{x}, want: []*Tensor{cI64(sh(1))}, wantErr: "out of range"},
		{name: "bad select_last_index at load", op: "ArgMin", attrs: []onnx.Attr{onnx.AttrInt("select_last_index", 2)}, in: []*Tensor{x}, want: []*Tensor{cI64(sh(1))}, wantErr: `ArgMin node "n0": select_last_index is 2`},
	})
}

func TestCumSum(t *testing.T) {
	x := cF32(sh(2, 3), 1, 2, 3, 4, 5, 6)
	excl, rev := onnx.AttrInt("exclusive", 1), onnx.AttrInt("reverse", 1)
	runVCases(t, []vCase{
		{name: "axis 0", op: "CumSum", in: []*Tensor{x, cI64(sh(), 0)}, want: []*Tensor{cF32(sh(2, 3), 1, 2, 3, 5, 7, 9)}},
		{name: "negative axis int32", op: "CumSum", in: []*Tensor{x, cI32(sh(), -1)}, want: []*Tensor{cF32(sh(2, 3), 1, 3, 6, 4, 9, 15)}},
		{name: "exclusive", op: "CumSum", attrs: []onnx.Attr{excl}, in: []*Tensor{x, cI64(sh(1), 1)}, want: []*Tensor{cF32(sh(2, 3), 0, 1, 3, 0, 4, 9)}},
		{name: "reverse", op: "CumSum", attrs: []onnx.Attr{rev}, in: []*Tensor{x, cI64(sh(), 1)}, want: []*Tensor{cF32(sh(2, 3), 6, 5, 3, 15, 11, 6)}},
		{name: "reverse exclusive int64", op: "CumSum", attrs: []onnx.Attr{rev, excl}, in: []*Tensor{cI64(sh(3), 1, 2, 3), cI64(sh(), 0)}, want: []*Tensor{cI64(sh(3), 5, 3, 0)}},
		{name: "axis out of range", op: "CumSum", in: []*Tensor{x, cI64(sh(), 2)}, wantErr: "out of range"},
		{name: "axis not scalar", op: "CumSum", in: []*Tensor{x, cI64(sh(2), 0, 1)}, wantErr: "axis must be an int32 or int64 scalar"},
		{name: "bad exclusive at load", op: "CumSum", attrs: []onnx.Attr{onnx.AttrInt("exclusive", 5)}, in: []*Tensor{x, cI64(sh(), 0)}, wantErr: `CumSum node "n0": exclusive is 5`},
	})
}

func TestTopK(t *testing.T) {
	x := cF32(sh(2, 4), 3, 1, 3, 2, 0, 9, 8, 9)
	k2 := cI64(sh(1), 2)
	runVCases(t, []vCase{
		{name: "largest ties by index", op: "TopK", in: []*Tensor{x, k2}, want: []*Tensor{cF32(sh(2, 2), 3, 3, 9, 9), cI64(sh(2, 2), 0, 2, 1, 3)}},
		{name: "smallest", op: "TopK", attrs: []onnx.Attr{onnx.AttrInt("largest", 0)}, in: []*Tensor{x, k2}, want: []*Tensor{cF32(sh(2, 2), 1, 2, 0, 8), cI64(sh(2, 2), 1, 3, 0, 2)}},
		{name: "axis 0", op: "TopK", attrs: []onnx.Attr{onnx.AttrInt("axis", 0)}, in: []*Tensor{x, cI64(sh(1), 1)}, want: []*Tensor{cF32(sh(1, 4), 3, 9, 8, 9), cI64(sh(1, 4), 0, 1, 1, 1)}},
		{name: "int32 k zero", op: "TopK", in: []*Tensor{cI32(sh(3), 1, 2, 3), cI64(sh(1), 0)}, want: []*Tensor{cI32(sh(0)), cI64(sh(0))}},
		{name: "int64 all", op: "TopK", in: []*Tensor{cI64(sh(3), 5, -1, 7), cI64(sh(1), 3)}, want: []*Tensor{cI64(sh(3), 7, 5, -1), cI64(sh(3), 2, 0, 1)}},
		{name: "k too large", op: "TopK", in: []*Tensor{x, cI64(sh(1), 5)}, want: []*Tensor{x, cI64(sh(1))}, wantErr: "k is 5"},
		{name: "k of int32", op: "TopK", in: []*Tensor{x, cI32(sh(1), 1)}, want: []*Tensor{x, cI64(sh(1))}, wantErr: "k must be a 1-element int64"},
		{name: "one output at load", op: "TopK", in: []*Tensor{x, k2}, want: []*Tensor{x}, wantErr: `TopK node "n0": 1 outputs, want 2`},
	})
}

// doubleToFloat rewrites a DOUBLE tensor proto as FLOAT.
func doubleToFloat(t *testing.T, p *onnxpb.TensorProto) {
	t.Helper()
	if p.GetDataType() != int32(onnxpb.TensorProto_DOUBLE) {
		return
	}
	vals := p.GetDoubleData()
	if p.RawData != nil {
		vals = make([]float64, len(p.RawData)/8)
		for i := range vals {
			vals[i] = math.Float64frombits(binary.LittleEndian.Uint64(p.RawData[8*i:]))
		}
	}
	p.RawData, p.DoubleData, p.FloatData = nil, nil, make([]float32, len(vals))
	for i, v := range vals {
		p.FloatData[i] = float32(v)
	}
	p.DataType = proto.Int32(int32(onnxpb.TensorProto_FLOAT))
}

// TestDoubleCasesAsFloat32 runs the conformance cases whose data exist
// only in DOUBLE (CumSum, ReduceLogSumExp) in float32: the model's DOUBLE
// values and tensors are rewritten as FLOAT, and results are compared with
// float32 tolerances.
func TestDoubleCasesAsFloat32(t *testing.T) {
	root := confDir(t)
	dirs, err := filepath.Glob(filepath.Join(root, "test_cumsum_*"))
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob(filepath.Join(root, "test_reduce_log_sum_exp_*"))
	dirs = append(dirs, more...)
	if len(dirs) < 10 {
		t.Fatalf("found %d cases", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			mp := &onnxpb.ModelProto{}
			if err := proto.Unmarshal(data, mp); err != nil {
				t.Fatal(err)
			}
			for _, vi := range append(mp.Graph.Input, mp.Graph.Output...) {
				if tt := vi.GetType().GetTensorType(); tt.GetElemType() == int32(onnxpb.TensorProto_DOUBLE) {
					tt.ElemType = proto.Int32(int32(onnxpb.TensorProto_FLOAT))
				}
			}
			for _, p := range mp.Graph.Initializer {
				doubleToFloat(t, p)
			}
			m, err := LoadProto(mp)
			if err != nil {
				t.Fatal(err)
			}
			sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
			tmp := t.TempDir()
			for _, set := range sets {
				// Rewrite each data set's tensors as FLOAT into a copy.
				dst := filepath.Join(tmp, filepath.Base(set))
				if err := os.MkdirAll(dst, 0o755); err != nil {
					t.Fatal(err)
				}
				pbs, _ := filepath.Glob(filepath.Join(set, "*.pb"))
				for _, pb := range pbs {
					raw, err := os.ReadFile(pb)
					if err != nil {
						t.Fatal(err)
					}
					p := &onnxpb.TensorProto{}
					if err := proto.Unmarshal(raw, p); err != nil {
						t.Fatal(err)
					}
					doubleToFloat(t, p)
					out, err := proto.Marshal(p)
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(dst, filepath.Base(pb)), out, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := confRun(m, tmp, confCompare); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTopKMatchesStableSort compares TopK, on both its selection paths
// (small and large k), with a stable sort of many tied values.
func TestTopKMatchesStableSort(t *testing.T) {
	const l = 50
	x := New(Int32, 2, l)
	for i := range x.I32 {
		x.I32[i] = int32((i * 7919) % 5)
	}
	for _, k := range []int64{1, 3, 16, 17, 30, l} {
		for _, largest := range []int64{0, 1} {
			got, err := runAt(t, "TopK", 13, []DType{Int32, Int64}, []onnx.Attr{onnx.AttrInt("largest", largest)}, x, cI64(sh(1), k))
			if err != nil {
				t.Fatal(err)
			}
			for row := range 2 {
				src := x.I32[row*l : (row+1)*l]
				order := make([]int, l)
				for i := range order {
					order[i] = i
				}
				sort.SliceStable(order, func(a, b int) bool {
					if largest == 1 {
						return src[order[a]] > src[order[b]]
					}
					return src[order[a]] < src[order[b]]
				})
				for r := range int(k) {
					gi := got[1].I64[row*int(k)+r]
					if gi != int64(order[r]) || got[0].I32[row*int(k)+r] != src[order[r]] {
						t.Fatalf("k=%d largest=%d row %d rank %d: index %d, want %d", k, largest, row, r, gi, order[r])
					}
				}
			}
		}
	}
}
