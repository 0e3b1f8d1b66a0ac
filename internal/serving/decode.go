package serving

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"outpost.dev/outpost/internal/onnx/interp"
)

// Protocol datatype names of the element types the runtimes compute with.
var datatypes = []struct {
	name string
	dt   interp.DType
	size int
}{
	{"FP32", interp.Float32, 4},
	{"UINT8", interp.Uint8, 1},
	{"INT8", interp.Int8, 1},
	{"INT32", interp.Int32, 4},
	{"INT64", interp.Int64, 8},
	{"BOOL", interp.Bool, 1},
}

// DatatypeName is the protocol's name of dt ("FP32", "INT64", ...), or
// dt's ONNX name when the protocol has none the runtimes use.
func DatatypeName(dt interp.DType) string {
	for _, d := range datatypes {
		if d.dt == dt {
			return d.name
		}
	}
	return strings.ToUpper(dt.String())
}

// ParseDatatype returns the element type of a protocol datatype name.
func ParseDatatype(name string) (interp.DType, bool) {
	for _, d := range datatypes {
		if d.name == name {
			return d.dt, true
		}
	}
	return 0, false
}

func elemSize(dt interp.DType) int {
	for _, d := range datatypes {
		if d.dt == dt {
			return d.size
		}
	}
	return 0
}

// Limits bound what a request may hold; zero fields take the defaults.
type Limits struct {
	// MaxInputs bounds the number of inputs and requested outputs (default 256).
	MaxInputs int
	// MaxDims bounds the rank of an input (default 16).
	MaxDims int
	// MaxElements bounds the elements of one input (default 1<<28).
	MaxElements int
}

func (l Limits) withDefaults() Limits {
	if l.MaxInputs <= 0 {
		l.MaxInputs = 256
	}
	if l.MaxDims <= 0 {
		l.MaxDims = 16
	}
	if l.MaxElements <= 0 {
		l.MaxElements = 1 << 28
	}
	return l
}

// InferRequest is a decoded, validated inference request.
type InferRequest struct {
	// ID is the request's id, echoed in the response.
	ID string
	// Inputs holds one tensor per model input.
	Inputs map[string]*interp.Tensor
	// Outputs lists the outputs asked for, in order; empty means all.
	Outputs []RequestedOutput
	// BinaryOutputs asks for every output as binary data (the
	// binary_data_output request parameter).
	BinaryOutputs bool
}

// RequestedOutput is an output a request asks for.
type RequestedOutput struct {
	Name string
	// Binary asks for the output as binary data.
	Binary bool
}

// RequestError is a request the server refuses as malformed or not
// matching the model (HTTP 400).
type RequestError struct{ Msg string }

func (e *RequestError) Error() string { return e.Msg }

func badRequest(format string, args ...any) error {
	return &RequestError{Msg: fmt.Sprintf(format, args...)}
}

// Wire forms of the protocol's JSON objects.
type (
	requestJSON struct {
		ID         string                     `json:"id,omitempty"`
		Parameters map[string]json.RawMessage `json:"parameters,omitempty"`
		Inputs     []inputJSON                `json:"inputs"`
		Outputs    []outputJSON               `json:"outputs,omitempty"`
	}
	inputJSON struct {
		Name       string                     `json:"name"`
		Shape      []int64                    `json:"shape"`
		Datatype   string                     `json:"datatype"`
		Parameters map[string]json.RawMessage `json:"parameters,omitempty"`
		Data       json.RawMessage            `json:"data,omitempty"`
	}
	outputJSON struct {
		Name       string                     `json:"name"`
		Parameters map[string]json.RawMessage `json:"parameters,omitempty"`
	}
)

