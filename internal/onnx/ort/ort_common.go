// Package ort runs ONNX models with ONNX Runtime, through
// github.com/yalue/onnxruntime_go, which loads the runtime's shared library
// (libonnxruntime.so) at run time with dlopen: binaries built with it start
// and serve with the pure-Go runtime on hosts without the library, and use
// ONNX Runtime where it is installed (scripts/ort.sh installs the CPU library
// of npm's onnxruntime-node and prints its path).
//
// Loading the library needs cgo; built without it, New returns ErrNoCgo.
// ONNX Runtime's environment is process-wide: the first New loads the
// library and later calls share it; a second library path in the same
// process is refused.
package ort

import (
	"errors"
	"os"

	"outpost.dev/outpost/internal/onnx/engine"
)

// EnvLib is the environment variable that names the ONNX Runtime shared
// library for tests, benchmarks and the agent's default.
const EnvLib = "OUTPOST_ONNXRUNTIME_LIB"

// ErrNoLibrary is returned by FromEnv when EnvLib is not set.
var ErrNoLibrary = errors.New("onnxruntime: " + EnvLib + " is not set (scripts/ort.sh installs the library and prints its path)")

// ErrNoCgo is what every entry point returns in a binary built without cgo,
// which cannot load a C library.
var ErrNoCgo = errors.New("onnxruntime: this binary was built without cgo and cannot load ONNX Runtime")

// ErrClosed is returned by Run on a closed session.
var ErrClosed = errors.New("onnxruntime: session is closed")

// FromEnv is New with the library named by EnvLib; it returns ErrNoLibrary
// when the variable is unset or empty.
func FromEnv(opts ...Option) (*Runtime, error) {
	lib := os.Getenv(EnvLib)
	if lib == "" {
		return nil, ErrNoLibrary
	}
	return New(lib, opts...)
}

// Runtime loads models into ONNX Runtime sessions.
type Runtime struct {
	lib     string
	threads int
}

// Option tunes a Runtime.
type Option func(*Runtime)

// WithIntraOpThreads sets the threads each session may use inside one
// operator (ONNX Runtime's default, 0, is one per physical core).
func WithIntraOpThreads(n int) Option { return func(r *Runtime) { r.threads = n } }

// Name is "onnxruntime" (engine.RuntimeONNXRuntime).
func (r *Runtime) Name() string { return engine.RuntimeONNXRuntime }

// Library is the absolute path of the shared library in use.
func (r *Runtime) Library() string { return r.lib }
