// Package zoo holds the small models Outpost's tests, benchmarks and demo
// serve: ONNX files trained here on the embedded Fashion-MNIST subset
// (internal/dataset) by internal/train, committed next to this file with a
// manifest (zoo.json) of their test accuracy, and embedded in the binary.
//
// `go run ./internal/zoo/gen` retrains them deterministically and rewrites
// the files, the manifest and README.md.
package zoo

import (
	"embed"
	"encoding/json"
	"fmt"
	"slices"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/train"
)

// Names of every zoo model's input and output.
const (
	InputName  = train.ONNXInput  // float32 [N, Model.Input...], pixels scaled to [0, 1]
	OutputName = train.ONNXOutput // float32 [N, 10], class probabilities
)

// ManifestFile lists the models with their measured figures.
const ManifestFile = "zoo.json"

// Model describes one zoo model.
type Model struct {
	Name        string `json:"name"`
	File        string `json:"file"`
	Description string `json:"description"`
	Recipe      string `json:"recipe"`
	// Input is the shape of one sample; the model's input is [N, Input...].
	Input  []int  `json:"input"`
	Params int    `json:"params"`
	Bytes  int    `json:"bytes"`
	SHA256 string `json:"sha256"`
	// TestAccuracy is measured with the Go runtime on the 1000 test images
	// of the embedded subset.
	TestAccuracy float64 `json:"test_accuracy"`
}

//go:embed zoo.json *.onnx
var files embed.FS

// Models lists the zoo's models in manifest order.
func Models() ([]Model, error) {
	data, err := files.ReadFile(ManifestFile)
	if err != nil {
		return nil, err
	}
	var ms []Model
	if err := json.Unmarshal(data, &ms); err != nil {
		return nil, fmt.Errorf("zoo: %s: %w", ManifestFile, err)
	}
	return ms, nil
}

// Get returns the model called name and its ONNX bytes.
func Get(name string) (Model, []byte, error) {
	ms, err := Models()
	if err != nil {
		return Model{}, nil, err
	}
	i := slices.IndexFunc(ms, func(m Model) bool { return m.Name == name })
	if i < 0 {
		return Model{}, nil, fmt.Errorf("zoo: no model %q", name)
	}
	data, err := files.ReadFile(ms[i].File)
	if err != nil {
		return Model{}, nil, err
	}
	return ms[i], data, nil
}

// Batch returns images [from, from+n) of set as the model's input tensor.
func (m Model) Batch(set *dataset.Set, from, n int) *interp.Tensor {
	shape := append([]int{n}, m.Input...)
	d := set.Dim()
	x := make([]float32, n*d)
	for i := range n {
		set.Sample(from+i, x[i*d:(i+1)*d])
	}
	return interp.FromFloat32(x, shape...)
}
