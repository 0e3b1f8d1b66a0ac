// Package onnx writes (and minimally reads) ONNX models through the protobuf types
// of package onnxpb. The Builder makes the small graphs that internal/train exports:
// float32 initializers stored as little-endian raw_data, typed inputs and outputs
// with symbolic dimensions, and nodes with attributes. Serialization is
// deterministic: the same model always gives the same bytes.
package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx/onnxpb"
)

const (
	// IRVersion is the ONNX IR version of the models written here (ONNX 1.12's).
	IRVersion = 8
	// DefaultOpset is the default-domain opset the Builder imports unless told otherwise.
	DefaultOpset = 13
	// Producer is written as producer_name.
	Producer = "outpost"
)

// Dim is one dimension of a tensor shape: a fixed size, or a symbolic name such as
// "N" for a dynamic batch.
type Dim struct {
	Size  int64
	Param string
}

// D is a fixed dimension; P a symbolic one.
func D(size int64) Dim   { return Dim{Size: size} }
func P(param string) Dim { return Dim{Param: param} }
func (d Dim) String() string {
	if d.Param != "" {
		return d.Param
	}
	return fmt.Sprint(d.Size)
}

// Builder assembles a ModelProto. Errors (a duplicate name, a wrong data length)
// are remembered and returned by Model, Marshal and Write.
type Builder struct {
	m     *onnxpb.ModelProto
	names map[string]bool
	err   error
}

// NewBuilder starts a model whose graph is called name, importing the default
// domain at opset (DefaultOpset when 0).
func NewBuilder(name string, opset int64) *Builder {
	if opset == 0 {
		opset = DefaultOpset
	}
	return &Builder{
		m: &onnxpb.ModelProto{
			IrVersion:    proto.Int64(IRVersion),
			ProducerName: proto.String(Producer),
			OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
			Graph:        &onnxpb.GraphProto{Name: proto.String(name)},
		},
		names: map[string]bool{},
	}
}

func (b *Builder) fail(format string, args ...any) {
	if b.err == nil {
		b.err = fmt.Errorf("onnx builder: "+format, args...)
	}
}

func (b *Builder) define(name string) {
	if name == "" {
		b.fail("empty value name")
	} else if b.names[name] {
		b.fail("value %q defined twice", name)
	}
	b.names[name] = true
}

// SetDoc sets the model's doc_string.
func (b *Builder) SetDoc(doc string) *Builder { b.m.DocString = proto.String(doc); return b }

// SetVersion sets model_version.
func (b *Builder) SetVersion(v int64) *Builder { b.m.ModelVersion = proto.Int64(v); return b }

// SetMetadata adds a metadata_props entry (keys in call order).
func (b *Builder) SetMetadata(key, value string) *Builder {
	b.m.MetadataProps = append(b.m.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(key), Value: proto.String(value)})
	return b
}

func valueInfo(name string, elem onnxpb.TensorProto_DataType, shape []Dim) *onnxpb.ValueInfoProto {
	s := &onnxpb.TensorShapeProto{}
	for _, d := range shape {
		if d.Param != "" {
			s.Dim = append(s.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d.Param}})
		} else {
			s.Dim = append(s.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d.Size}})
		}
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(elem)),
			Shape:    s,
		}}},
	}
}

// Input declares a graph input.
func (b *Builder) Input(name string, elem onnxpb.TensorProto_DataType, shape ...Dim) *Builder {
	b.define(name)
	b.m.Graph.Input = append(b.m.Graph.Input, valueInfo(name, elem, shape))
	return b
}

// Output declares a graph output (produced by some node).
func (b *Builder) Output(name string, elem onnxpb.TensorProto_DataType, shape ...Dim) *Builder {
	b.m.Graph.Output = append(b.m.Graph.Output, valueInfo(name, elem, shape))
	return b
}

