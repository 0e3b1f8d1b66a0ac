package fl

import (
	"slices"
	"strings"
	"testing"
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
