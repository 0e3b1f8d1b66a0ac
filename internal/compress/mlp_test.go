package compress

import (
	"bytes"
	"context"
	"testing"

	"github.com/klauspost/compress/zstd"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/train"
	"outpost.dev/outpost/internal/zoo"
)

// zstdSize is the size of b compressed as a transfer would.
func zstdSize(t *testing.T, b []byte) int {
	t.Helper()
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return buf.Len()
}

// Structured pruning, sparsity and distillation of the zoo's MLP: each is
// as small as it says (in its file, or compressed in transfer) and stays
// within its accuracy budget on the embedded test subset.
func TestMLPMethods(t *testing.T) {
	if raceEnabled {
		t.Skip("trains for several seconds; make test runs it without -race")
	}
	tr, te, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	_, data, err := zoo.Get("mlp")
	if err != nil {
		t.Fatal(err)
	}
	teacher, err := train.ImportONNX(data)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := interp.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	base, err := Accuracy(ctx, ts, te, 250)
	if err != nil {
		t.Fatal(err)
	}
	ft := FineTune{Data: tr, Epochs: 2, Seed: 1}
	measure := func(name string, m *train.MLP) (size, packed int, drop float64) {
		b, err := m.MarshalONNX(name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := interp.Load(b)
		if err != nil {
			t.Fatal(err)
		}
		acc, err := Accuracy(ctx, s, te, 250)
		if err != nil {
			t.Fatal(err)
		}
		size, packed, drop = len(b), zstdSize(t, b), 100*(base-acc)
		t.Logf("%-10s sizes %v: %7d bytes (%.3fx), %7d zstd (%.3fx), accuracy %.1f%% (%+.1f points)", name, m.Sizes(),
			size, float64(size)/float64(len(data)), packed, float64(packed)/float64(zstdSize(t, data)), 100*acc, -drop)
		return size, packed, drop
	}

	pruned, err := PruneUnits(ctx, teacher, 0.25, ft)
	if err != nil {
		t.Fatal(err)
	}
	if got := pruned.Sizes(); got[1] != 64 {
		t.Errorf("pruned sizes %v, want 64 hidden units of 256", got)
	}
	if size, _, drop := measure("pruned", pruned); float64(size) > 0.26*float64(len(data)) || drop > 1.5 {
		t.Errorf("pruned to 25%% of the units: %d bytes, %.1f points lost; want at most 0.26x and 1.5", size, drop)
	}

	sparse, err := Sparsify(ctx, teacher, 0.8, ft)
	if err != nil {
		t.Fatal(err)
	}
	if s := Sparsity(sparse); s < 0.799 {
		t.Errorf("sparsity %.3f, want 0.8", s)
	}
	if _, packed, drop := measure("sparse", sparse); float64(packed) > 0.5*float64(zstdSize(t, data)) || drop > 1 {
		t.Errorf("80%% sparse: %d bytes compressed, %.1f points lost; want at most half the dense model's and 1", packed, drop)
	}

	student, err := Distill(ctx, ts, []int{24}, 4, 0.7, FineTune{Data: tr, Epochs: 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if size, _, drop := measure("distilled", student); float64(size) > 0.1*float64(len(data)) || drop > 2 {
		t.Errorf("student of 24 hidden units: %d bytes, %.1f points lost; want at most 0.1x and 2", size, drop)
	}
	if teacher.Sizes()[1] != 256 || Sparsity(teacher) > 0.01 {
		t.Error("a method changed the model it started from")
	}
}

func TestMLPMethodRefusals(t *testing.T) {
	m := train.NewMLP([]int{784, 8, 10}, 1)
	tr, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ft := FineTune{Data: tr.Slice(0, 64)}
	for name, err := range map[string]error{
		"keep 0":              func() error { _, err := PruneUnits(ctx, m, 0, ft); return err }(),
		"no hidden layer":     func() error { _, err := PruneUnits(ctx, train.NewMLP([]int{784, 10}, 1), 0.5, ft); return err }(),
		"no data":             func() error { _, err := PruneUnits(ctx, m, 0.5, FineTune{}); return err }(),
		"sparsity 1":          func() error { _, err := Sparsify(ctx, m, 1, ft); return err }(),
		"student of 0 units":  func() error { _, err := Distill(ctx, nil, []int{0}, 2, 0.5, ft); return err }(),
		"temperature 0":       func() error { _, err := Distill(ctx, nil, []int{4}, 0, 0.5, ft); return err }(),
		"data of wrong shape": func() error { _, err := PruneUnits(ctx, train.NewMLP([]int{10, 4, 10}, 1), 0.5, ft); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
