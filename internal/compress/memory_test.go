package compress

import (
	"context"
	"testing"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/train"
)

// servingMemory counts what the loaded model holds: a float32 model at
// least its weights, and its int8 variant less than half that, though both answer the same
// batch-32 requests; and what loading allocated and dropped (protobuf
// decoding, the int8 loader's float32 copy of the weights before it packs
// them) is not counted: about 10 MB for the float32 model here.
func TestServingMemory(t *testing.T) {
	ctx := context.Background()
	tr, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	const hidden = 1024
	mlp := train.NewMLP([]int{784, hidden, 10}, 1)
	b, err := mlp.MarshalONNX("wide")
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Calibrate(ctx, m, tr, 64, Calibration{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := QuantizeInt8(m, r)
	if err != nil {
		t.Fatal(err)
	}
	qb, err := onnx.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	weights := int64(784*hidden + hidden*10) // parameters, not counting biases
	peak := map[string]int64{}
	for name, data := range map[string][]byte{"float32": b, "int8": qb} {
		mem, err := servingMemory(ctx, data, tr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		peak[name] = mem
		t.Logf("%s: %d bytes of file, serving takes %d", name, len(data), mem)
	}
	if f := peak["float32"]; f < 4*weights || f > 5*weights+1<<20 {
		t.Errorf("float32 model of %d weights: serving takes %d bytes, want at least its weights (%d bytes) and at most 1.25 times them and 1 MiB", weights, f, 4*weights)
	}
	// The int8 model holds its weights once, packed for its kernels (it
	// once also held them as the file has them: 2.5 MB here, against
	// 3.5 MB for the float32 model).
	if i := peak["int8"]; i < weights || 2*i > peak["float32"] {
		t.Errorf("int8 model of %d weights: serving takes %d bytes, want at least its weights and at most half the float32 model's %d", weights, i, peak["float32"])
	}
}
