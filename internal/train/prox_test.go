package train

import (
	"context"
	"math"
	"testing"
)

func mlpTensors(m *MLP) [][]float32 {
	var out [][]float32
	for _, l := range m.Layers {
		out = append(out, l.W, l.B)
	}
	return out
}

func distance(a, b [][]float32) float64 {
	var s float64
	for i := range a {
		for j := range a[i] {
			d := float64(a[i][j] - b[i][j])
			s += d * d
		}
	}
	return math.Sqrt(s)
}

func TestMaxStepsStopsMidEpoch(t *testing.T) {
	tr, _ := subset(t)
	ds := tr.Slice(0, 640)
	for _, tc := range []struct {
		name            string
		epochs, max     int
		wantSteps, loss int
	}{
		{"mid first epoch", 3, 4, 4, 1},
		{"into the second epoch", 3, 13, 13, 2},
		{"epochs bound it", 1, 50, 10, 1},
		{"no budget", 2, 0, 20, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMLP([]int{784, 16, 10}, 1)
			st, err := m.Train(context.Background(), ds, TrainOptions{Epochs: tc.epochs, BatchSize: 64, MaxSteps: tc.max, Optimizer: SGDMomentum})
			if err != nil {
				t.Fatal(err)
			}
			if st.Steps != tc.wantSteps || len(st.EpochLoss) != tc.loss {
				t.Fatalf("steps %d, epoch losses %d; want %d, %d", st.Steps, len(st.EpochLoss), tc.wantSteps, tc.loss)
			}
			c := NewCNN(1)
			cs, err := c.Train(context.Background(), ds, TrainOptions{Epochs: tc.epochs, BatchSize: 64, MaxSteps: tc.max, Optimizer: SGDMomentum})
			if err != nil {
				t.Fatal(err)
			}
			if cs.Steps != tc.wantSteps {
				t.Fatalf("CNN steps %d, want %d", cs.Steps, tc.wantSteps)
			}
		})
	}
}

// A proximal term pulls the trained weights toward the reference: the
// larger μ, the closer they stay.
func TestProxMuKeepsWeightsNearReference(t *testing.T) {
	tr, _ := subset(t)
	ds := tr.Slice(0, 640)
	var prev float64 = math.Inf(1)
	for _, mu := range []float64{0, 1, 10} {
		m := NewMLP([]int{784, 16, 10}, 1)
		ref := mlpTensors(m.Clone())
		if _, err := m.Train(context.Background(), ds, TrainOptions{Epochs: 2, Optimizer: SGDMomentum, LR: 0.05, ProxMu: mu, ProxRef: ref}); err != nil {
			t.Fatal(err)
		}
		d := distance(mlpTensors(m), ref)
		if !(d < prev) {
			t.Fatalf("μ %v: distance %v, not below %v of a smaller μ", mu, d, prev)
		}
		prev = d
	}
	c, free := NewCNN(1), NewCNN(1)
	ref := NewCNN(1).params()
	if _, err := c.Train(context.Background(), ds, TrainOptions{Optimizer: SGDMomentum, LR: 0.05, ProxMu: 10, ProxRef: ref}); err != nil {
		t.Fatal(err)
	}
	if _, err := free.Train(context.Background(), ds, TrainOptions{Optimizer: SGDMomentum, LR: 0.05}); err != nil {
		t.Fatal(err)
	}
	if dp, df := distance(c.params(), ref), distance(free.params(), ref); !(dp < df) {
		t.Fatalf("CNN: %v from the reference with μ 10, %v without", dp, df)
	}
}

func TestProxOptionsRefused(t *testing.T) {
	tr, _ := subset(t)
	ds := tr.Slice(0, 64)
	m := NewMLP([]int{784, 16, 10}, 1)
	for _, opts := range []TrainOptions{
		{MaxSteps: -1},
		{ProxMu: -1},
		{ProxMu: math.NaN()},
		{ProxMu: 1},
		{ProxMu: 1, ProxRef: [][]float32{{1}}},
		{ProxMu: 1, ProxRef: [][]float32{make([]float32, 784*16), make([]float32, 16), make([]float32, 160), make([]float32, 9)}},
	} {
		before := mlpTensors(m.Clone())
		if _, err := m.Train(context.Background(), ds, opts); err == nil {
			t.Errorf("%+v: no error", opts)
		}
		if distance(before, mlpTensors(m)) != 0 {
			t.Errorf("%+v: the model changed", opts)
		}
	}
}
