package interp

import (
	"math/rand/v2"
	"testing"

	"outpost.dev/outpost/internal/onnx"
)

// TestBatchedProductsSplitByBatch checks MatMul and Einsum on batches of
// products too small to split by rows but large enough in all to be split
// by batch between goroutines (run with -race), against the naive
// product of each batch.
func TestBatchedProductsSplitByBatch(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const nb, m, k, n = 17, 64, 64, 64
	a, b := randTensor(r, nb, m, k), randTensor(r, nb, k, n)
	bt := New(Float32, nb, n, k) // b transposed per batch, for Einsum's sgemmNT path
	want := New(Float32, nb, m, n)
	for i := range nb {
		copy(want.F32[i*m*n:], naiveMatMul(a.F32[i*m*k:(i+1)*m*k], b.F32[i*k*n:(i+1)*k*n], m, k, n))
		transpose2D(bt.F32[i*n*k:(i+1)*n*k], b.F32[i*k*n:(i+1)*k*n], k, n)
	}
	got, err := runOp(t, "MatMul", []DType{Float32}, nil, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameTensor(got[0], want, 1e-3); err != nil {
		t.Fatalf("MatMul: %v", err)
	}
	for _, tt := range []struct {
		eq string
		b  *Tensor
	}{{"bij,bjk->bik", b}, {"bij,bkj->bik", bt}} {
		got, err := runOp(t, "Einsum", []DType{Float32}, attrList(onnx.AttrString("equation", tt.eq)), a, tt.b)
		if err != nil {
			t.Fatal(err)
		}
		if err := sameTensor(got[0], want, 1e-3); err != nil {
			t.Fatalf("Einsum %s: %v", tt.eq, err)
		}
	}
}
