package compress

import (
	"testing"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/zoo"
)

// A model read from outside may be anything: the rewrites refuse what they
// cannot place, never panic, and what they return still loads wherever the
// source did.
func FuzzRewrites(f *testing.F) {
	for _, name := range []string{"cnn", "mlp-int8"} {
		_, data, err := zoo.Get(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := onnx.Unmarshal(data)
		if err != nil {
			return
		}
		_, loadErr := interp.LoadProto(m)
		if h, err := Float16(m, 4); err == nil && loadErr == nil {
			if _, err := interp.LoadProto(h); err != nil {
				t.Errorf("the float16 variant of a model that loads does not: %v", err)
			}
		}
		if q, err := QuantizeInt8(m, nil); err == nil && loadErr == nil {
			if _, err := interp.LoadProto(q); err != nil {
				t.Errorf("the int8 variant of a model that loads does not: %v", err)
			}
		}
	})
}
