// Package engine is the one interface every ONNX runtime implements: the
// pure-Go interpreter (internal/onnx/interp, through Go) and ONNX Runtime
// (internal/onnx/ort). Serving runs models through it, and so will
// pipelines' evaluation, compression's accuracy gate, drift baselines and
// federated evaluation.
//
// It sits at the bottom of the layers: it imports only the interpreter and
// the standard library, so a runtime and its users need nothing else.
package engine

import (
	"context"

	"outpost.dev/outpost/internal/onnx/interp"
)

// Runtime loads ONNX models into sessions.
type Runtime interface {
	// Name names the runtime in status: "go" or "onnxruntime".
	Name() string
	// Load loads the ONNX model in the file at path. An error means the
	// runtime cannot serve this model (such as an unsupported operator).
	Load(ctx context.Context, path string) (Session, error)
}

// Session is a loaded model. Run must be safe for concurrent calls.
type Session interface {
	// Inputs describes the graph inputs (dimension -1 is dynamic).
	Inputs() []interp.ValueInfo
	// Outputs describes the graph outputs.
	Outputs() []interp.ValueInfo
	// Run evaluates the model on the named inputs.
	Run(ctx context.Context, in map[string]*interp.Tensor) (map[string]*interp.Tensor, error)
	// Close releases the session. It is called once, after every Run returned.
	Close() error
}

// Runtime names reported in status.
const (
	RuntimeGo          = "go"
	RuntimeONNXRuntime = "onnxruntime"
)
