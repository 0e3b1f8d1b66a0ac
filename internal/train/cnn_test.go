package train

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// The CNN the quick tests share: one epoch on the subset, lr 3e-3, batch 32
// (on its first 1000 images under the race detector, which slows training
// tenfold).
var (
	cnnOnce sync.Once
	cnn     *CNN
	cnnAcc  float64
	cnnErr  error
)

func smallCNN(t testing.TB) (*CNN, float64) {
	tr, te := subset(t)
	if raceEnabled {
		tr = tr.Slice(0, 1000)
	}
	cnnOnce.Do(func() {
		cnn = NewCNN(1)
		if _, cnnErr = cnn.Train(context.Background(), tr, TrainOptions{Epochs: 1, LR: 3e-3, BatchSize: 32}); cnnErr != nil {
			return
		}
		cnnAcc, cnnErr = cnn.Evaluate(te)
	})
	if cnnErr != nil {
		t.Fatal(cnnErr)
	}
	return cnn, cnnAcc
}

func TestCNNReachesAccuracy(t *testing.T) {
	if raceEnabled {
		t.Skip("trained on a sixth of the data under the race detector; accuracy is checked without -race")
	}
	c, acc := smallCNN(t)
	t.Logf("CNN, 1 epoch: test accuracy %.1f%% (%d parameters)", 100*acc, c.NumParams())
	if acc < 0.75 {
		t.Fatalf("test accuracy %.3f, want >= 0.75", acc)
	}
	// Predict gives distributions, and their argmax is right on exactly
	// the images Evaluate counts right, one image at a time.
	_, te := subset(t)
	const n = 200
	x := make([]float32, n*784)
	labels := make([]int, n)
	for i := range n {
		labels[i] = te.Sample(i, x[i*784:(i+1)*784])
	}
	p := c.Predict(x)
	for i := range n {
		row := p[i*10 : (i+1)*10]
		var s float64
		for _, v := range row {
			s += float64(v)
		}
		if math.Abs(s-1) > 1e-4 {
			t.Fatalf("sample %d: probabilities sum to %v", i, s)
		}
		evalAcc, err := c.Evaluate(te.Slice(i, i+1))
		if err != nil {
			t.Fatal(err)
		}
		if right := argmax(row) == labels[i]; right != (evalAcc == 1) {
			t.Fatalf("test image %d: Predict right %v, Evaluate's accuracy %v", i, right, evalAcc)
		}
	}
}

