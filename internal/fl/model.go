package fl

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"

	"outpost.dev/outpost/internal/train"
)

// Learner is a model that local training updates: internal/train's MLP or
// CNN behind one face.
type Learner interface {
	Train(ctx context.Context, ds train.Dataset, opts train.TrainOptions) (train.TrainStats, error)
	Evaluate(ds train.Dataset) (float64, error)
}

// NewLearner makes the model of spec with weights w (nil: freshly
// initialised from seed) and returns it with its tensors, which alias the
// model's own: writing them changes the model.
func NewLearner(spec ModelSpec, w [][]float32, seed uint64) (Learner, [][]float32, error) {
	return newLearner(spec, w, seed)
}

// onnxLearner is a Learner that internal/train exports to ONNX.
type onnxLearner interface {
	Learner
	MarshalONNX(name string) ([]byte, error)
}

var (
	_ onnxLearner = (*train.MLP)(nil)
	_ onnxLearner = (*train.CNN)(nil)
)

// newLearner is NewLearner.
func newLearner(spec ModelSpec, w [][]float32, seed uint64) (onnxLearner, [][]float32, error) {
	shape, err := spec.Shape()
	if err != nil {
		return nil, nil, err
	}
	if w != nil && !slices.Equal(Shape(w), shape) {
		return nil, nil, fmt.Errorf("fl: weights of tensor lengths %v, the %s model's are %v", Shape(w), spec.Arch, shape)
	}
	var (
		l       onnxLearner
		tensors [][]float32
	)
	switch spec.Arch {
	case "mlp":
		if len(spec.Sizes) < 2 {
			return nil, nil, fmt.Errorf("fl: mlp sizes %v", spec.Sizes)
		}
		m := train.NewMLP(spec.Sizes, seed)
		l, tensors = m, mlpTensors(m)
	case "cnn":
		m := train.NewCNN(seed)
		l, tensors = m, cnnTensors(m)
	default:
		return nil, nil, fmt.Errorf("fl: model arch %q", spec.Arch)
	}
	if w != nil {
		if err := sameShape(tensors, w); err != nil {
			return nil, nil, err
		}
		for i := range tensors {
			copy(tensors[i], w[i])
		}
	}
	return l, tensors, nil
}

// mlpTensors are m's tensors, aliased: W0, B0, W1, B1, ...
func mlpTensors(m *train.MLP) [][]float32 {
	var t [][]float32
	for i := range m.Layers {
		t = append(t, m.Layers[i].W, m.Layers[i].B)
	}
	return t
}

// cnnTensors are c's tensors, aliased, in the order of its ONNX initializers.
func cnnTensors(c *train.CNN) [][]float32 {
	return [][]float32{c.Conv1W, c.Conv1B, c.Conv2W, c.Conv2B, c.FCW, c.FCB}
}

// ReadONNX reads a model of arch from the ONNX file internal/train exported
// (train.ImportONNX for an MLP, train.ImportCNN for the CNN) and returns its
// spec and tensors, in NewLearner's order.
func ReadONNX(arch string, data []byte) (ModelSpec, [][]float32, error) {
	var (
		spec ModelSpec
		w    [][]float32
	)
	switch arch {
	case "mlp":
		m, err := train.ImportONNX(data)
		if err != nil {
			return ModelSpec{}, nil, err
		}
		spec, w = ModelSpec{Arch: arch, Sizes: m.Sizes()}, mlpTensors(m)
	case "cnn":
		c, err := train.ImportCNN(data)
		if err != nil {
			return ModelSpec{}, nil, err
		}
		spec, w = ModelSpec{Arch: arch}, cnnTensors(c)
	default:
		return ModelSpec{}, nil, fmt.Errorf("fl: model.arch %q: want \"mlp\" or \"cnn\"", arch)
	}
	if _, err := spec.Shape(); err != nil {
		return ModelSpec{}, nil, err
	}
	return spec, w, nil
}

// MarshalONNX returns the model of spec with weights w as the ONNX file
// internal/train exports, its graph named name: what ReadONNX reads back.
func MarshalONNX(spec ModelSpec, w [][]float32, name string) ([]byte, error) {
	if w == nil {
		return nil, errors.New("fl: no weights to write")
	}
	l, _, err := newLearner(spec, w, 0)
	if err != nil {
		return nil, err
	}
	return l.MarshalONNX(name)
}

// MaxParams bounds the models a job may train (about 1 GiB of float32).
const MaxParams = 1 << 28

// Shape returns the tensor lengths of the model spec names, checking the
// spec: an MLP of at least two sizes, each at least 1, of at most
// MaxParams values in all; or the CNN.
func (m ModelSpec) Shape() ([]int, error) {
	switch m.Arch {
	case "cnn":
		c := train.NewCNN(1)
		return []int{len(c.Conv1W), len(c.Conv1B), len(c.Conv2W), len(c.Conv2B), len(c.FCW), len(c.FCB)}, nil
	case "mlp":
		if len(m.Sizes) < 2 {
			return nil, fmt.Errorf("fl: model.sizes %v: want at least an input and an output size", m.Sizes)
		}
		var out []int
		total := 0
		for i := 0; i+1 < len(m.Sizes); i++ {
			in, o := m.Sizes[i], m.Sizes[i+1]
			if in < 1 || o < 1 || in > MaxParams || o > MaxParams || in*o > MaxParams {
				return nil, fmt.Errorf("fl: model.sizes %v: want sizes from 1, at most %d values", m.Sizes, MaxParams)
			}
			total += in*o + o
			if total > MaxParams {
				return nil, fmt.Errorf("fl: model.sizes %v: over %d values", m.Sizes, MaxParams)
			}
			out = append(out, in*o, o)
		}
		return out, nil
	}
	return nil, fmt.Errorf("fl: model.arch %q: want \"mlp\" or \"cnn\"", m.Arch)
}

// InitialWeights returns the freshly initialised weights of spec from seed.
func InitialWeights(spec ModelSpec, seed uint64) ([][]float32, error) {
	_, t, err := NewLearner(spec, nil, seed)
	return t, err
}

// Shape returns the tensor lengths of weights.
func Shape(w [][]float32) []int {
	s := make([]int, len(w))
	for i, t := range w {
		s[i] = len(t)
	}
	return s
}

func sameShape(want, got [][]float32) error {
	if len(want) != len(got) {
		return fmt.Errorf("fl: %d tensors, the model has %d", len(got), len(want))
	}
	for i := range want {
		if len(want[i]) != len(got[i]) {
			return fmt.Errorf("fl: tensor %d has %d values, the model's has %d", i, len(got[i]), len(want[i]))
		}
	}
	return nil
}

// Digest is the sha256 of weights: each tensor's length (uint64) and
// values (float32), little-endian, in order.
func Digest(w [][]float32) string {
	h := sha256.New()
	var b [8]byte
	for _, t := range w {
		binary.LittleEndian.PutUint64(b[:], uint64(len(t)))
		h.Write(b[:])
		buf := make([]byte, 4*len(t))
		for i, v := range t {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		h.Write(buf)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func cloneWeights(w [][]float32) [][]float32 {
	out := make([][]float32, len(w))
	for i, t := range w {
		out[i] = append([]float32(nil), t...)
	}
	return out
}