// DecodeRequest decodes an inference request for a model with the given
// inputs and outputs. body holds the JSON object, followed by the binary
// tensor data when jsonLen >= 0 (the Inference-Header-Content-Length
// header); jsonLen < 0 means body is JSON only. Every input must be a
// model input, with the model's datatype, a shape that fits the model's,
// and exactly as many elements as its shape says. Errors are *RequestError.
func DecodeRequest(body []byte, jsonLen int64, inputs, outputs []interp.ValueInfo, lim Limits) (*InferRequest, error) {
	js, bin := body, []byte(nil)
	if jsonLen >= 0 {
		if jsonLen > int64(len(body)) {
			return nil, badRequest("Inference-Header-Content-Length %d exceeds the body's %d bytes", jsonLen, len(body))
		}
		js, bin = body[:jsonLen], body[jsonLen:]
	}
	var req requestJSON
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, badRequest("malformed request JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, badRequest("malformed request JSON: data after the request object")
	}
	binaryOut, err := boolParam(req.Parameters, "binary_data_output", "request")
	if err != nil {
		return nil, err
	}
	b, err := newRequestBuilder(req.ID, len(req.Inputs), len(req.Outputs), inputs, outputs, lim)
	if err != nil {
		return nil, err
	}
	b.req.BinaryOutputs = binaryOut
	for i := range req.Inputs {
		in := &req.Inputs[i]
		t, n, err := b.input(in.Name, in.Datatype, in.Shape)
		if err != nil {
			return nil, err
		}
		if bin, err = fillJSONInput(t, n, in, bin); err != nil {
			return nil, err
		}
	}
	if len(bin) > 0 {
		return nil, badRequest("%d bytes of binary data follow the request that no input claims (binary_data_size)", len(bin))
	}
	for _, o := range req.Outputs {
		if err := b.output(o.Name); err != nil {
			return nil, err
		}
		bo, err := boolParam(o.Parameters, "binary_data", fmt.Sprintf("output %q", o.Name))
		if err != nil {
			return nil, err
		}
		b.req.Outputs[len(b.req.Outputs)-1].Binary = bo
	}
	return b.finish()
}

// fillJSONInput fills t, an input of n elements, from its JSON data or
// from the front of bin; it returns the rest of bin.
func fillJSONInput(t *interp.Tensor, n int, in *inputJSON, bin []byte) ([]byte, error) {
	size, hasSize, err := intParam(in.Parameters, "binary_data_size", fmt.Sprintf("input %q", in.Name))
	if err != nil {
		return nil, err
	}
	if hasSize {
		if len(in.Data) > 0 && string(in.Data) != "null" {
			return nil, badRequest("input %q: both data and binary_data_size", in.Name)
		}
		if want := rawSize(t.DType, n); size != want {
			return nil, badRequest("input %q: binary_data_size %d, but shape %s of %s needs %d bytes", in.Name, size, shapeString(t.Shape), in.Datatype, want)
		}
		if size > int64(len(bin)) {
			return nil, badRequest("input %q: binary_data_size %d, but only %d bytes of binary data remain", in.Name, size, len(bin))
		}
		fromBinary(t, bin[:size], n)
		return bin[size:], nil
	}
	if len(in.Data) == 0 || string(in.Data) == "null" {
		return nil, badRequest("input %q: no data and no binary_data_size", in.Name)
	}
	if err := parseData(t, in.Data, n, max(len(t.Shape), 1)); err != nil {
		return nil, badRequest("input %q: %v", in.Name, err)
	}
	return bin, nil
}

// requestBuilder checks the inputs and outputs a request declares against
// the model's, the same way for every transport, and collects them into an
// InferRequest. Its errors are *RequestError.
type requestBuilder struct {
	inputs, outputs []interp.ValueInfo
	lim             Limits
	req             *InferRequest
}

// newRequestBuilder starts a request of id with nIn inputs and nOut
// requested outputs, which lim bounds.
func newRequestBuilder(id string, nIn, nOut int, inputs, outputs []interp.ValueInfo, lim Limits) (*requestBuilder, error) {
	lim = lim.withDefaults()
	if nIn == 0 {
		return nil, badRequest("the request has no inputs")
	}
	if nIn > lim.MaxInputs || nOut > lim.MaxInputs {
		return nil, badRequest("the request has %d inputs and %d outputs: at most %d each", nIn, nOut, lim.MaxInputs)
	}
	return &requestBuilder{inputs: inputs, outputs: outputs, lim: lim,
		req: &InferRequest{ID: id, Inputs: make(map[string]*interp.Tensor, nIn)}}, nil
}

