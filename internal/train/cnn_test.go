package train

import (
	"bytes"
	"context"
	"math"
	"slices"
	"sync"
	"testing"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx"
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
// differences of the loss (in float64 terms, on a few coordinates each).
func TestCNNGradientCheck(t *testing.T) {
	tr, _ := subset(t)
	c := NewCNN(3)
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
		s := newCNNScratch(true)
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
	s := newCNNScratch(true)
	for i := range n {
		copy(s.x, xs[i])
		c.forward(s)
		c.backward(s, g, ys[i], 1.0/n)
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