// Float32 adds a float32 initializer of the given dims, stored as little-endian raw_data.
func (b *Builder) Float32(name string, data []float32, dims ...int64) *Builder {
	b.define(name)
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			b.fail("initializer %q: negative dimension %d", name, d)
			return b
		}
		n *= d
	}
	if n != int64(len(data)) {
		b.fail("initializer %q: %d values for dims %v", name, len(data), dims)
		return b
	}
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	b.m.Graph.Initializer = append(b.m.Graph.Initializer, &onnxpb.TensorProto{
		Name:     proto.String(name),
		DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
		Dims:     append([]int64(nil), dims...),
		RawData:  raw,
	})
	return b
}

// Attr is a node attribute; make one with AttrInt, AttrFloat, AttrInts or AttrString.
type Attr = *onnxpb.AttributeProto

func AttrInt(name string, v int64) Attr {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func AttrFloat(name string, v float32) Attr {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

func AttrInts(name string, v ...int64) Attr {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: append([]int64(nil), v...)}
}

func AttrString(name, v string) Attr {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

// Node appends a node of the default domain. name may be empty; outputs are defined
// by it (each value name may be defined once in the graph).
func (b *Builder) Node(op, name string, inputs, outputs []string, attrs ...Attr) *Builder {
	for _, o := range outputs {
		b.define(o)
	}
	n := &onnxpb.NodeProto{
		OpType:    proto.String(op),
		Input:     append([]string(nil), inputs...),
		Output:    append([]string(nil), outputs...),
		Attribute: attrs,
	}
	if name != "" {
		n.Name = proto.String(name)
	}
	b.m.Graph.Node = append(b.m.Graph.Node, n)
	return b
}

// Model returns the model built so far, or the first error met.
func (b *Builder) Model() (*onnxpb.ModelProto, error) {
	if b.err != nil {
		return nil, b.err
	}
	return b.m, nil
}

// Marshal serializes the model deterministically.
func (b *Builder) Marshal() ([]byte, error) {
	m, err := b.Model()
	if err != nil {
		return nil, err
	}
	return Marshal(m)
}

// Marshal serializes any model deterministically.
func Marshal(m *onnxpb.ModelProto) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// Write serializes the model to w.
func (b *Builder) Write(w io.Writer) error {
	data, err := b.Marshal()
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// Unmarshal decodes a serialized model and checks the little that every reader
// here relies on: a graph is present.
func Unmarshal(data []byte) (*onnxpb.ModelProto, error) {
	m := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("onnx: decoding model: %w", err)
	}
	if m.Graph == nil {
		return nil, errors.New("onnx: model has no graph")
	}
	return m, nil
}

// Float32Data returns the values of a float32 tensor, from raw_data (little-endian)
// or float_data, checking the count against the dims.
func Float32Data(t *onnxpb.TensorProto) ([]float32, error) {
	if t.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
		return nil, fmt.Errorf("onnx: tensor %q: data type %d, want FLOAT", t.GetName(), t.GetDataType())
	}
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return nil, fmt.Errorf("onnx: tensor %q: external data is not supported", t.GetName())
	}
	n := int64(1)
	for _, d := range t.Dims {
		if d < 0 || (d > 0 && n > math.MaxInt32/d) {
			return nil, fmt.Errorf("onnx: tensor %q: bad dims %v", t.GetName(), t.Dims)
		}
		n *= d
	}
	var out []float32
	switch {
	case t.RawData != nil:
		if int64(len(t.RawData)) != 4*n {
			return nil, fmt.Errorf("onnx: tensor %q: %d raw bytes for dims %v", t.GetName(), len(t.RawData), t.Dims)
		}
		out = make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.RawData[4*i:]))
		}
	default:
		if int64(len(t.FloatData)) != n {
			return nil, fmt.Errorf("onnx: tensor %q: %d values for dims %v", t.GetName(), len(t.FloatData), t.Dims)
		}
		out = append([]float32(nil), t.FloatData...)
	}
	return out, nil
}
