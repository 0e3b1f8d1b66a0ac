package fl

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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
	shape, err := spec.Shape()
	if err != nil {
		return nil, nil, err
	}
	if w != nil && !slices.Equal(Shape(w), shape) {
		return nil, nil, fmt.Errorf("fl: weights of tensor lengths %v, the %s model's are %v", Shape(w), spec.Arch, shape)
	}
	var (
		l       Learner
		tensors [][]float32
	)
	switch spec.Arch {
	case "mlp":
		if len(spec.Sizes) < 2 {
			return nil, nil, fmt.Errorf("fl: mlp sizes %v", spec.Sizes)
		}
		m := train.NewMLP(spec.Sizes, seed)
		for i := range m.Layers {
			tensors = append(tensors, m.Layers[i].W, m.Layers[i].B)
		}
		l = m
	case "cnn":
		m := train.NewCNN(seed)
		tensors = [][]float32{m.Conv1W, m.Conv1B, m.Conv2W, m.Conv2B, m.FCW, m.FCB}
		l = m
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
