package compress

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/train"
)

// deadCNN is a CNN of widths c1 and c2 whose channels dead1 and dead2 (of
// its first and second convolutions) never fire: no weights in, a
// negative bias. They are the weakest, and removing them leaves the
// outputs as they were.
func deadCNN(c1, c2 int, dead1, dead2 []int) *train.CNN {
	c := train.NewCNNWidths(c1, c2, 3)
	for i := range c.Conv1B {
		c.Conv1B[i] = 0.01
	}
	for i := range c.Conv2B {
		c.Conv2B[i] = 0.01
	}
	for _, o := range dead1 {
		clear(c.Conv1W[o*9 : (o+1)*9])
		c.Conv1B[o] = -0.01
	}
	for _, o := range dead2 {
		clear(c.Conv2W[o*c1*9 : (o+1)*c1*9])
		c.Conv2B[o] = -0.01
	}
	return c
}

func TestPruneChannels(t *testing.T) {
	tr, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	x := make([]float32, n*784)
	for i := range n {
		tr.Sample(i, x[i*784:(i+1)*784])
	}
	for _, tc := range []struct {
		c1, c2       int
		dead1, dead2 []int
		keep         float64
		kept1, kept2 []int
	}{
		{4, 6, []int{1, 3}, []int{0, 2, 5}, 0.5, []int{0, 2}, []int{1, 3, 4}},
		{4, 4, []int{0, 1, 2}, []int{1, 2, 3}, 0.25, []int{3}, []int{0}},
		{1, 8, nil, []int{1, 2, 3, 4, 5, 6}, 0.25, []int{0}, []int{0, 7}},
		{2, 2, nil, nil, 1, []int{0, 1}, []int{0, 1}},
	} {
		t.Run(fmt.Sprintf("%dx%d keep %v", tc.c1, tc.c2, tc.keep), func(t *testing.T) {
			c := deadCNN(tc.c1, tc.c2, tc.dead1, tc.dead2)
			before := c.Clone()
			p := pruneChannels(c, tc.keep)
			c1, c2 := p.Widths()
			if c1 != len(tc.kept1) || c2 != len(tc.kept2) {
				t.Fatalf("widths %d and %d, want %d and %d", c1, c2, len(tc.kept1), len(tc.kept2))
			}
			for j, o := range tc.kept1 {
				if !slices.Equal(p.Conv1W[j*9:(j+1)*9], c.Conv1W[o*9:(o+1)*9]) || p.Conv1B[j] != c.Conv1B[o] {
					t.Errorf("first convolution's channel %d is not channel %d", j, o)
				}
			}
			for j, o := range tc.kept2 {
				if p.Conv2B[j] != c.Conv2B[o] || !slices.Equal(p.FCW[j*490:(j+1)*490], c.FCW[o*490:(o+1)*490]) {
					t.Errorf("second convolution's channel %d is not channel %d", j, o)
				}
				for i, q := range tc.kept1 {
					if !slices.Equal(p.Conv2W[(j*c1+i)*9:(j*c1+i+1)*9], c.Conv2W[(o*tc.c1+q)*9:(o*tc.c1+q+1)*9]) {
						t.Errorf("kernel %d of channel %d is not kernel %d of channel %d", i, j, q, o)
					}
				}
			}
			if !slices.Equal(p.Predict(x), c.Predict(x)) {
				t.Error("removing dead channels changed the outputs")
			}
			if !slices.Equal(c.FCW, before.FCW) || !slices.Equal(c.Conv2W, before.Conv2W) {
				t.Error("pruning changed the model it started from")
			}
		})
	}

	// Then it fine-tunes, and refuses what it cannot do.
	ctx := context.Background()
	ft := FineTune{Data: tr.Slice(0, 64), Epochs: 1, Seed: 1}
	c := deadCNN(4, 6, nil, nil)
	p, err := PruneChannels(ctx, c, 0.5, ft)
	if err != nil {
		t.Fatal(err)
	}
	if c1, c2 := p.Widths(); c1 != 2 || c2 != 3 || slices.Equal(p.FCB, c.FCB) {
		t.Errorf("pruned to widths %d and %d, fine-tuned %v", c1, c2, !slices.Equal(p.FCB, c.FCB))
	}
	for name, err := range map[string]error{
		"keep 0":       func() error { _, err := PruneChannels(ctx, c, 0, ft); return err }(),
		"keep 1.5":     func() error { _, err := PruneChannels(ctx, c, 1.5, ft); return err }(),
		"no data":      func() error { _, err := PruneChannels(ctx, c, 0.5, FineTune{}); return err }(),
		"flat samples": func() error { _, err := PruneChannels(ctx, c, 0.5, FineTune{Data: flat{tr}}); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// flat is a data set of 785 features, which no CNN takes.
type flat struct{ Dataset }

func (flat) Dim() int { return 785 }

// A student CNN learns from its teacher: trained on the teacher's outputs
// alone, it agrees with the teacher more than one trained on the labels.
func TestDistillCNN(t *testing.T) {
	tr, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	part := tr.Slice(0, 160)
	ctx := context.Background()
	// A teacher that knows little: a CNN trained on a few images, whose
	// outputs the labels do not give.
	tc := train.NewCNNWidths(2, 2, 7)
	if _, err := tc.Train(ctx, tr.Slice(1000, 1040), train.TrainOptions{BatchSize: 8, LR: 1e-2}); err != nil {
		t.Fatal(err)
	}
	data, err := tc.MarshalONNX("teacher")
	if err != nil {
		t.Fatal(err)
	}
	teacher, err := interp.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, part.Len()*784)
	for i := range part.Len() {
		part.Sample(i, x[i*784:(i+1)*784])
	}
	want := tc.Predict(x)
	agreement := func(s *train.CNN) float64 {
		got := s.Predict(x)
		n := 0
		for i := range part.Len() {
			if argmax32(got[i*10:(i+1)*10]) == argmax32(want[i*10:(i+1)*10]) {
				n++
			}
		}
		return float64(n) / float64(part.Len())
	}
	ft := FineTune{Data: part, Epochs: 1, LR: 1e-2, Seed: 1}
	soft, err := DistillCNN(ctx, teacher, 1, 2, 1, 1, ft)
	if err != nil {
		t.Fatal(err)
	}
	hard, err := DistillCNN(ctx, teacher, 1, 2, 1, 0, ft)
	if err != nil {
		t.Fatal(err)
	}
	if c1, c2 := soft.Widths(); c1 != 1 || c2 != 2 {
		t.Errorf("student of widths %d and %d, want 1 and 2", c1, c2)
	}
	if a, b := agreement(soft), agreement(hard); a < b+0.1 {
		t.Errorf("the student agrees with its teacher on %.2f of the samples, one trained on the labels on %.2f", a, b)
	}
	for name, err := range map[string]error{
		"width 0":       func() error { _, err := DistillCNN(ctx, teacher, 0, 2, 1, 1, ft); return err }(),
		"temperature 0": func() error { _, err := DistillCNN(ctx, teacher, 1, 2, 0, 1, ft); return err }(),
		"no data":       func() error { _, err := DistillCNN(ctx, teacher, 1, 2, 1, 1, FineTune{}); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func argmax32(v []float32) int {
	best := 0
	for j, x := range v {
		if x > v[best] {
			best = j
		}
	}
	return best
}
