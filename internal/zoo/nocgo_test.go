//go:build !cgo

package zoo

import (
	"errors"

	"outpost.dev/outpost/internal/onnx/ort"
)

func noCgo(err error) bool { return errors.Is(err, ort.ErrNoCgo) }
