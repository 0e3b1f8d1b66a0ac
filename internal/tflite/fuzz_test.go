package tflite

import (
	"testing"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/zoo"
)

// Convert takes ONNX files from outside: whatever they hold, it returns a
// model or an error, never panics, and what it returns is a TFL3 file.
func FuzzConvert(f *testing.F) {
	// The small models only: the MLP's 800 KB slow the mutator down.
	_, data, err := zoo.Get("cnn")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data, 1)
	q, err := onnx.Marshal(int8Model(f, "cnn"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(q, 2)
	f.Add(syntheticBytes(f), 3)
	f.Fuzz(func(t *testing.T, data []byte, batch int) {
		m, err := onnx.Unmarshal(data)
		if err != nil {
			return
		}
		b, err := Convert(m, Options{Batch: batch % 8})
		if err != nil {
			return
		}
		if len(b) < 8 || string(b[4:8]) != "TFL3" {
			t.Fatalf("file identifier %q", b[4:min(8, len(b))])
		}
	})
}
