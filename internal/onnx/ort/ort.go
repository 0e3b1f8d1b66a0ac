//go:build cgo

package ort

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"

	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
)

var (
	_ engine.Runtime = (*Runtime)(nil)
	_ engine.Session = (*Session)(nil)
)

// environment records the process-wide ONNX Runtime environment: the
// onnxruntime_go package keeps one per process, so this state is necessarily
// global too. It is only touched under its mutex.
var environment struct {
	sync.Mutex
	lib string // the library loaded, "" until one is
}

// New loads the ONNX Runtime shared library at libPath (once per process)
// and returns a Runtime that makes sessions with it. It fails with a clear
// error when the file is missing, is not a loadable library, or is an ONNX
// Runtime too old for the C API version onnxruntime_go was built against.
func New(libPath string, opts ...Option) (*Runtime, error) {
	if libPath == "" {
		return nil, fmt.Errorf("onnxruntime: no shared library path (set %s, e.g. from scripts/ort.sh)", EnvLib)
	}
	abs, err := filepath.Abs(libPath)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: library path %s: %w", libPath, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("onnxruntime: shared library: %w", err)
	} else if fi.IsDir() {
		return nil, fmt.Errorf("onnxruntime: shared library %s is a directory", abs)
	}
	r := &Runtime{lib: abs}
	for _, o := range opts {
		o(r)
	}
	if r.threads < 0 {
		return nil, fmt.Errorf("onnxruntime: %d intra-op threads", r.threads)
	}

	environment.Lock()
	defer environment.Unlock()
	switch environment.lib {
	case abs:
		return r, nil
	case "":
	default:
		return nil, fmt.Errorf("onnxruntime: this process already loaded %s; cannot also load %s", environment.lib, abs)
	}
	ortgo.SetSharedLibraryPath(abs)
	if err := ortgo.InitializeEnvironment(ortgo.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("onnxruntime: loading %s (a compatible libonnxruntime of version 1.24 or later is needed): %w", abs, err)
	}
	environment.lib = abs
	return r, nil
}

// Version is the version of the loaded ONNX Runtime library, such as "1.30.0".
func (r *Runtime) Version() string { return ortgo.GetVersion() }

// Load reads the model file at path and makes a session for it (a *Session).
func (r *Runtime) Load(ctx context.Context, path string) (engine.Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: %w", err)
	}
	s, err := r.LoadBytes(ctx, data)
	if err != nil {
		return nil, err // not a nil *Session in a non-nil interface
	}
	return s, nil
}

// LoadBytes makes a session for a serialized model.
func (r *Runtime) LoadBytes(ctx context.Context, data []byte) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ins, outs, err := ortgo.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: reading model: %w", err)
	}
	s := &Session{}
	if s.inputs, err = valueInfos("input", ins); err != nil {
		return nil, err
	}
	if s.outputs, err = valueInfos("output", outs); err != nil {
		return nil, err
	}
	inNames, outNames := names(s.inputs), names(s.outputs)
	opts, err := ortgo.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: session options: %w", err)
	}
	defer opts.Destroy()
	if r.threads > 0 {
		if err := opts.SetIntraOpNumThreads(r.threads); err != nil {
			return nil, fmt.Errorf("onnxruntime: session options: %w", err)
		}
	}
	s.sess, err = ortgo.NewDynamicAdvancedSessionWithONNXData(data, inNames, outNames, opts)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: creating session: %w", err)
	}
	return s, nil
}

func names(vs []interp.ValueInfo) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}

// valueInfos converts ONNX Runtime's view of the graph's inputs or outputs;
// only tensors of the element types the Go runtime knows are accepted.
func valueInfos(kind string, infos []ortgo.InputOutputInfo) ([]interp.ValueInfo, error) {
	out := make([]interp.ValueInfo, 0, len(infos))
	for _, in := range infos {
		if in.OrtValueType != ortgo.ONNXTypeTensor {
			return nil, fmt.Errorf("onnxruntime: %s %q is a %s, not a tensor", kind, in.Name, in.OrtValueType)
		}
		dt, ok := fromORTType(in.DataType)
		if !ok {
			return nil, fmt.Errorf("onnxruntime: %s %q has element type %s, which is not supported", kind, in.Name, in.DataType)
		}
		shape := make([]int, len(in.Dimensions))
		for i, d := range in.Dimensions {
			shape[i] = int(d)
			if d < 0 {
				shape[i] = -1
			}
		}
		out = append(out, interp.ValueInfo{Name: in.Name, DType: dt, Shape: shape})
	}
	return out, nil
}

