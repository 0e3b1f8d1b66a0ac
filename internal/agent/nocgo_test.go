//go:build !cgo

package agent

import (
	"errors"

	"outpost.dev/outpost/internal/onnx/ort"
)

// noCgo reports whether err says the binary cannot load ONNX Runtime for want of cgo.
func noCgo(err error) bool { return errors.Is(err, ort.ErrNoCgo) }
