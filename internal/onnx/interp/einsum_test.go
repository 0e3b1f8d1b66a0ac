package interp

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// float64ToFloat32 rewrites a DOUBLE tensor proto as FLOAT.
func float64ToFloat32(p *onnxpb.TensorProto) {
	if p.GetDataType() != int32(onnxpb.TensorProto_DOUBLE) {
		return
	}
	vals := p.GetDoubleData()
	if raw := p.GetRawData(); len(raw) > 0 {
		vals = make([]float64, len(raw)/8)
		for i := range vals {
			vals[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	}
	p.DataType = proto.Int32(int32(onnxpb.TensorProto_FLOAT))
	p.RawData, p.DoubleData, p.FloatData = nil, nil, make([]float32, len(vals))
	for i, v := range vals {
		p.FloatData[i] = float32(v)
	}
}

// TestEinsumConformanceFloat32 runs ONNX's Einsum node tests, which are
// all float64, with their model and tensors converted to float32.
func TestEinsumConformanceFloat32(t *testing.T) {
	root := confDir(t)
	dirs, _ := filepath.Glob(filepath.Join(root, "test_einsum_*"))
	if len(dirs) == 0 {
		t.Fatal("no Einsum cases")
	}
	readPB := func(t *testing.T, path string) *Tensor {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		p := &onnxpb.TensorProto{}
		if err := proto.Unmarshal(data, p); err != nil {
			t.Fatal(err)
		}
		float64ToFloat32(p)
		x, err := TensorFromProto(p)
		if err != nil {
			t.Fatal(err)
		}
		return x
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
			for _, vi := range append(mp.GetGraph().GetInput(), mp.GetGraph().GetOutput()...) {
				if tt := vi.GetType().GetTensorType(); tt.GetElemType() == int32(onnxpb.TensorProto_DOUBLE) {
					tt.ElemType = proto.Int32(int32(onnxpb.TensorProto_FLOAT))
				}
			}
			m, err := LoadProto(mp)
			if err != nil {
				t.Fatal(err)
			}
			sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
			for _, set := range sets {
				in := map[string]*Tensor{}
				for i, p := range confPBs(set, "input") {
					in[m.Inputs()[i].Name] = readPB(t, p)
				}
				got, err := m.Run(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				for i, p := range confPBs(set, "output") {
					if err := confCompare(got[m.Outputs()[i].Name], readPB(t, p)); err != nil {
						t.Fatalf("%s: %v", filepath.Base(set), err)
					}
				}
			}
		})
	}
}

func TestEinsum(t *testing.T) {
	eq := func(s string) []*onnxpb.AttributeProto { return attrList(onnx.AttrString("equation", s)) }
	a := iota32(2, 3)
	q := iota32(1, 2, 2, 3) // b h q d
	k := cF32(sh(1, 2, 1, 3), 1, 0, 0, 0, 0, 1)
	runMultiCases(t, []multiCase{
		{name: "attention scores", op: "Einsum", attrs: eq("bhqd,bhkd->bhqk"), in: []*Tensor{q, k},
			want: []*Tensor{cF32(sh(1, 2, 2, 1), 0, 3, 8, 11)}},
		{name: "matmul", op: "Einsum", attrs: eq("ij,jk->ik"), in: []*Tensor{a, cF32(sh(3, 1), 1, 1, 1)}, want: []*Tensor{cF32(sh(2, 1), 3, 12)}},
		{name: "transposed result", op: "Einsum", attrs: eq("ij,jk->ki"), in: []*Tensor{a, cF32(sh(3, 2), 1, 0, 0, 1, 0, 0)},
			want: []*Tensor{cF32(sh(2, 2), 0, 3, 1, 4)}},
		{name: "outer product", op: "Einsum", attrs: eq("i,j->ij"), in: []*Tensor{cF32(sh(2), 1, 2), cF32(sh(2), 3, 4)},
			want: []*Tensor{cF32(sh(2, 2), 3, 4, 6, 8)}},
		{name: "sum a label only one operand has", op: "Einsum", attrs: eq("ij,k->ik"), in: []*Tensor{a, cF32(sh(2), 1, 2)},
			want: []*Tensor{cF32(sh(2, 2), 3, 6, 12, 24)}},
		{name: "implicit output", op: "Einsum", attrs: eq("ji"), in: []*Tensor{a}, want: []*Tensor{cF32(sh(3, 2), 0, 3, 1, 4, 2, 5)}},
		{name: "int64 column sums", op: "Einsum", attrs: eq("ij->j"), in: []*Tensor{cI64(sh(2, 2), 1, 2, 3, 4)}, want: []*Tensor{cI64(sh(2), 4, 6)}},
		{name: "identity copies", op: "Einsum", attrs: eq("ij->ij"), in: []*Tensor{a}, want: []*Tensor{a}},
		{name: "trace", op: "Einsum", attrs: eq("ii->"), in: []*Tensor{cF32(sh(2, 2), 1, 2, 3, 4)}, want: []*Tensor{cF32(sh(), 5)}},
		{name: "size mismatch", op: "Einsum", attrs: eq("ij,jk"), in: []*Tensor{a, a}, wantErr: "sizes"},
		{name: "int64 product", op: "Einsum", attrs: eq("i,i"), in: []*Tensor{cI64(sh(1), 1), cI64(sh(1), 1)}, wantErr: "only float32"},
		{name: "bad label", op: "Einsum", attrs: eq("i1->i"), in: []*Tensor{a}, wantErr: `Einsum node "n0": attribute equation`},
		{name: "operand count", op: "Einsum", attrs: eq("ij,jk->ik"), in: []*Tensor{a}, wantErr: "2 operands for 1 inputs"},
		{name: "unknown output label", op: "Einsum", attrs: eq("ij->k"), in: []*Tensor{a}, wantErr: "not in any operand"},
		{name: "three operands", op: "Einsum", attrs: eq("i,i,i"), in: []*Tensor{cF32(sh(1), 1), cF32(sh(1), 1), cF32(sh(1), 1)}, wantErr: "not supported"},
	})
}