// input checks an input as the request declares it: a model input not
// given before, with the model's datatype and a shape that fits the
// model's; a nil shape is the request giving none. It returns the input's
// tensor, with its type and shape but no data yet, and its element count.
func (b *requestBuilder) input(name, datatype string, shape []int64) (*interp.Tensor, int, error) {
	vi, ok := findValue(b.inputs, name)
	if !ok {
		return nil, 0, badRequest("unknown input %q: the model's inputs are %s", name, valueNames(b.inputs))
	}
	if _, dup := b.req.Inputs[name]; dup {
		return nil, 0, badRequest("input %q appears twice", name)
	}
	dt, ok := ParseDatatype(datatype)
	if !ok {
		return nil, 0, badRequest("input %q: unsupported datatype %q (want one of FP32, INT64, INT32, INT8, UINT8, BOOL)", name, datatype)
	}
	if dt != vi.DType {
		return nil, 0, badRequest("input %q: datatype %s does not match the model's %s", name, datatype, DatatypeName(vi.DType))
	}
	if shape == nil {
		return nil, 0, badRequest("input %q: no shape", name)
	}
	if len(shape) > b.lim.MaxDims {
		return nil, 0, badRequest("input %q: shape has %d dimensions, at most %d", name, len(shape), b.lim.MaxDims)
	}
	dims := make([]int, len(shape))
	n := 1
	for i, d := range shape {
		if d < 0 {
			return nil, 0, badRequest("input %q: negative dimension in shape %v", name, shape)
		}
		if d > int64(b.lim.MaxElements) || (d > 0 && n > b.lim.MaxElements/int(d)) {
			return nil, 0, badRequest("input %q: shape %v has more than %d elements", name, shape, b.lim.MaxElements)
		}
		dims[i] = int(d)
		n *= int(d)
	}
	if vi.Shape != nil && !shapeFits(dims, vi.Shape) {
		return nil, 0, badRequest("input %q: shape %s does not match the model's %s", name, shapeString(dims), shapeString(vi.Shape))
	}
	t := &interp.Tensor{DType: dt, Shape: dims}
	b.req.Inputs[name] = t
	return t, n, nil
}

// output adds an output the request asks for: a model output not asked
// for before.
func (b *requestBuilder) output(name string) error {
	if _, ok := findValue(b.outputs, name); !ok {
		return badRequest("unknown output %q: the model's outputs are %s", name, valueNames(b.outputs))
	}
	for _, o := range b.req.Outputs {
		if o.Name == name {
			return badRequest("output %q requested twice", name)
		}
	}
	b.req.Outputs = append(b.req.Outputs, RequestedOutput{Name: name})
	return nil
}

// finish checks that the request gave every model input.
func (b *requestBuilder) finish() (*InferRequest, error) {
	for _, vi := range b.inputs {
		if _, ok := b.req.Inputs[vi.Name]; !ok {
			return nil, badRequest("missing input %q (%s %s)", vi.Name, DatatypeName(vi.DType), shapeString(vi.Shape))
		}
	}
	return b.req, nil
}

// rawSize is the byte count of n elements of dt laid out raw.
func rawSize(dt interp.DType, n int) int64 { return int64(n) * int64(elemSize(dt)) }

// countError is the error for data of got elements given for a shape of n.
func countError(shape []int, n, got int) error {
	return fmt.Errorf("shape %s has %d elements but data has %d", shapeString(shape), n, got)
}

// shapeFits reports whether shape matches the model's, where -1 is any size.
func shapeFits(shape, model []int) bool {
	if len(shape) != len(model) {
		return false
	}
	for i, d := range model {
		if d >= 0 && d != shape[i] {
			return false
		}
	}
	return true
}

// fromBinary fills t's data from n little-endian elements in b.
func fromBinary(t *interp.Tensor, b []byte, n int) {
	le := binary.LittleEndian
	switch t.DType {
	case interp.Float32:
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case interp.Int32:
		t.I32 = make([]int32, n)
		for i := range t.I32 {
			t.I32[i] = int32(le.Uint32(b[4*i:]))
		}
	case interp.Int64:
		t.I64 = make([]int64, n)
		for i := range t.I64 {
			t.I64[i] = int64(le.Uint64(b[8*i:]))
		}
	case interp.Uint8:
		t.U8 = append([]uint8(nil), b[:n]...)
	case interp.Int8:
		t.I8 = make([]int8, n)
		for i := range t.I8 {
			t.I8[i] = int8(b[i])
		}
	case interp.Bool:
		t.B = make([]bool, n)
		for i := range t.B {
			t.B[i] = b[i] != 0
		}
	}
}

