//go:build !cgo

package ort

import (
	"context"

	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
)

var (
	_ engine.Runtime = (*Runtime)(nil)
	_ engine.Session = (*Session)(nil)
)

// New fails: loading ONNX Runtime needs cgo.
func New(libPath string, opts ...Option) (*Runtime, error) { return nil, ErrNoCgo }

// Version is empty without cgo.
func (r *Runtime) Version() string { return "" }

// Load fails: loading ONNX Runtime needs cgo.
func (r *Runtime) Load(ctx context.Context, path string) (engine.Session, error) {
	return nil, ErrNoCgo
}

// LoadBytes fails: loading ONNX Runtime needs cgo.
func (r *Runtime) LoadBytes(ctx context.Context, data []byte) (*Session, error) {
	return nil, ErrNoCgo
}

// Session is never made without cgo.
type Session struct{}

// Inputs is nil without cgo.
func (s *Session) Inputs() []interp.ValueInfo { return nil }

// Outputs is nil without cgo.
func (s *Session) Outputs() []interp.ValueInfo { return nil }

// Run fails without cgo.
func (s *Session) Run(ctx context.Context, in map[string]*interp.Tensor) (map[string]*interp.Tensor, error) {
	return nil, ErrNoCgo
}

// Close does nothing without cgo.
func (s *Session) Close() error { return nil }