func TestCNNDeterministic(t *testing.T) {
	tr, _ := subset(t)
	part := tr.Slice(0, 300)
	run := func(workers int, opt Optimizer) []byte {
		c := NewCNN(7)
		if _, err := c.Train(context.Background(), part, TrainOptions{Epochs: 1, BatchSize: 50, Workers: workers, Optimizer: opt}); err != nil {
			t.Fatal(err)
		}
		b, err := c.MarshalONNX("det")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, opt := range []Optimizer{Adam, SGDMomentum} {
		a, b, c := run(1, opt), run(1, opt), run(3, opt)
		if !bytes.Equal(a, b) {
			t.Fatalf("optimizer %d: two identical runs gave different models", opt)
		}
		if !bytes.Equal(a, c) {
			t.Fatalf("optimizer %d: 1 and 3 workers gave different models", opt)
		}
	}
}

// The analytic gradient of every parameter tensor matches central finite
// differences of the loss (in float64 terms, on a few coordinates each), for
// the default widths and others.
func TestCNNGradientCheck(t *testing.T) {
	tr, _ := subset(t)
	for _, w := range [][2]int{{CNNConv1, CNNConv2}, {3, 5}} {
		t.Run(fmt.Sprintf("%dx%d", w[0], w[1]), func(t *testing.T) {
			c := NewCNNWidths(w[0], w[1], 9)
			// Nonzero biases, positive and negative, keep the blank background of the
			// images off ReLU's kink at 0, where finite differences mislead.
			for i := range c.Conv1B {
				c.Conv1B[i] = 0.05 * float32(2*(i%2)-1)
			}
			for i := range c.Conv2B {
				c.Conv2B[i] = 0.03 * float32(2*(i%2)-1)
			}
			const n = 3
			xs := make([][]float32, n)
			ys := make([]int, n)
			for i := range n {
				xs[i] = make([]float32, 784)
				ys[i] = tr.Sample(i, xs[i])
			}
			// Loss of the batch, as the mean cross-entropy.
			meanLoss := func() float64 {
				s := c.newScratch(true)
				var sum float64
				for i := range n {
					copy(s.x, xs[i])
					c.forward(s)
					zy := float64(s.logits[ys[i]])
					sum += softmaxRow(s.logits) - zy
				}
				return sum / n
			}
			g := newCNNGrads(c)
			s := c.newScratch(true)
			for i := range n {
				copy(s.x, xs[i])
				c.forward(s)
				if _, err := c.backward(s, g, ys[i], i, 1.0/n); err != nil {
					t.Fatal(err)
				}
			}
			names := []string{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"}
			for pi, p := range c.params() {
				for _, j := range []int{0, len(p) / 3, len(p) / 2, len(p) - 1} {
					orig := p[j]
					const h = 1e-3
					p[j] = orig + h
					lp := meanLoss()
					p[j] = orig - h
					lm := meanLoss()
					p[j] = orig
					num := (lp - lm) / (2 * h)
					ana := float64(g[pi][j])
					if math.Abs(num-ana) > 2e-3+0.05*math.Abs(num) {
						t.Errorf("%s[%d]: analytic %.6f, numeric %.6f", names[pi], j, ana, num)
					}
				}
			}
		})
	}
}

func TestCNNTrainErrors(t *testing.T) {
	tr, _ := subset(t)
	c := NewCNN(1)
	ctx := context.Background()
	if _, err := c.Train(ctx, tr, TrainOptions{FrozenLayers: 1}); err == nil {
		t.Error("frozen layers accepted")
	}
	if _, err := c.Train(ctx, tr, TrainOptions{LR: -1}); err == nil {
		t.Error("negative learning rate accepted")
	}
	if _, err := c.Train(ctx, tr, TrainOptions{Optimizer: 9}); err == nil {
		t.Error("unknown optimizer accepted")
	}
	if _, err := c.Train(ctx, tr.Slice(0, 0), TrainOptions{}); err == nil {
		t.Error("empty data set accepted")
	}
	small := &dataset.Set{Rows: 10, Cols: 10, Classes: 10, Images: make([]byte, 100), Labels: []uint8{1}}
	if _, err := c.Train(ctx, small, TrainOptions{}); err == nil {
		t.Error("10x10 images accepted")
	}
	if _, err := c.Evaluate(small); err == nil {
		t.Error("Evaluate took 10x10 images")
	}
	bad := &dataset.Set{Rows: 28, Cols: 28, Classes: 10, Images: make([]byte, 784), Labels: []uint8{12}}
	if _, err := c.Train(ctx, bad, TrainOptions{}); err == nil {
		t.Error("label 12 accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	before := c.Clone()
	if _, err := c.Train(cctx, tr, TrainOptions{}); err == nil {
		t.Error("canceled context ignored")
	}
	if !slices.Equal(before.FCW, c.FCW) {
		t.Error("a canceled run changed the weights")
	}
}

func TestCNNExportDeterministic(t *testing.T) {
	c, _ := smallCNN(t)
	a, err := c.MarshalONNX("fashion-cnn")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Clone().MarshalONNX("fashion-cnn")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("exporting twice gave different bytes")
	}
	mp, err := onnx.Unmarshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, n := range mp.Graph.Node {
		ops = append(ops, n.GetOpType())
	}
	want := []string{"Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Softmax"}
	if !slices.Equal(ops, want) {
		t.Fatalf("ops %v, want %v", ops, want)
	}
	if mp.OpsetImport[0].GetVersion() != ONNXOpset {
		t.Fatalf("opset %d", mp.OpsetImport[0].GetVersion())
	}
}

// The exported CNN passes ONNX's checker (with shape inference), and the
// graph evaluated by numpy from the file's own tensors gives Predict's
// probabilities.
func TestCNNExportPassesONNXChecker(t *testing.T) {
	py := requirePythonONNX(t)
	c, _ := smallCNN(t)
	data, err := c.MarshalONNX("fashion-cnn")
	if err != nil {
		t.Fatal(err)
	}
	script := `import sys, json, numpy as np, onnx
from onnx import numpy_helper, helper
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
g = m.graph
w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
v = {g.input[0].name: np.fromfile(sys.argv[2], dtype="<f4").reshape(-1, 1, 28, 28).astype(np.float64)}
def conv(x, W, b):  # 3x3, pad 1, stride 1
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((n, W.shape[0], h, wd)) + b[None, :, None, None]
    for ky in range(3):
        for kx in range(3):
            y += np.einsum("nchw,oc->nohw", xp[:, :, ky:ky+h, kx:kx+wd], W[:, :, ky, kx])
    return y
def pool(x):
    n, c, h, wd = x.shape
    return x.reshape(n, c, h//2, 2, wd//2, 2).max(axis=(3, 5))
for nd in g.node:
    a = [v[i] if i in v else w[i] for i in nd.input]
    at = {x.name: helper.get_attribute_value(x) for x in nd.attribute}
    o = nd.op_type
    if o == "Conv":
        assert list(at["kernel_shape"]) == [3, 3] and list(at["pads"]) == [1, 1, 1, 1]
        r = conv(a[0], a[1], a[2])
    elif o == "Relu":
        r = np.maximum(a[0], 0)
    elif o == "MaxPool":
        assert list(at["kernel_shape"]) == [2, 2] and list(at["strides"]) == [2, 2]
        r = pool(a[0])
    elif o == "Flatten":
        r = a[0].reshape(a[0].shape[0], -1)
    elif o == "Gemm":
        r = a[0] @ a[1] + a[2]
    elif o == "Softmax":
        e = np.exp(a[0] - a[0].max(axis=1, keepdims=True))
        r = e / e.sum(axis=1, keepdims=True)
    else:
        raise SystemExit("unexpected op " + o)
    v[nd.output[0]] = r
print(json.dumps({"version": onnx.__version__, "ops": [nd.op_type for nd in g.node],
    "out": v[g.output[0].name].ravel().tolist()}))`
	res, x := numpyEval(t, py, data, 4, script)
	res.expect(t, c.Predict(x))
	t.Logf("onnx %s checker passed (ops %v); numpy evaluation matches Predict within 1e-4", res.Version, res.Ops)
}

func BenchmarkCNNTrainEpoch(b *testing.B) {
	tr, _ := subset(b)
	part := tr.Slice(0, 1024)
	for b.Loop() {
		c := NewCNN(1)
		if _, err := c.Train(context.Background(), part, TrainOptions{Workers: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

// testCNN is a default CNN with random weights and biases, none of them zero.
func testCNN() *CNN { return testCNNWidths(CNNConv1, CNNConv2) }

// testCNNWidths is testCNN of other widths.
func testCNNWidths(c1, c2 int) *CNN {
	c := NewCNNWidths(c1, c2, 5)
	for i, b := range [][]float32{c.Conv1B, c.Conv2B, c.FCB} {
		for j := range b {
			b[j] = 0.01 * float32((i+1)*(j+1)%7-3)
		}
	}
	return c
}

// A CNN of any widths exported and read back has the same weights, gives
// the same predictions, and exports to the same bytes, whose metadata says
// its widths.
func TestCNNImportRoundTrip(t *testing.T) {
	_, te := subset(t)
	const n = 16
	x := make([]float32, n*784)
	for i := range n {
		te.Sample(i, x[i*784:(i+1)*784])
	}
	for _, w := range [][2]int{{CNNConv1, CNNConv2}, {3, 5}, {1, 1}, {12, 2}} {
		t.Run(fmt.Sprintf("%dx%d", w[0], w[1]), func(t *testing.T) {
			c := testCNNWidths(w[0], w[1])
			data, err := c.MarshalONNX("fashion-cnn")
			if err != nil {
				t.Fatal(err)
			}
			back, err := ImportCNN(data)
			if err != nil {
				t.Fatal(err)
			}
			if c1, c2 := back.Widths(); c1 != w[0] || c2 != w[1] {
				t.Fatalf("read back widths %d and %d", c1, c2)
			}
			for i, p := range c.params() {
				if !slices.Equal(back.params()[i], p) {
					t.Fatalf("tensor %d differs after the round trip", i)
				}
			}
			if !slices.Equal(back.Predict(x), c.Predict(x)) {
				t.Fatal("the imported CNN predicts otherwise")
			}
			again, err := back.MarshalONNX("fashion-cnn")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, data) {
				t.Fatal("import then export changed the bytes")
			}
			mp, err := onnx.Unmarshal(data)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("cnn-%d-%d-10", w[0], w[1])
			if i := slices.IndexFunc(mp.MetadataProps, func(p *onnxpb.StringStringEntryProto) bool {
				return p.GetKey() == "outpost.train.arch" && p.GetValue() == want
			}); i < 0 {
				t.Errorf("metadata %v, want outpost.train.arch %s", mp.MetadataProps, want)
			}
		})
	}
	if _, err := (&CNN{Conv1B: make([]float32, 2)}).MarshalONNX("x"); err == nil {
		t.Error("a CNN of missing tensors exported")
	}
}

// cnnProto is testCNN's exported graph, decoded, to change in tests.
func cnnProto(t *testing.T) *onnxpb.ModelProto {
	t.Helper()
	data, err := testCNN().MarshalONNX("fashion-cnn")
	if err != nil {
		t.Fatal(err)
	}
	mp, err := onnx.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return mp
}

func marshalProto(t *testing.T, mp *onnxpb.ModelProto) []byte {
	t.Helper()
	b, err := onnx.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nodeOf returns the node of mp whose first output is out.
func nodeOf(mp *onnxpb.ModelProto, out string) *onnxpb.NodeProto {
	for _, n := range mp.Graph.Node {
		if n.Output[0] == out {
			return n
		}
	}
	panic("no node makes " + out)
}

// initOf returns the initializer name of mp.
func initOf(mp *onnxpb.ModelProto, name string) *onnxpb.TensorProto {
	for _, t := range mp.Graph.Initializer {
		if t.GetName() == name {
			return t
		}
	}
	panic("no initializer " + name)
}

// What differs from the exported CNN only in what does not change its
// function is read; anything else is refused with an error that names it.
func TestImportCNNRefuses(t *testing.T) {
	mlp, err := NewMLP([]int{784, 8, 10}, 1).MarshalONNX("mlp")
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name   string
		change func(mp *onnxpb.ModelProto)
		want   string
	}{
		{"opset 12", func(mp *onnxpb.ModelProto) { mp.OpsetImport[0].Version = proto.Int64(12) }, "operator sets [ai.onnx 12], the CNN's are [ai.onnx 13]"},
		{"other domain", func(mp *onnxpb.ModelProto) {
			mp.OpsetImport = append(mp.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String("com.microsoft"), Version: proto.Int64(1)})
		}, "com.microsoft 1"},
		{"input renamed", func(mp *onnxpb.ModelProto) { mp.Graph.Input[0].Name = proto.String("x") }, `graph input "x" FLOAT [N 1 28 28], the CNN's is "input"`},
		{"32x32 images", func(mp *onnxpb.ModelProto) {
			d := mp.Graph.Input[0].Type.GetTensorType().Shape.Dim
			d[2].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 32}
		}, `[N 1 32 28]`},
		{"double input", func(mp *onnxpb.ModelProto) {
			mp.Graph.Input[0].Type.GetTensorType().ElemType = proto.Int32(int32(onnxpb.TensorProto_DOUBLE))
		}, `"input" DOUBLE`},
		{"two inputs", func(mp *onnxpb.ModelProto) { mp.Graph.Input = append(mp.Graph.Input, mp.Graph.Input[0]) }, "graph input"},
		{"five classes", func(mp *onnxpb.ModelProto) {
			mp.Graph.Output[0].Type.GetTensorType().Shape.Dim[1].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 5}
		}, `graph output "probabilities" FLOAT [N 5]`},
		{"average pooling", func(mp *onnxpb.ModelProto) { nodeOf(mp, "pool1").OpType = proto.String("AveragePool") }, "node 2 (AveragePool): the CNN's node 2 is MaxPool"},
		{"custom domain", func(mp *onnxpb.ModelProto) { nodeOf(mp, "relu1").Domain = proto.String("x") }, "node 1 (Relu)"},
		{"5x5 kernel", func(mp *onnxpb.ModelProto) { nodeOf(mp, "conv2").Attribute[0] = onnx.AttrInts("kernel_shape", 5, 5) }, "node 3 (Conv): attributes {kernel_shape=[5 5] pads=[1 1 1 1] strides=[1 1]}"},
		{"dilation", func(mp *onnxpb.ModelProto) {
			n := nodeOf(mp, "conv1")
			n.Attribute = append(n.Attribute, onnx.AttrInts("dilations", 2, 2))
		}, "dilations=[2 2]"},
		{"softmax axis", func(mp *onnxpb.ModelProto) { nodeOf(mp, ONNXOutput).Attribute[0] = onnx.AttrInt("axis", -1) }, "axis=-1"},
		{"skipped relu", func(mp *onnxpb.ModelProto) { nodeOf(mp, "pool2").Input[0] = "conv2" }, `node 5 (MaxPool): inputs ["conv2"], the CNN's are ["relu2"]`},
		{"output renamed", func(mp *onnxpb.ModelProto) { nodeOf(mp, "fc").Output[0] = "logits" }, `outputs ["logits"]`},
		{"extra node", func(mp *onnxpb.ModelProto) {
			mp.Graph.Node = append(mp.Graph.Node, &onnxpb.NodeProto{OpType: proto.String("Identity"), Input: []string{ONNXOutput}, Output: []string{"y"}})
		}, "10 nodes, the CNN's has 9 (Conv, Relu, MaxPool, Conv, Relu, MaxPool, Flatten, Gemm, Softmax)"},
		{"missing bias", func(mp *onnxpb.ModelProto) { mp.Graph.Initializer = mp.Graph.Initializer[:5] }, "5 initializers, the CNN's has 6"},
		{"bias twice", func(mp *onnxpb.ModelProto) {
			mp.Graph.Initializer[5] = proto.Clone(mp.Graph.Initializer[1]).(*onnxpb.TensorProto)
		}, `initializer "conv1.bias" is not one of the CNN's (or appears twice)`},
		{"renamed weights", func(mp *onnxpb.ModelProto) { initOf(mp, "fc.weight").Name = proto.String("fc.w") }, `initializer "fc.w" is not one of`},
		{"transposed fc", func(mp *onnxpb.ModelProto) { initOf(mp, "fc.weight").Dims = []int64{10, 784} }, `initializer "fc.weight" has dims [10 784], the CNN's (of widths 8 and 16, read from the biases) are [784 10]`},
		{"widths that disagree", func(mp *onnxpb.ModelProto) {
			b := initOf(mp, "conv1.bias")
			b.Dims, b.RawData = []int64{4}, b.RawData[:16]
		}, `initializer "conv1.weight" has dims [8 1 3 3], the CNN's (of widths 4 and 16, read from the biases) are [4 1 3 3]`},
		{"bias of two dimensions", func(mp *onnxpb.ModelProto) { initOf(mp, "conv2.bias").Dims = []int64{4, 4} }, `initializer "conv2.bias" has dims [4 4], the CNN's are [C] for a width C from 1 to 65536`},
		{"width 0", func(mp *onnxpb.ModelProto) {
			b := initOf(mp, "conv2.bias")
			b.Dims, b.RawData = []int64{0}, nil
		}, `initializer "conv2.bias" has dims [0]`},
		{"no conv1 bias", func(mp *onnxpb.ModelProto) { initOf(mp, "conv1.bias").Name = proto.String("conv1.b") }, `graph has no initializer "conv1.bias"`},
		{"double weights", func(mp *onnxpb.ModelProto) {
			initOf(mp, "conv2.bias").DataType = proto.Int32(int32(onnxpb.TensorProto_DOUBLE))
		}, `tensor "conv2.bias": data type 11, want FLOAT`},
		{"short raw data", func(mp *onnxpb.ModelProto) {
			w := initOf(mp, "conv1.weight")
			w.RawData = w.RawData[:8]
		}, `tensor "conv1.weight": 8 raw bytes`},
		{"sparse initializer", func(mp *onnxpb.ModelProto) {
			mp.Graph.SparseInitializer = append(mp.Graph.SparseInitializer, &onnxpb.SparseTensorProto{})
		}, "1 sparse initializers"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			mp := cnnProto(t)
			tc.change(mp)
			_, err := ImportCNN(marshalProto(t, mp))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ImportCNN = %v, want an error with %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, data, want string }{
		{"garbage", "not a model", "decoding model"},
		{"empty", "", "no graph"},
		{"an MLP", string(mlp), "graph input \"input\" FLOAT [N 784], the CNN's is \"input\" FLOAT [N 1 28 28]"},
	} {
		if _, err := ImportCNN([]byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ImportCNN = %v, want an error with %q", tc.name, err, tc.want)
		}
	}

	// What does not change the function is read.
	accepted := []struct {
		name   string
		change func(mp *onnxpb.ModelProto)
	}{
		{"renamed graph, doc and metadata", func(mp *onnxpb.ModelProto) {
			mp.Graph.Name = proto.String("other")
			mp.DocString = nil
			mp.MetadataProps = nil
			mp.ProducerName = proto.String("someone")
		}},
		{"fixed batch", func(mp *onnxpb.ModelProto) {
			mp.Graph.Input[0].Type.GetTensorType().Shape.Dim[0].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 1}
		}},
		{"unnamed nodes, attributes reordered", func(mp *onnxpb.ModelProto) {
			for _, n := range mp.Graph.Node {
				n.Name = nil
				slices.Reverse(n.Attribute)
			}
		}},
		{"float_data and initializers reordered", func(mp *onnxpb.ModelProto) {
			for _, t := range mp.Graph.Initializer {
				v, err := onnx.Float32Data(t)
				if err != nil {
					panic(err)
				}
				t.RawData, t.FloatData = nil, v
			}
			slices.Reverse(mp.Graph.Initializer)
		}},
	}
	want := testCNN()
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			mp := cnnProto(t)
			tc.change(mp)
			got, err := ImportCNN(marshalProto(t, mp))
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range want.params() {
				if !slices.Equal(got.params()[i], p) {
					t.Fatalf("tensor %d differs", i)
				}
			}
		})
	}
}