// parseData parses JSON tensor data into t, requiring exactly n elements:
// a flat array (or, for one element, a bare scalar), or arrays nested
// exactly as t's shape, of at most maxDepth levels.
func parseData(t *interp.Tensor, raw []byte, n, maxDepth int) error {
	// Every element takes at least two bytes but the last, which bounds
	// what may be allocated before the count is known.
	c := min(n, len(raw)/2+1)
	switch t.DType {
	case interp.Float32:
		t.F32 = make([]float32, 0, c)
	case interp.Uint8:
		t.U8 = make([]uint8, 0, c)
	case interp.Int8:
		t.I8 = make([]int8, 0, c)
	case interp.Int32:
		t.I32 = make([]int32, 0, c)
	case interp.Int64:
		t.I64 = make([]int64, 0, c)
	case interp.Bool:
		t.B = make([]bool, 0, c)
	}
	p := dataParser{b: raw, t: t, n: n, maxDepth: maxDepth}
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '[' {
		if err := p.array(1); err != nil {
			return err
		}
	} else if err := p.scalar(); err != nil {
		return err
	}
	p.ws()
	if p.i != len(p.b) {
		return fmt.Errorf("malformed data at byte %d", p.i)
	}
	if p.count != n {
		return countError(t.Shape, n, p.count)
	}
	return nil
}

// dataParser reads a JSON array of numbers or booleans, flat or nested as
// the tensor's shape.
type dataParser struct {
	b        []byte
	i        int
	t        *interp.Tensor
	n, count int
	maxDepth int
	// nested is whether the outermost array holds arrays (decided by its
	// first element): then every array at depth d must hold t.Shape[d-1]
	// elements, arrays above the last dimension and numbers in it.
	nested bool
	// path holds the index of the current element in each open array.
	path []int
}

func (p *dataParser) ws() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\n' || p.b[p.i] == '\t' || p.b[p.i] == '\r') {
		p.i++
	}
}

// where names the element at path, such as data[1][0].
func where(path []int) string {
	var b strings.Builder
	b.WriteString("data")
	for _, i := range path {
		b.WriteString("[" + strconv.Itoa(i) + "]")
	}
	return b.String()
}

// nestingError is the error for nested data that does not follow the shape.
func (p *dataParser) nestingError(format string, args ...any) error {
	return fmt.Errorf("nested data must follow shape %s, or be flat: %s", shapeString(p.t.Shape), fmt.Sprintf(format, args...))
}

// array reads an array whose '[' is at p.i, at depth (1 for the outermost).
func (p *dataParser) array(depth int) error {
	if depth > p.maxDepth {
		return fmt.Errorf("data nested deeper than the shape's %d dimensions", p.maxDepth)
	}
	p.i++ // '['
	p.ws()
	if depth == 1 {
		p.nested = p.i < len(p.b) && p.b[p.i] == '['
	}
	p.path = append(p.path, 0)
	defer func() { p.path = p.path[:len(p.path)-1] }()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return p.arrayDone(depth, 0)
	}
	for n := 0; ; n++ {
		p.ws()
		if p.i >= len(p.b) {
			return errors.New("data ends inside an array")
		}
		p.path[len(p.path)-1] = n
		var err error
		switch {
		case p.b[p.i] == '[' && !p.nested:
			return fmt.Errorf("flat data holds an array at %s: give the data flat, or nested as shape %s", where(p.path), shapeString(p.t.Shape))
		case p.b[p.i] == '[':
			err = p.array(depth + 1)
		case p.nested && depth < len(p.t.Shape):
			return p.nestingError("%s is a number, want an array of %d", where(p.path), p.t.Shape[depth])
		default:
			err = p.scalar()
		}
		if err != nil {
			return err
		}
		p.ws()
		if p.i >= len(p.b) {
			return errors.New("data ends inside an array")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return p.arrayDone(depth, n+1)
		default:
			return fmt.Errorf("malformed data at byte %d", p.i)
		}
	}
}

