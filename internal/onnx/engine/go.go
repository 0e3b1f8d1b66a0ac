package engine

import (
	"context"
	"fmt"
	"os"

	"outpost.dev/outpost/internal/onnx/interp"
)

// Go runs models with the pure-Go interpreter (internal/onnx/interp).
type Go struct{}

var (
	_ Runtime = Go{}
	_ Session = goSession{}
)

// Name is "go".
func (Go) Name() string { return RuntimeGo }

// Load reads and loads the model at path; unsupported operators fail here,
// named, rather than at the first request.
func (Go) Load(ctx context.Context, path string) (Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	m, err := interp.Load(data)
	if err != nil {
		return nil, err
	}
	return goSession{m}, nil
}

// goSession is a model loaded by the interpreter.
type goSession struct{ *interp.Model }

// Close does nothing: the interpreter holds only Go memory.
func (goSession) Close() error { return nil }
