package zoo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
	"outpost.dev/outpost/internal/train"
)

// Recipes of the zoo's models: what `go run ./internal/zoo/gen` trains.
var (
	// MLPSizes is the architecture of mlp.onnx.
	MLPSizes = []int{784, 256, 10}
	// MLPOptions trains mlp.onnx from train.NewMLP(MLPSizes, 1).
	MLPOptions = train.TrainOptions{Epochs: 4}
	// CNNOptions trains cnn.onnx from train.NewCNN(1).
	CNNOptions = train.TrainOptions{Epochs: 4, LR: 3e-3, BatchSize: 32}
)

// Built is a model made by Build, with its serialized bytes.
type Built struct {
	Model
	Data []byte
}

// Build trains the zoo's models on trainSet and measures them on testSet,
// deterministically: the same data give the same bytes (on one CPU
// architecture; compilers may fuse multiply-adds differently on others).
// Accuracies are measured by running each ONNX file with the Go runtime.
// logf, when set, receives progress lines.
func Build(ctx context.Context, trainSet, testSet *dataset.Set, logf func(format string, args ...any)) ([]Built, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	start := time.Now()
	mlp := train.NewMLP(MLPSizes, 1)
	if _, err := mlp.Train(ctx, trainSet, MLPOptions); err != nil {
		return nil, fmt.Errorf("zoo: training the MLP: %w", err)
	}
	logf("trained MLP %v in %v", MLPSizes, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	cnn := train.NewCNN(1)
	if _, err := cnn.Train(ctx, trainSet, CNNOptions); err != nil {
		return nil, fmt.Errorf("zoo: training the CNN: %w", err)
	}
	logf("trained CNN in %v", time.Since(start).Round(time.Millisecond))

	mlpData, err := mlp.MarshalONNX("fashion-mlp")
	if err != nil {
		return nil, err
	}
	cnnData, err := cnn.MarshalONNX("fashion-cnn")
	if err != nil {
		return nil, err
	}
	qData, err := QuantizeMLP(mlp, "fashion-mlp-int8")
	if err != nil {
		return nil, err
	}
	out := []Built{
		{Model: Model{Name: "mlp", File: "mlp.onnx", Input: []int{784},
			Description: "multilayer perceptron 784-256-10 (Gemm, Relu, Softmax)",
			Recipe:      fmt.Sprintf("train.NewMLP(%v, 1), Adam lr 1e-3, batch 64, %d epochs", MLPSizes, MLPOptions.Epochs),
			Params:      mlp.NumParams()}, Data: mlpData},
		{Model: Model{Name: "cnn", File: "cnn.onnx", Input: []int{1, 28, 28},
			Description: "CNN conv3x3(8)-pool-conv3x3(16)-pool-fc(10) (Conv, Relu, MaxPool, Flatten, Gemm, Softmax)",
			Recipe:      fmt.Sprintf("train.NewCNN(1), Adam lr %g, batch %d, %d epochs", CNNOptions.LR, CNNOptions.BatchSize, CNNOptions.Epochs),
			Params:      cnn.NumParams()}, Data: cnnData},
		{Model: Model{Name: "mlp-int8", File: "mlp-int8.onnx", Input: []int{784},
			Description: "mlp.onnx with an int8 first layer (QuantizeLinear, MatMulInteger, DequantizeLinear, Add, Relu, Gemm, Softmax)",
			Recipe:      "mlp.onnx; layer 1: uint8 pixels x per-column symmetric 7-bit int8 weights (MatMulInteger), int32 sums dequantized per column; layer 2 float",
			Params:      mlp.NumParams()}, Data: qData},
	}
	for i := range out {
		b := &out[i]
		sum := sha256.Sum256(b.Data)
		b.SHA256 = hex.EncodeToString(sum[:])
		b.Bytes = len(b.Data)
		m, err := interp.Load(b.Data)
		if err != nil {
			return nil, fmt.Errorf("zoo: the Go runtime cannot load %s: %w", b.File, err)
		}
		acc, err := Accuracy(ctx, m, b.Model, testSet)
		if err != nil {
			return nil, fmt.Errorf("zoo: %s: %w", b.File, err)
		}
		b.TestAccuracy = math.Round(acc*1e4) / 1e4
		logf("%s: %d bytes, test accuracy %.2f%%", b.File, b.Bytes, 100*acc)
	}
	return out, nil
}

// Runner is what Accuracy runs: interp.Model and serving sessions have it.
type Runner interface {
	Run(ctx context.Context, in map[string]*interp.Tensor) (map[string]*interp.Tensor, error)
}

// Accuracy runs m (a zoo model described by desc) on every image of set, in
// batches of 100, and returns the share whose most probable class is the label.
func Accuracy(ctx context.Context, m Runner, desc Model, set *dataset.Set) (float64, error) {
	right := 0
	for lo := 0; lo < set.Len(); lo += 100 {
		n := min(100, set.Len()-lo)
		out, err := m.Run(ctx, map[string]*interp.Tensor{InputName: desc.Batch(set, lo, n)})
		if err != nil {
			return 0, err
		}
		p := out[OutputName]
		if p == nil || p.DType != interp.Float32 || len(p.F32) != n*10 {
			return 0, fmt.Errorf("output %q missing or misshapen", OutputName)
		}
		for i := range n {
			row := p.F32[i*10 : (i+1)*10]
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			if best == int(set.Labels[lo+i]) {
				right++
			}
		}
	}
	return float64(right) / float64(set.Len()), nil
}

// QuantizeMLP writes a two-layer MLP (784-H-10, as trained by internal/train)
// with an int8 first layer (99% of the weights) as an ONNX model:
//
//	xq = QuantizeLinear(input, 1/255)                                uint8 pixels
//	h  = Relu(DequantizeLinear(MatMulInteger(xq, W0q), s0, axis 1) + b0)
//	p  = Softmax(Gemm(h, W1, b1))                                     float32
//
// with symmetric per-column int8 weights W0q and s0 = (1/255) * their column
// scales. Its file is about a quarter of the float model's.
//
// Weights use 7 bits ([-63, 63], ONNX Runtime's quantizer's reduce_range):
// on x86 CPUs without VNNI, ONNX Runtime's uint8 x int8 kernels add pairs of
// products in saturating 16-bit arithmetic (255 * 127 * 2 overflows it), and
// its MatMulInteger then differs from the exact result, which the Go runtime
// computes; with 7-bit weights the pairs fit and both are exact. The second
// layer stays float: ONNX Runtime rewrites DequantizeLinear+Gemm on int8
// weights into its MatMulNBits, which quantizes activations on the fly and
// moves probabilities by about 5e-3.
func QuantizeMLP(m *train.MLP, name string) ([]byte, error) {
	if len(m.Layers) != 2 {
		return nil, fmt.Errorf("zoo: quantizing needs a two-layer MLP, got sizes %v", m.Sizes())
	}
	l0, l1 := m.Layers[0], m.Layers[1]
	const xScale = float32(1.0 / 255)
	w0q, s0 := quantizeColumns(l0.W, l0.In, l0.Out)
	acc := make([]float32, l0.Out)
	for o := range acc {
		acc[o] = xScale * s0[o]
	}
	b := onnx.NewBuilder(name, train.ONNXOpset).
		SetDoc("multilayer perceptron "+fmt.Sprint(m.Sizes())+" with an int8 first layer, quantized by outpost internal/zoo").
		Input(InputName, onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(int64(l0.In))).
		Float32("x.scale", []float32{xScale}).
		Float32("fc0.scale", acc, int64(l0.Out)).
		Float32("fc0.bias", l0.B, int64(l0.Out)).
		Float32("fc1.weight", l1.W, int64(l1.In), int64(l1.Out)).
		Float32("fc1.bias", l1.B, int64(l1.Out)).
		Node("QuantizeLinear", "quantize_input", []string{InputName, "x.scale"}, []string{"xq"}).
		Node("MatMulInteger", "fc0", []string{"xq", "fc0.weight_q"}, []string{"fc0.acc"}).
		Node("DequantizeLinear", "fc0.dequantize", []string{"fc0.acc", "fc0.scale"}, []string{"fc0.scaled"}, onnx.AttrInt("axis", 1)).
		Node("Add", "fc0.add_bias", []string{"fc0.scaled", "fc0.bias"}, []string{"fc0"}).
		Node("Relu", "relu0", []string{"fc0"}, []string{"relu0"}).
		Node("Gemm", "fc1", []string{"relu0", "fc1.weight", "fc1.bias"}, []string{"fc1"}).
		Node("Softmax", "softmax", []string{"fc1"}, []string{OutputName}, onnx.AttrInt("axis", 1)).
		Output(OutputName, onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(int64(l1.Out)))
	mp, err := b.Model()
	if err != nil {
		return nil, err
	}
	mp.Graph.Initializer = append(mp.Graph.Initializer, int8Tensor("fc0.weight_q", w0q, l0.In, l0.Out))
	return onnx.Marshal(mp)
}

// quantizeColumns quantizes w [in, out] symmetrically per column: q =
// round(w / s) in [-63, 63] with s = max |w[:, o]| / 63.
func quantizeColumns(w []float32, in, out int) ([]int8, []float32) {
	const weightMax = 63
	scales := make([]float32, out)
	for o := range out {
		var mx float32
		for k := range in {
			mx = max(mx, float32(math.Abs(float64(w[k*out+o]))))
		}
		scales[o] = mx / weightMax
		if scales[o] == 0 {
			scales[o] = 1
		}
	}
	q := make([]int8, len(w))
	for k := range in {
		for o := range out {
			v := math.RoundToEven(float64(w[k*out+o] / scales[o]))
			q[k*out+o] = int8(max(-weightMax, min(weightMax, v)))
		}
	}
	return q, scales
}

func int8Tensor(name string, v []int8, dims ...int) *onnxpb.TensorProto {
	raw := make([]byte, len(v))
	for i, x := range v {
		raw[i] = byte(x)
	}
	d := make([]int64, len(dims))
	for i, x := range dims {
		d[i] = int64(x)
	}
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_INT8)), Dims: d, RawData: raw}
}