// arrayDone checks that a nested array at depth, of n elements, has its
// dimension's length.
func (p *dataParser) arrayDone(depth, n int) error {
	if !p.nested || depth > len(p.t.Shape) {
		return nil
	}
	if want := p.t.Shape[depth-1]; n != want {
		return p.nestingError("%s has %d elements, want %d", where(p.path[:len(p.path)-1]), n, want)
	}
	return nil
}

// scalar reads one element at p.i and appends it to the tensor.
func (p *dataParser) scalar() error {
	if p.count >= p.n {
		return fmt.Errorf("shape %s has %d elements but data has more", shapeString(p.t.Shape), p.n)
	}
	start := p.i
	for p.i < len(p.b) && isTokenByte(p.b[p.i]) {
		p.i++
	}
	tok := p.b[start:p.i]
	if len(tok) == 0 {
		if p.i < len(p.b) && p.b[p.i] == '"' {
			return fmt.Errorf("element %d is a string, want a %s", p.count, DatatypeName(p.t.DType))
		}
		return fmt.Errorf("malformed data at byte %d", p.i)
	}
	if err := p.appendTok(tok); err != nil {
		return fmt.Errorf("element %d: %w", p.count, err)
	}
	p.count++
	return nil
}

func isTokenByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' ||
		c >= 'a' && c <= 'z' // true, false and misspellings, refused below
}

func (p *dataParser) appendTok(tok []byte) error {
	t := p.t
	s := string(tok)
	if t.DType == interp.Bool {
		switch s {
		case "true":
			t.B = append(t.B, true)
		case "false":
			t.B = append(t.B, false)
		default:
			return fmt.Errorf("%q is not a BOOL (true or false)", s)
		}
		return nil
	}
	if s == "true" || s == "false" || s[0] == '+' {
		return fmt.Errorf("%q is not a %s", s, DatatypeName(t.DType))
	}
	switch t.DType {
	case interp.Float32:
		for _, c := range tok {
			if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
				return fmt.Errorf("%q is not a number", s)
			}
		}
		v, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return fmt.Errorf("%q is not an FP32 number", s)
		}
		t.F32 = append(t.F32, float32(v))
	case interp.Uint8:
		v, err := strconv.ParseUint(s, 10, 8)
		if err != nil {
			return fmt.Errorf("%q is not a UINT8 (an integer from 0 to 255)", s)
		}
		t.U8 = append(t.U8, uint8(v))
	case interp.Int8:
		v, err := strconv.ParseInt(s, 10, 8)
		if err != nil {
			return fmt.Errorf("%q is not an INT8 (an integer from -128 to 127)", s)
		}
		t.I8 = append(t.I8, int8(v))
	case interp.Int32:
		v, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not an INT32", s)
		}
		t.I32 = append(t.I32, int32(v))
	case interp.Int64:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an INT64", s)
		}
		t.I64 = append(t.I64, v)
	default:
		return fmt.Errorf("unsupported datatype %s", t.DType)
	}
	return nil
}

// boolParam reads an optional boolean parameter.
func boolParam(params map[string]json.RawMessage, key, where string) (bool, error) {
	raw, ok := params[key]
	if !ok {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, badRequest("%s: parameter %s must be true or false", where, key)
	}
	return b, nil
}

// intParam reads an optional non-negative integer parameter.
func intParam(params map[string]json.RawMessage, key, where string) (int64, bool, error) {
	raw, ok := params[key]
	if !ok {
		return 0, false, nil
	}
	var v int64
	if err := json.Unmarshal(raw, &v); err != nil || v < 0 {
		return 0, false, badRequest("%s: parameter %s must be a non-negative integer", where, key)
	}
	return v, true, nil
}

func findValue(vs []interp.ValueInfo, name string) (interp.ValueInfo, bool) {
	for _, v := range vs {
		if v.Name == name {
			return v, true
		}
	}
	return interp.ValueInfo{}, false
}

func valueNames(vs []interp.ValueInfo) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = strconv.Quote(v.Name)
	}
	return strings.Join(names, ", ")
}

// shapeString formats a shape as [-1,784].
func shapeString(shape []int) string { return interp.ShapeString(shape) }