func fromORTType(t ortgo.TensorElementDataType) (interp.DType, bool) {
	switch t {
	case ortgo.TensorElementDataTypeFloat:
		return interp.Float32, true
	case ortgo.TensorElementDataTypeUint8:
		return interp.Uint8, true
	case ortgo.TensorElementDataTypeInt8:
		return interp.Int8, true
	case ortgo.TensorElementDataTypeInt32:
		return interp.Int32, true
	case ortgo.TensorElementDataTypeInt64:
		return interp.Int64, true
	case ortgo.TensorElementDataTypeBool:
		return interp.Bool, true
	}
	return 0, false
}

// Session is one model loaded into ONNX Runtime. Run may be called from many
// goroutines at once (ONNX Runtime's Run is thread-safe); Close waits for
// the runs in flight.
type Session struct {
	inputs, outputs []interp.ValueInfo

	mu     sync.RWMutex // Run holds it shared, Close exclusively
	sess   *ortgo.DynamicAdvancedSession
	closed bool
}

// Inputs describes the model's inputs (dimension -1 is dynamic).
func (s *Session) Inputs() []interp.ValueInfo { return s.inputs }

// Outputs describes the model's outputs.
func (s *Session) Outputs() []interp.ValueInfo { return s.outputs }

// Run evaluates the model on one tensor per model input and returns every
// output. Inputs are checked against the model (name, element type, rank and
// fixed dimensions) before ONNX Runtime sees them. A context that is done
// stops the run.
func (s *Session) Run(ctx context.Context, in map[string]*interp.Tensor) (map[string]*interp.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkInputs(s.inputs, in); err != nil {
		return nil, err
	}
	inputs := make([]ortgo.Value, len(s.inputs))
	defer func() {
		for _, v := range inputs {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, vi := range s.inputs {
		v, err := toORT(in[vi.Name])
		if err != nil {
			return nil, fmt.Errorf("onnxruntime: input %q: %w", vi.Name, err)
		}
		inputs[i] = v
	}
	outputs := make([]ortgo.Value, len(s.outputs))
	defer func() {
		for _, v := range outputs {
			if v != nil {
				v.Destroy()
			}
		}
	}()

	var ro *ortgo.RunOptions
	if ctx.Done() != nil {
		var err error
		if ro, err = ortgo.NewRunOptions(); err != nil {
			return nil, fmt.Errorf("onnxruntime: run options: %w", err)
		}
		defer ro.Destroy()
		stop := context.AfterFunc(ctx, func() { ro.Terminate() })
		defer stop()
	}

	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	err := s.sess.RunWithOptions(inputs, outputs, ro)
	s.mu.RUnlock()
	runtime.KeepAlive(in) // ONNX Runtime read the inputs' Go memory in place
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("onnxruntime: %w", cerr)
		}
		return nil, fmt.Errorf("onnxruntime: %w", err)
	}
	res := make(map[string]*interp.Tensor, len(outputs))
	for i, v := range outputs {
		t, err := fromORT(v)
		if err != nil {
			return nil, fmt.Errorf("onnxruntime: output %q: %w", s.outputs[i].Name, err)
		}
		res[s.outputs[i].Name] = t
	}
	return res, nil
}

// Close frees the session, waiting for runs in flight; later runs fail with
// ErrClosed. Closing twice is harmless.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.sess.Destroy(); err != nil {
		return fmt.Errorf("onnxruntime: closing session: %w", err)
	}
	return nil
}

