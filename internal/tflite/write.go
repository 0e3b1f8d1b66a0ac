package tflite

import (
	flatbuffers "github.com/google/flatbuffers/go"

	fb "outpost.dev/outpost/internal/tflite/schema/tflite"
)

// schemaVersion is the version of the TensorFlow Lite schema written.
const schemaVersion = 3

// fileIdentifier is the schema's file_identifier, at bytes 4-8 of a model.
const fileIdentifier = "TFL3"

// quant are a tensor's quantization parameters: f = scale * (q - zero),
// per element of dim when there is more than one scale.
type quant struct {
	scale []float32
	zero  []int64
	dim   int32
}

// tensor is one tensor of the graph being written.
type tensor struct {
	name   string
	shape  []int32
	typ    fb.TensorType
	buffer uint32 // 0: no data
	q      *quant
}

// options writes an operator's builtin options, returning the union's
// type and the table's offset.
type options func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT)

// operator is one operator of the graph being written.
type operator struct {
	code    fb.BuiltinOperator
	version int32
	in, out []int32
	opts    options
}

// graph is a TensorFlow Lite model of one subgraph, before serialization.
type graph struct {
	tensors []tensor
	buffers [][]byte // buffers[0] is the empty sentinel
	ops     []operator
	inputs  []int32
	outputs []int32
}

func newGraph() *graph { return &graph{buffers: [][]byte{nil}} }

// addTensor appends t (with data, when not nil, in a buffer of its own)
// and returns its index.
func (g *graph) addTensor(t tensor, data []byte) int32 {
	if data != nil {
		t.buffer = uint32(len(g.buffers))
		g.buffers = append(g.buffers, data)
	}
	g.tensors = append(g.tensors, t)
	return int32(len(g.tensors) - 1)
}

