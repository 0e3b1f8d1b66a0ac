package compress

import (
	"context"
	"runtime"

	"outpost.dev/outpost/internal/onnx/interp"
)

// servingBatch is the batch size servingMemory serves.
const servingBatch = 32

// servingMemory loads model b in the Go runtime and returns the most
// memory it takes to serve requests of ds's first 32 samples (or all
// there are) one at a time: the heap that stays live once it has loaded and
// answered one (its weights, in the file's bytes or its own, packed
// kernels, pooled buffers and the request), plus what a further request allocates, which bounds that
// request's own peak. The live heap is counted from a collection just
// before the load, so other goroutines of the process that allocate or
// free meanwhile move the figure: measure where little else runs.
func servingMemory(ctx context.Context, b []byte, ds Dataset) (int64, error) {
	var base, held, after runtime.MemStats
	runtime.GC() // twice: what sync.Pools held through the first is freed by the second
	runtime.GC()
	runtime.ReadMemStats(&base)
	s, err := interp.Load(b) // its own copy, to count the file if the model keeps it
	if err != nil {
		return 0, err
	}
	in, _, err := batch(s, ds, 0, min(servingBatch, ds.Len()))
	if err != nil {
		return 0, err
	}
	if _, err := s.Run(ctx, in); err != nil {
		return 0, err
	}
	runtime.GC()
	runtime.ReadMemStats(&held)
	if _, err := s.Run(ctx, in); err != nil {
		return 0, err
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(in)
	live := max(int64(held.HeapAlloc)-int64(base.HeapAlloc), 0)
	return live + int64(after.TotalAlloc-held.TotalAlloc), nil
}