// checkInputs verifies that in has exactly the model's inputs, each of the
// declared element type and shape (dynamic dimensions match any size).
func checkInputs(want []interp.ValueInfo, in map[string]*interp.Tensor) error {
	for _, vi := range want {
		t, ok := in[vi.Name]
		if !ok || t == nil {
			return fmt.Errorf("onnxruntime: input %q is missing", vi.Name)
		}
		if t.DType != vi.DType {
			return fmt.Errorf("onnxruntime: input %q: element type %s, model wants %s", vi.Name, t.DType, vi.DType)
		}
		if err := t.Validate(); err != nil {
			return fmt.Errorf("onnxruntime: input %q: %w", vi.Name, err)
		}
		if len(t.Shape) != len(vi.Shape) {
			return fmt.Errorf("onnxruntime: input %q: shape %s, model wants rank %d %s", vi.Name, interp.ShapeString(t.Shape), len(vi.Shape), interp.ShapeString(vi.Shape))
		}
		for i, d := range vi.Shape {
			if d >= 0 && t.Shape[i] != d {
				return fmt.Errorf("onnxruntime: input %q: shape %s, model wants %s", vi.Name, interp.ShapeString(t.Shape), interp.ShapeString(vi.Shape))
			}
		}
	}
	if len(in) != len(want) {
		known := make(map[string]bool, len(want))
		for _, vi := range want {
			known[vi.Name] = true
		}
		for name := range in {
			if !known[name] {
				return fmt.Errorf("onnxruntime: %q is not an input of the model", name)
			}
		}
	}
	return nil
}

// toORT wraps t's data (no copy) in an ONNX Runtime value.
func toORT(t *interp.Tensor) (ortgo.Value, error) {
	if len(t.Shape) == 0 {
		switch t.DType {
		case interp.Float32:
			return ortgo.NewScalar(t.F32[0])
		case interp.Uint8:
			return ortgo.NewScalar(t.U8[0])
		case interp.Int8:
			return ortgo.NewScalar(t.I8[0])
		case interp.Int32:
			return ortgo.NewScalar(t.I32[0])
		case interp.Int64:
			return ortgo.NewScalar(t.I64[0])
		case interp.Bool:
			return ortgo.NewScalar(t.B[0])
		}
		return nil, fmt.Errorf("element type %s is not supported", t.DType)
	}
	shape := make(ortgo.Shape, len(t.Shape))
	for i, d := range t.Shape {
		shape[i] = int64(d)
	}
	switch t.DType {
	case interp.Float32:
		return newTensor(shape, t.F32)
	case interp.Uint8:
		return newTensor(shape, t.U8)
	case interp.Int8:
		return newTensor(shape, t.I8)
	case interp.Int32:
		return newTensor(shape, t.I32)
	case interp.Int64:
		return newTensor(shape, t.I64)
	case interp.Bool:
		return newTensor(shape, t.B)
	}
	return nil, fmt.Errorf("element type %s is not supported", t.DType)
}

// newTensor wraps data; an empty tensor gets a one-element backing slice, as
// the C API wants a valid pointer.
func newTensor[T ortgo.TensorData](shape ortgo.Shape, data []T) (ortgo.Value, error) {
	if len(data) == 0 {
		data = make([]T, 1)
	}
	return ortgo.NewTensor(shape, data)
}

// fromORT copies an output value into a Go tensor. The data slices returned
// by onnxruntime_go are Go memory already copied out of ONNX Runtime's, so
// they are taken over as they are.
func fromORT(v ortgo.Value) (*interp.Tensor, error) {
	var t *interp.Tensor
	switch o := v.(type) {
	case *ortgo.Tensor[float32]:
		t = &interp.Tensor{DType: interp.Float32, F32: o.GetData()}
	case *ortgo.Tensor[uint8]:
		t = &interp.Tensor{DType: interp.Uint8, U8: o.GetData()}
	case *ortgo.Tensor[int8]:
		t = &interp.Tensor{DType: interp.Int8, I8: o.GetData()}
	case *ortgo.Tensor[int32]:
		t = &interp.Tensor{DType: interp.Int32, I32: o.GetData()}
	case *ortgo.Tensor[int64]:
		t = &interp.Tensor{DType: interp.Int64, I64: o.GetData()}
	case *ortgo.Tensor[bool]:
		t = &interp.Tensor{DType: interp.Bool, B: o.GetData()}
	default:
		return nil, fmt.Errorf("value of type %T is not supported", v)
	}
	shape := v.GetShape()
	t.Shape = make([]int, len(shape))
	for i, d := range shape {
		t.Shape[i] = int(d)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}
