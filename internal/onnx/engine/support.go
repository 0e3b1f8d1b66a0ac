package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// Support says which runtimes can serve one ONNX model, from its graph.
type Support struct {
	// Opset is the model's default-domain opset.
	Opset int64 `json:"opset"`
	// Operators lists the graph's distinct operators, sorted; an operator
	// outside the default domain is written domain.Op.
	Operators []string `json:"operators"`
	// Runtimes names the runtimes that can serve the model: RuntimeGo when
	// the Go runtime loads it, RuntimeONNXRuntime when every operator is in
	// a domain ONNX Runtime implements (where the agent has its library).
	Runtimes []string `json:"runtimes"`
	// GoMissing lists the operators the Go runtime lacks.
	GoMissing []string `json:"goMissing,omitempty"`
	// GoError says why the Go runtime cannot load the model; empty when it can.
	GoError string `json:"goError,omitempty"`
}

// ortDomain reports whether ONNX Runtime's CPU provider implements
// operators of domain d.
func ortDomain(d string) bool {
	switch d {
	case "", "ai.onnx", "ai.onnx.ml", "com.microsoft":
		return true
	}
	return false
}

// CheckSupport reads the ONNX model data and says which runtimes can serve
// it. The Go runtime's answer is exact: it loads the model when no operator
// is missing. ONNX Runtime's is by operator domain. An error means data is
// not an ONNX model.
func CheckSupport(data []byte) (Support, error) {
	if len(data) > interp.MaxModelBytes {
		return Support{}, fmt.Errorf("model is %d bytes, more than the %d the runtimes load", len(data), interp.MaxModelBytes)
	}
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(data, mp); err != nil {
		return Support{}, fmt.Errorf("decoding ONNX model: %w", err)
	}
	if mp.GetGraph() == nil {
		return Support{}, errors.New("decoding ONNX model: no graph")
	}
	s := Support{Opset: -1, Operators: []string{}, Runtimes: []string{}}
	for _, o := range mp.GetOpsetImport() {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			s.Opset = o.GetVersion()
		}
	}
	have := interp.Supported()
	ortOK := true
	for _, n := range mp.GetGraph().GetNode() {
		op, d := n.GetOpType(), n.GetDomain()
		name := op
		if d != "" && d != "ai.onnx" {
			name = d + "." + op
		}
		if !slices.Contains(s.Operators, name) {
			s.Operators = append(s.Operators, name)
		}
		if name != op || !slices.Contains(have, op) {
			if !slices.Contains(s.GoMissing, name) {
				s.GoMissing = append(s.GoMissing, name)
			}
		}
		if !ortDomain(d) {
			ortOK = false
		}
	}
	slices.Sort(s.Operators)
	slices.Sort(s.GoMissing)
	if len(s.GoMissing) > 0 {
		s.GoError = "the Go runtime lacks " + strings.Join(s.GoMissing, ", ")
	} else if _, err := interp.LoadProto(mp); err != nil {
		s.GoError = err.Error()
	} else {
		s.Runtimes = append(s.Runtimes, RuntimeGo)
	}
	if ortOK {
		s.Runtimes = append(s.Runtimes, RuntimeONNXRuntime)
	}
	return s, nil
}
