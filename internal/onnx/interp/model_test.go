package interp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
	"outpost.dev/outpost/internal/train"
)

// mlpModel exports a small train.MLP as ONNX.
func mlpModel(t testing.TB, sizes ...int) (*train.MLP, []byte) {
	t.Helper()
	mlp := train.NewMLP(sizes, 7)
	data, err := mlp.MarshalONNX("mlp")
	if err != nil {
		t.Fatal(err)
	}
	return mlp, data
}

func mustLoad(t testing.TB, b *onnx.Builder) *Model {
	t.Helper()
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func marshal(t testing.TB, mp *onnxpb.ModelProto) []byte {
	t.Helper()
	data, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestMLPMatchesPredict(t *testing.T) {
	mlp, data := mlpModel(t, 784, 64, 32, 10)
	m, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Inputs(); len(got) != 1 || got[0].Name != train.ONNXInput || got[0].DType != Float32 || fmt.Sprint(got[0].Shape) != "[-1 784]" {
		t.Fatalf("Inputs() = %+v", got)
	}
	if got := m.Outputs(); len(got) != 1 || got[0].Name != train.ONNXOutput || fmt.Sprint(got[0].Shape) != "[-1 10]" {
		t.Fatalf("Outputs() = %+v", got)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for _, batch := range []int{1, 5, 40} {
		x := make([]float32, batch*784)
		for i := range x {
			x[i] = r.Float32()
		}
		want := mlp.Predict(x)
		res, err := m.Run(context.Background(), map[string]*Tensor{train.ONNXInput: FromFloat32(x, batch, 784)})
		if err != nil {
			t.Fatal(err)
		}
		got := res[train.ONNXOutput]
		if err := sameTensor(got, FromFloat32(want, batch, 10), 1e-4); err != nil {
			t.Errorf("batch %d: %v", batch, err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	_, mlpData := mlpModel(t, 4, 3, 2)
	base := func() *onnxpb.ModelProto {
		mp, err := onnx.Unmarshal(mlpData)
		if err != nil {
			t.Fatal(err)
		}
		return mp
	}
	edit := func(f func(mp *onnxpb.ModelProto)) []byte {
		mp := base()
		f(mp)
		return marshal(t, mp)
	}
	node := func(op, name string, in, out []string) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(name), Input: in, Output: out}
	}
	cases := []struct {
		name        string
		data        []byte
		want        string
		unsupported bool
	}{
		{name: "garbage", data: []byte("not a model \xff\xff\xff"), want: "decoding model"},
		{name: "empty", data: nil, want: "IR version 0", unsupported: true},
		{name: "no graph", data: edit(func(mp *onnxpb.ModelProto) { mp.Graph = nil }), want: "no graph"},
		{name: "opset too new", data: edit(func(mp *onnxpb.ModelProto) { mp.OpsetImport[0].Version = proto.Int64(18) }), want: "opset 18", unsupported: true},
		{name: "no default opset", data: edit(func(mp *onnxpb.ModelProto) { mp.OpsetImport[0].Domain = proto.String("com.example") }), want: "no default-domain opset"},
		{name: "op too old for opset", data: edit(func(mp *onnxpb.ModelProto) { mp.OpsetImport[0].Version = proto.Int64(12) }),
			want: "Softmax at opset 12 (node softmax", unsupported: true},
		{name: "unsupported ops named together", data: edit(func(mp *onnxpb.ModelProto) {
			mp.Graph.Node[1].OpType = proto.String("Gelu")
			mp.Graph.Node = append(mp.Graph.Node, node("Frobnicate", "f1", []string{"fc1"}, []string{"z"}))
			mp.Graph.Node = append(mp.Graph.Node, &onnxpb.NodeProto{OpType: proto.String("TreeEnsembleClassifier"), Domain: proto.String("ai.onnx.ml"), Output: []string{"w"}})
		}), want: "unsupported operators: Gelu at opset 13 (node relu0; implemented for opsets 20..20), Frobnicate (node f1), ai.onnx.ml.TreeEnsembleClassifier (node TreeEnsembleClassifier->w)", unsupported: true},
		{name: "initializer size mismatch", data: edit(func(mp *onnxpb.ModelProto) { mp.Graph.Initializer[0].RawData = mp.Graph.Initializer[0].RawData[4:] }),
			want: "bytes of raw data"},
		{name: "initializer typed size mismatch", data: edit(func(mp *onnxpb.ModelProto) {
			in := mp.Graph.Initializer[1]
			in.RawData, in.FloatData = nil, []float32{1}
		}), want: "1 values for shape [3]"},
		{name: "initializer huge dims", data: edit(func(mp *onnxpb.ModelProto) { mp.Graph.Initializer[0].Dims = []int64{1 << 40, 1 << 40} }), want: "too many elements"},
		{name: "initializer double", data: edit(func(mp *onnxpb.ModelProto) { mp.Graph.Initializer[0].DataType = proto.Int32(11) }), want: "DOUBLE", unsupported: true},
		{name: "external data", data: edit(func(mp *onnxpb.ModelProto) {
			mp.Graph.Initializer[0].DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
		}), want: "external data", unsupported: true},
		{name: "duplicate initializer", data: edit(func(mp *onnxpb.ModelProto) {
			mp.Graph.Initializer = append(mp.Graph.Initializer, mp.Graph.Initializer[0])
		}), want: "defined twice"},
		{name: "undefined input", data: edit(func(mp *onnxpb.ModelProto) { mp.Graph.Node[0].Input[0] = "nope" }), want: `uses undefined value "nope"`},
		{name: "value produced twice", data: edit(func(mp *onnxpb.ModelProto) { mp.Graph.Node[1].Output[0] = "fc0" }), want: "produced by two nodes"},
		{name: "cycle", data: edit(func(mp *onnxpb.ModelProto) { mp.Graph.Node[0].Input[0] = "relu0" }), want: "cycle"},
		{name: "output not computed", data: edit(func(mp *onnxpb.ModelProto) { mp.Graph.Output[0].Name = proto.String("nowhere") }), want: "not computed"},
		{name: "no outputs", data: edit(func(mp *onnxpb.ModelProto) { mp.Graph.Output = nil }), want: "no outputs"},
		{name: "double input", data: edit(func(mp *onnxpb.ModelProto) {
			mp.Graph.Input[0].Type.GetTensorType().ElemType = proto.Int32(11)
		}), want: `"input" has element type DOUBLE`, unsupported: true},
		{name: "sequence input", data: edit(func(mp *onnxpb.ModelProto) {
			mp.Graph.Input[0].Type = &onnxpb.TypeProto{Value: &onnxpb.TypeProto_SequenceType{SequenceType: &onnxpb.TypeProto_Sequence{}}}
		}), want: "not a tensor", unsupported: true},
		{name: "check fails", data: edit(func(mp *onnxpb.ModelProto) {
			mp.Graph.Node[0].Attribute = append(mp.Graph.Node[0].Attribute, onnx.AttrInt("transB", 7))
		}), want: `Gemm node "fc0": transB is 7`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Load(c.data)
			if err == nil {
				t.Fatalf("loaded %v", m)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			if got := errors.Is(err, ErrUnsupported); got != c.unsupported {
				t.Fatalf("errors.Is(%v, ErrUnsupported) = %v", err, got)
			}
		})
	}
}

func TestLoadSortsNodes(t *testing.T) {
	_, data := mlpModel(t, 4, 3, 2)
	mp, err := onnx.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	nodes := mp.Graph.Node
	for i, j := 0, len(nodes)-1; i < j; i, j = i+1, j-1 {
		nodes[i], nodes[j] = nodes[j], nodes[i]
	}
	m, err := Load(marshal(t, mp))
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]*Tensor{"input": cF32(sh(1, 4), 0.1, 0.2, 0.3, 0.4)}
	a, err := m.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := want.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameTensor(a["probabilities"], b["probabilities"], 0); err != nil {
		t.Fatal(err)
	}
}

func TestRunErrors(t *testing.T) {
	_, data := mlpModel(t, 4, 3, 2)
	m, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	good := cF32(sh(1, 4), 1, 2, 3, 4)
	cases := []struct {
		name string
		in   map[string]*Tensor
		want string
	}{
		{name: "missing", in: map[string]*Tensor{}, want: `missing input "input"`},
		{name: "nil", in: map[string]*Tensor{"input": nil}, want: `missing input "input"`},
		{name: "unknown", in: map[string]*Tensor{"input": good, "extra": good}, want: `unknown input "extra"`},
		{name: "wrong name", in: map[string]*Tensor{"x": good}, want: `missing input "input"`},
		{name: "dtype", in: map[string]*Tensor{"input": cI64(sh(1, 4), 1, 2, 3, 4)}, want: `input "input": element type int64, model wants float32`},
		{name: "rank", in: map[string]*Tensor{"input": cF32(sh(4), 1, 2, 3, 4)}, want: `input "input": shape [4], model wants rank 2 [?,4]`},
		{name: "static dim", in: map[string]*Tensor{"input": cF32(sh(2, 2), 1, 2, 3, 4)}, want: `shape [2,2], model wants [?,4]`},
		{name: "short data", in: map[string]*Tensor{"input": cF32(sh(2, 4), 1, 2, 3, 4)}, want: "has 4 elements, want 8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := m.Run(context.Background(), c.in)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Run(ctx, map[string]*Tensor{"input": good}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled run: %v", err)
	}
}

func TestKernelErrorNamesNode(t *testing.T) {
	b := onnx.NewBuilder("g", 13).Input("x", onnxpb.TensorProto_FLOAT, onnx.P("n")).
		Node("Reshape", "squash", []string{"x", "shape"}, []string{"y"}).
		Output("y", onnxpb.TensorProto_FLOAT, onnx.D(2), onnx.D(2))
	mp, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	mp.Graph.Initializer = append(mp.Graph.Initializer, &onnxpb.TensorProto{Name: proto.String("shape"), DataType: proto.Int32(7), Dims: []int64{2}, Int64Data: []int64{2, 2}})
	m, err := Load(marshal(t, mp))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Run(context.Background(), map[string]*Tensor{"x": cF32(sh(4), 1, 2, 3, 4)}); err != nil {
		t.Fatal(err)
	}
	_, err = m.Run(context.Background(), map[string]*Tensor{"x": cF32(sh(3), 1, 2, 3)})
	if err == nil || !strings.Contains(err.Error(), `Reshape node "squash": cannot reshape [3]`) {
		t.Fatalf("error %v", err)
	}
}

// TestBuffersNotShared checks the executor's reuse of dead intermediates:
// in-place activations must not clobber values still needed, initializers
// or inputs, and outputs never alias model data.
func TestBuffersNotShared(t *testing.T) {
	b := onnx.NewBuilder("g", 13).Input("x", onnxpb.TensorProto_FLOAT, onnx.D(2)).
		Float32("w", []float32{1, -1}, 2).
		Node("Mul", "m", []string{"x", "w"}, []string{"p"}).
		Node("Relu", "r1", []string{"p"}, []string{"q"}).    // p still used below: not in place
		Node("Add", "a", []string{"p", "q"}, []string{"s"}). // s = p + relu(p)
		Node("Relu", "r2", []string{"s"}, []string{"t"}).    // s dead after: in place
		Node("Relu", "r3", []string{"x"}, []string{"u"}).    // graph input: never in place
		Node("Identity", "i", []string{"w"}, []string{"v"}). // initializer as output: copied
		Node("Sigmoid", "sg", []string{"p"}, []string{"z"}). // p is a graph output: not in place
		Output("t", onnxpb.TensorProto_FLOAT).Output("u", onnxpb.TensorProto_FLOAT).
		Output("v", onnxpb.TensorProto_FLOAT).Output("p", onnxpb.TensorProto_FLOAT).Output("z", onnxpb.TensorProto_FLOAT)
	m := mustLoad(t, b)
	x := cF32(sh(2), 3, 4)
	for range 2 {
		res, err := m.Run(context.Background(), map[string]*Tensor{"x": x})
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]*Tensor{
			"t": cF32(sh(2), 6, 0), "u": cF32(sh(2), 3, 4), "v": cF32(sh(2), 1, -1), "p": cF32(sh(2), 3, -4),
		} {
			if err := sameTensor(res[name], want, 0); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		res["v"].F32[0] = 100 // must not change the model's initializer
	}
	if err := sameTensor(x, cF32(sh(2), 3, 4), 0); err != nil {
		t.Fatalf("input modified: %v", err)
	}
}

func TestConcurrentRuns(t *testing.T) {
	_, data := mlpModel(t, 64, 32, 10)
	m, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 9))
	const n = 16
	inputs := make([]*Tensor, n)
	wants := make([]*Tensor, n)
	for i := range inputs {
		inputs[i] = randTensor(r, 1+i%4, 64)
		res, err := m.Run(context.Background(), map[string]*Tensor{"input": inputs[i]})
		if err != nil {
			t.Fatal(err)
		}
		wants[i] = res["probabilities"]
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 50 {
				i := (g + k) % n
				res, err := m.Run(context.Background(), map[string]*Tensor{"input": inputs[i]})
				if err == nil {
					err = sameTensor(res["probabilities"], wants[i], 0)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestConstantFolded(t *testing.T) {
	val := &onnxpb.TensorProto{DataType: proto.Int32(7), Dims: []int64{2}, Int64Data: []int64{-1, 2}}
	b := onnx.NewBuilder("g", 13).Input("x", onnxpb.TensorProto_FLOAT, onnx.D(2), onnx.D(2)).
		Node("Constant", "c", nil, []string{"shape"}, &onnxpb.AttributeProto{Name: proto.String("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: val}).
		Node("Reshape", "r", []string{"x", "shape"}, []string{"y"}).
		Output("y", onnxpb.TensorProto_FLOAT)
	m := mustLoad(t, b)
	if len(m.steps) != 1 {
		t.Fatalf("%d steps, want the Constant folded away", len(m.steps))
	}
	res, err := m.Run(context.Background(), map[string]*Tensor{"x": cF32(sh(2, 2), 1, 2, 3, 4)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sameTensor(res["y"], cF32(sh(2, 2), 1, 2, 3, 4), 0); err != nil {
		t.Fatal(err)
	}
}