func FuzzImportCNN(f *testing.F) {
	good, err := testCNN().MarshalONNX("f")
	if err != nil {
		f.Fatal(err)
	}
	mlp, err := NewMLP([]int{784, 3, 10}, 1).MarshalONNX("f")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(mlp)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ImportCNN(data)
		if err != nil {
			return
		}
		// Whatever was accepted is a CNN of consistent shapes that runs.
		c1, c2 := c.Widths()
		shape := NewCNNWidths(c1, c2, 1)
		for i, p := range c.params() {
			if len(p) != len(shape.params()[i]) {
				t.Fatalf("tensor %d has %d values, want %d", i, len(p), len(shape.params()[i]))
			}
		}
		if p := c.Predict(make([]float32, cnnInDim)); len(p) != CNNClasses {
			t.Fatalf("%d probabilities", len(p))
		}
		// And it exports to a file that reads back as the same bits.
		again, err := c.MarshalONNX("f")
		if err != nil {
			t.Fatal(err)
		}
		back, err := ImportCNN(again)
		if err != nil {
			t.Fatalf("the export of an accepted CNN is refused: %v", err)
		}
		for i, p := range c.params() {
			for j, v := range p {
				if math.Float32bits(back.params()[i][j]) != math.Float32bits(v) {
					t.Fatalf("tensor %d[%d]: %v read back as %v", i, j, v, back.params()[i][j])
				}
			}
		}
	})
}
