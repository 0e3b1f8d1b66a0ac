package interp

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// runState is the scratch of one Run: the value slots and the argument
// slice handed to kernels. Pooled per model; never shared by two runs.
type runState struct {
	values []*Tensor
	args   []*Tensor
}

func (m *Model) getState() *runState {
	if st, ok := m.states.Get().(*runState); ok {
		return st
	}
	return &runState{values: make([]*Tensor, len(m.consts)), args: make([]*Tensor, m.maxArgs)}
}

func (m *Model) putState(st *runState) {
	clear(st.values)
	clear(st.args)
	m.states.Put(st)
}

// Run evaluates the graph. in maps every input name of Inputs to a tensor
// of its element type whose shape matches the model's static dimensions.
// The input tensors are only read. The result maps every output name to a
// tensor owned by the caller. Run may be called concurrently.
func (m *Model) Run(ctx context.Context, in map[string]*Tensor) (map[string]*Tensor, error) {
	if err := m.checkInputs(in); err != nil {
		return nil, err
	}
	st := m.getState()
	defer m.putState(st)
	vals := st.values
	copy(vals, m.consts)
	for k, s := range m.inSlot {
		vals[s] = in[m.inputs[k].Name]
	}
	for i := range m.steps {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interp: %w", err)
		}
		s := &m.steps[i]
		if err := m.runStep(s, vals, st.args); err != nil {
			return nil, fmt.Errorf("interp: %w", nodeError(s.node, err))
		}
		for _, rc := range s.recycle {
			if t := vals[rc.slot]; t != nil {
				rc.release(t)
			}
		}
		for _, f := range s.free {
			vals[f] = nil
		}
	}
	out := make(map[string]*Tensor, len(m.outputs))
	for k, s := range m.outSlot {
		t := vals[s]
		if m.cloneOut[k] {
			t = t.Clone()
		}
		out[m.outputs[k].Name] = t
	}
	return out, nil
}

func (m *Model) runStep(s *step, vals, scratch []*Tensor) error {
	if s.inPlace != nil {
		t := vals[s.in[0]]
		if err := s.inPlace(s.node, t); err != nil {
			return err
		}
		vals[s.out[0]] = t
		return nil
	}
	args := scratch[:len(s.in)]
	for j, slot := range s.in {
		args[j] = nil
		if slot >= 0 {
			args[j] = vals[slot]
		}
	}
	res, err := s.run(s.node, args)
	if err != nil {
		return err
	}
	for k, slot := range s.out {
		if slot < 0 {
			continue
		}
		if k >= len(res) || res[k] == nil {
			return fmt.Errorf("kernel gave no output %d (%q)", k, s.node.Proto.GetOutput()[k])
		}
		if err := res[k].Validate(); err != nil {
			return fmt.Errorf("kernel output %d: %w", k, err)
		}
		vals[slot] = res[k]
	}
	return nil
}

// checkInputs validates a request against the model's inputs.
func (m *Model) checkInputs(in map[string]*Tensor) error {
	for _, vi := range m.inputs {
		t, ok := in[vi.Name]
		if !ok || t == nil {
			return fmt.Errorf("interp: missing input %q (model inputs: %s)", vi.Name, m.inputNames())
		}
		if t.DType != vi.DType {
			return fmt.Errorf("interp: input %q: element type %s, model wants %s", vi.Name, t.DType, vi.DType)
		}
		if err := t.Validate(); err != nil {
			return fmt.Errorf("interp: input %q: %w", vi.Name, err)
		}
		if vi.Shape == nil {
			continue
		}
		if len(t.Shape) != len(vi.Shape) {
			return fmt.Errorf("interp: input %q: shape %s, model wants rank %d %s", vi.Name, ShapeString(t.Shape), len(vi.Shape), dimsString(vi.Shape))
		}
		for i, d := range vi.Shape {
			if d >= 0 && t.Shape[i] != d {
				return fmt.Errorf("interp: input %q: shape %s, model wants %s", vi.Name, ShapeString(t.Shape), dimsString(vi.Shape))
			}
		}
	}
	if len(in) != len(m.inputs) {
		for name := range in {
			if !m.hasInput(name) {
				return fmt.Errorf("interp: unknown input %q (model inputs: %s)", name, m.inputNames())
			}
		}
	}
	return nil
}

func (m *Model) hasInput(name string) bool {
	for _, vi := range m.inputs {
		if vi.Name == name {
			return true
		}
	}
	return false
}

func (m *Model) inputNames() string {
	names := make([]string, len(m.inputs))
	for i, vi := range m.inputs {
		names[i] = vi.Name
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// dimsString formats a model shape, writing dynamic dimensions as "?".
func dimsString(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		if d < 0 {
			parts[i] = "?"
		} else {
			parts[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}
