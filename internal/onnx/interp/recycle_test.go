package interp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// recycledSlots counts the values whose data the steps give back.
func recycledSlots(m *Model) int {
	n := 0
	for _, st := range m.steps {
		n += len(st.recycle)
	}
	return n
}

// TestConvOutputsRecycled runs the model zoo's CNN, whose two fused
// convolutions' outputs are given back after their last reader, on
// batches of changing size, one after another and concurrently (run with
// -race): every result must equal the one a freshly loaded model, with
// nothing recycled yet, gives for the same input.
func TestConvOutputsRecycled(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "zoo", "cnn.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	if n := recycledSlots(m); n != 2 {
		t.Fatalf("%d values recycled, want the 2 convolution outputs", n)
	}
	r := rand.New(rand.NewPCG(21, 22))
	name := m.Inputs()[0].Name
	var inputs []*Tensor
	var want []map[string]*Tensor
	for i := range 8 {
		x := randTensor(r, 1+i%3*7, 1, 28, 28)
		fresh, err := Load(data)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := fresh.Run(context.Background(), map[string]*Tensor{name: x})
		if err != nil {
			t.Fatal(err)
		}
		inputs, want = append(inputs, x), append(want, ref)
	}
	check := func(i int) error {
		got, err := m.Run(context.Background(), map[string]*Tensor{name: inputs[i]})
		if err != nil {
			return err
		}
		for k, w := range want[i] {
			if err := sameTensor(got[k], w, 0); err != nil {
				return fmt.Errorf("input %d, output %s: %w", i, k, err)
			}
		}
		return nil
	}
	for round := range 3 {
		for i := range inputs {
			if err := check(i); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(inputs))
	for range 4 {
		for i := range inputs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := check(i); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestConvOutputTakenInPlaceNotRecycled builds Conv -> Flatten -> Softmax,
// where the Softmax overwrites the convolution's data through the
// Flatten view: that data is the output's now, and must not be given back.
func TestConvOutputTakenInPlaceNotRecycled(t *testing.T) {
	b := onnx.NewBuilder("inplace", 13).Input("x", onnxpb.TensorProto_FLOAT, onnx.P("n"), onnx.D(1), onnx.D(3), onnx.D(3)).
		Float32("w", []float32{1, 0, -1, 2}, 1, 1, 2, 2).
		Node("Conv", "conv", []string{"x", "w"}, []string{"c"}).
		Node("Flatten", "flat", []string{"c"}, []string{"f"}).
		Node("Softmax", "sm", []string{"f"}, []string{"y"}).
		Output("y", onnxpb.TensorProto_FLOAT)
	m := mustLoad(t, b)
	inPlace := false
	for _, st := range m.steps {
		inPlace = inPlace || st.inPlace != nil
	}
	if !inPlace {
		t.Fatal("the Softmax does not run in place; the test needs it to")
	}
	if n := recycledSlots(m); n != 0 {
		t.Fatalf("%d values recycled, want none", n)
	}
	x := iota32(2, 1, 3, 3)
	first, err := m.Run(context.Background(), map[string]*Tensor{"x": x})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, err := m.Run(context.Background(), map[string]*Tensor{"x": iota32(2, 1, 3, 3)})
		if err != nil {
			t.Fatal(err)
		}
		if err := sameTensor(got["y"], first["y"], 0); err != nil {
			t.Fatal(err)
		}
	}
}