// marshal serializes g with file identifier "TFL3".
func (g *graph) marshal(description string) []byte {
	b := flatbuffers.NewBuilder(1 << 16)
	size := 0
	for _, d := range g.buffers {
		size += len(d)
	}
	if size > 0 {
		b = flatbuffers.NewBuilder(size + 1<<16)
	}

	// Operator codes, in order of first use.
	var codes []fb.BuiltinOperator
	versions := map[fb.BuiltinOperator]int32{}
	index := map[fb.BuiltinOperator]uint32{}
	for _, op := range g.ops {
		if _, ok := index[op.code]; !ok {
			index[op.code] = uint32(len(codes))
			codes = append(codes, op.code)
		}
		versions[op.code] = max(versions[op.code], op.version, 1)
	}
	codeOffs := make([]flatbuffers.UOffsetT, len(codes))
	for i, c := range codes {
		fb.OperatorCodeStart(b)
		fb.OperatorCodeAddDeprecatedBuiltinCode(b, int8(min(int32(c), int32(fb.BuiltinOperatorPLACEHOLDER_FOR_GREATER_OP_CODES))))
		fb.OperatorCodeAddVersion(b, versions[c])
		fb.OperatorCodeAddBuiltinCode(b, c)
		codeOffs[i] = fb.OperatorCodeEnd(b)
	}
	codesVec := offsetVector(b, fb.ModelStartOperatorCodesVector, codeOffs)

	bufOffs := make([]flatbuffers.UOffsetT, len(g.buffers))
	for i, d := range g.buffers {
		var data flatbuffers.UOffsetT
		if d != nil {
			// Buffer.data is force_align: 16 in the schema, which flatc's Go
			// code leaves to the writer.
			b.StartVector(1, len(d), 16)
			for j := len(d) - 1; j >= 0; j-- {
				b.PlaceByte(d[j])
			}
			data = b.EndVector(len(d))
		}
		fb.BufferStart(b)
		if d != nil {
			fb.BufferAddData(b, data)
		}
		bufOffs[i] = fb.BufferEnd(b)
	}
	bufVec := offsetVector(b, fb.ModelStartBuffersVector, bufOffs)

	tensOffs := make([]flatbuffers.UOffsetT, len(g.tensors))
	for i, t := range g.tensors {
		name := b.CreateString(t.name)
		shape := int32Vector(b, fb.TensorStartShapeVector, t.shape)
		var q flatbuffers.UOffsetT
		if t.q != nil {
			fb.QuantizationParametersStartScaleVector(b, len(t.q.scale))
			for j := len(t.q.scale) - 1; j >= 0; j-- {
				b.PrependFloat32(t.q.scale[j])
			}
			scale := b.EndVector(len(t.q.scale))
			fb.QuantizationParametersStartZeroPointVector(b, len(t.q.zero))
			for j := len(t.q.zero) - 1; j >= 0; j-- {
				b.PrependInt64(t.q.zero[j])
			}
			zero := b.EndVector(len(t.q.zero))
			fb.QuantizationParametersStart(b)
			fb.QuantizationParametersAddScale(b, scale)
			fb.QuantizationParametersAddZeroPoint(b, zero)
			fb.QuantizationParametersAddQuantizedDimension(b, t.q.dim)
			q = fb.QuantizationParametersEnd(b)
		}
		fb.TensorStart(b)
		fb.TensorAddShape(b, shape)
		fb.TensorAddType(b, t.typ)
		fb.TensorAddBuffer(b, t.buffer)
		fb.TensorAddName(b, name)
		if t.q != nil {
			fb.TensorAddQuantization(b, q)
		}
		tensOffs[i] = fb.TensorEnd(b)
	}
	tensVec := offsetVector(b, fb.SubGraphStartTensorsVector, tensOffs)

	opOffs := make([]flatbuffers.UOffsetT, len(g.ops))
	for i, op := range g.ops {
		in := int32Vector(b, fb.OperatorStartInputsVector, op.in)
		out := int32Vector(b, fb.OperatorStartOutputsVector, op.out)
		var kind fb.BuiltinOptions
		var opts flatbuffers.UOffsetT
		if op.opts != nil {
			kind, opts = op.opts(b)
		}
		fb.OperatorStart(b)
		fb.OperatorAddOpcodeIndex(b, index[op.code])
		fb.OperatorAddInputs(b, in)
		fb.OperatorAddOutputs(b, out)
		if op.opts != nil {
			fb.OperatorAddBuiltinOptionsType(b, kind)
			fb.OperatorAddBuiltinOptions(b, opts)
		}
		opOffs[i] = fb.OperatorEnd(b)
	}
	opsVec := offsetVector(b, fb.SubGraphStartOperatorsVector, opOffs)
	ins := int32Vector(b, fb.SubGraphStartInputsVector, g.inputs)
	outs := int32Vector(b, fb.SubGraphStartOutputsVector, g.outputs)
	sgName := b.CreateString("main")
	fb.SubGraphStart(b)
	fb.SubGraphAddTensors(b, tensVec)
	fb.SubGraphAddInputs(b, ins)
	fb.SubGraphAddOutputs(b, outs)
	fb.SubGraphAddOperators(b, opsVec)
	fb.SubGraphAddName(b, sgName)
	sg := fb.SubGraphEnd(b)
	sgVec := offsetVector(b, fb.ModelStartSubgraphsVector, []flatbuffers.UOffsetT{sg})

	desc := b.CreateString(description)
	fb.ModelStart(b)
	fb.ModelAddVersion(b, schemaVersion)
	fb.ModelAddOperatorCodes(b, codesVec)
	fb.ModelAddSubgraphs(b, sgVec)
	fb.ModelAddDescription(b, desc)
	fb.ModelAddBuffers(b, bufVec)
	b.FinishWithFileIdentifier(fb.ModelEnd(b), []byte(fileIdentifier))
	return b.FinishedBytes()
}

func offsetVector(b *flatbuffers.Builder, start func(*flatbuffers.Builder, int) flatbuffers.UOffsetT, offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	start(b, len(offs))
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	return b.EndVector(len(offs))
}

func int32Vector(b *flatbuffers.Builder, start func(*flatbuffers.Builder, int) flatbuffers.UOffsetT, v []int32) flatbuffers.UOffsetT {
	start(b, len(v))
	for i := len(v) - 1; i >= 0; i-- {
		b.PrependInt32(v[i])
	}
	return b.EndVector(len(v))
}
