package fl

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"

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
