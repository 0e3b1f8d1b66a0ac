package fl

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/train"
)

// A model of either arch written by MarshalONNX reads back with ReadONNX as
// the same spec and weights; a file of the other arch, misshapen weights and
// unknown archs are refused.
func TestONNXRoundTrip(t *testing.T) {
	for _, spec := range []ModelSpec{{Arch: "mlp", Sizes: []int{6, 4, 3}}, {Arch: "cnn"}} {
		t.Run(spec.Arch, func(t *testing.T) {
			w, err := InitialWeights(spec, 3)
			if err != nil {
				t.Fatal(err)
			}
			data, err := MarshalONNX(spec, w, "m")
			if err != nil {
				t.Fatal(err)
			}
			got, back, err := ReadONNX(spec.Arch, data)
			if err != nil {
				t.Fatal(err)
			}
			if got.Arch != spec.Arch || !slices.Equal(got.Sizes, spec.Sizes) || Digest(back) != Digest(w) {
				t.Fatalf("read back %+v with weights %s, want %+v with %s", got, Digest(back), spec, Digest(w))
			}
			other := map[string]string{"mlp": "cnn", "cnn": "mlp"}[spec.Arch]
			if _, _, err := ReadONNX(other, data); err == nil {
				t.Errorf("a %s file read as %s", spec.Arch, other)
			}
		})
	}
	cnn, err := InitialWeights(ModelSpec{Arch: "cnn"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		spec ModelSpec
		w    [][]float32
		want string
	}{
		{"no weights", ModelSpec{Arch: "cnn"}, nil, "no weights"},
		{"too few tensors", ModelSpec{Arch: "cnn"}, cnn[:5], "tensor lengths"},
		{"mlp weights for sizes", ModelSpec{Arch: "mlp", Sizes: []int{2, 2}}, [][]float32{make([]float32, 4), make([]float32, 3)}, "tensor lengths [4 3]"},
		{"unknown arch", ModelSpec{Arch: "rnn"}, cnn, `"rnn"`},
	} {
		if _, err := MarshalONNX(tc.spec, tc.w, "m"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: MarshalONNX = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if _, _, err := ReadONNX("rnn", nil); err == nil || !strings.Contains(err.Error(), `model.arch "rnn"`) {
		t.Errorf("ReadONNX of arch rnn: %v", err)
	}
}

// BenchmarkLocalEpoch is one local epoch, as a site trains in a round, on the training part
// (80%) of shard 2 of 3 of the example data ('outpost fl example-data --shard 2/3': 2,105
// images), for the MLP of the docs' walk-through and the CNN.
func BenchmarkLocalEpoch(b *testing.B) {
	all, _, err := dataset.FashionSubset()
	if err != nil {
		b.Fatal(err)
	}
	labels := make([]int, all.Len())
	for i, l := range all.Labels {
		labels[i] = int(l)
	}
	parts, err := DirichletPartition(labels, 3, 0.5, rand.New(rand.NewPCG(1, 0)))
	if err != nil {
		b.Fatal(err)
	}
	shard := all.Pick(parts[1])
	ds := shard.Slice(0, shard.Len()*8/10)
	for _, spec := range []ModelSpec{{Arch: "mlp", Sizes: []int{784, 256, 10}}, {Arch: "cnn"}} {
		b.Run(spec.Arch, func(b *testing.B) {
			w, err := InitialWeights(spec, 1)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				l, _, err := NewLearner(spec, w, 1)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := l.Train(context.Background(), ds, train.TrainOptions{Epochs: 1, BatchSize: 32, LR: 0.01, Optimizer: train.SGDMomentum}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(ds.Len())*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
