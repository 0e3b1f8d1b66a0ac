package interp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"outpost.dev/outpost/internal/train"
)

// BenchmarkMLP runs the demo architecture (784-1024-128-10, as exported by
// internal/train) and a 784-256-10 MLP at batch 1 and 32.
func BenchmarkMLP(b *testing.B) {
	for _, sizes := range [][]int{{784, 256, 10}, {784, 1024, 128, 10}} {
		mlp := train.NewMLP(sizes, 1)
		data, err := mlp.MarshalONNX("bench")
		if err != nil {
			b.Fatal(err)
		}
		m, err := Load(data)
		if err != nil {
			b.Fatal(err)
		}
		for _, batch := range []int{1, 32} {
			b.Run(fmt.Sprintf("%v/batch%d", sizes, batch), func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 2))
				x := New(Float32, batch, 784)
				for i := range x.F32 {
					x.F32[i] = r.Float32()
				}
				in := map[string]*Tensor{train.ONNXInput: x}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.Run(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(batch), "ns/sample")
			})
		}
	}
}

// BenchmarkZoo runs the model zoo's CNN and int8 MLP (internal/zoo, read
// from its files: the zoo package imports this one) at batch 1 and 32 on
// random pixels.
func BenchmarkZoo(b *testing.B) {
	for _, z := range []struct {
		file  string
		input []int
	}{
		{"cnn.onnx", []int{1, 28, 28}},
		{"mlp-int8.onnx", []int{784}},
	} {
		data, err := os.ReadFile(filepath.Join("..", "..", "zoo", z.file))
		if err != nil {
			b.Fatal(err)
		}
		m, err := Load(data)
		if err != nil {
			b.Fatal(err)
		}
		for _, batch := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/batch%d", z.file, batch), func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 2))
				x := New(Float32, append([]int{batch}, z.input...)...)
				for i := range x.F32 {
					x.F32[i] = r.Float32()
				}
				in := map[string]*Tensor{m.Inputs()[0].Name: x}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.Run(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(batch), "ns/sample")
			})
		}
	}
}

func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{64, 256} {
		a, w := randTensor(r, n, n), randTensor(r, n, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := matmul(nil, []*Tensor{a, w}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*float64(n*n*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
