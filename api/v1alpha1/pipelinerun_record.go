package v1alpha1

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// RecordKindPipelineRun is the kind of outbox record that carries an update of a pipeline
// run from the edge. Its payload is the PipelineRun as JSON (metadata.name, spec and status);
// status.sequence numbers the updates of one run, so that the hub keeps the newest whatever
// order they arrive in. The agent puts one record per update; the hub creates the run if it
// did not request it (a scheduled, triggered or local run) and updates the pipeline's row of
// the cluster.
const RecordKindPipelineRun = "pipeline.run"

// MaxPipelineRunRecordBytes bounds the payload of a pipeline.run record: a run of the most
// steps a pipeline may have, each with its log tail and outputs, is well below it.
const MaxPipelineRunRecordBytes = 1 << 20

// ParsePipelineRunRecord decodes and checks the payload of a pipeline.run record. Fields it
// does not know are ignored (a newer agent's), and log tails and messages longer than their
// bounds are cut to them (Bound), so that a chatty step costs the hub its words, not the
// update. It returns a run with only its name, spec and status set, or an error saying what
// is wrong.
func ParsePipelineRunRecord(b []byte) (*PipelineRun, error) {
	if len(b) > MaxPipelineRunRecordBytes {
		return nil, fmt.Errorf("pipeline run record of %d bytes, at most %d", len(b), MaxPipelineRunRecordBytes)
	}
	var in PipelineRun
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("pipeline run record: %w", err)
	}
	if in.Kind != "" && in.Kind != KindPipelineRun {
		return nil, fmt.Errorf("pipeline run record holds a %s, want a %s", in.Kind, KindPipelineRun)
	}
	if in.APIVersion != "" && in.APIVersion != APIVersion {
		return nil, fmt.Errorf("pipeline run record: apiVersion %q, want %s", in.APIVersion, APIVersion)
	}
	if in.Name == "" {
		return nil, errors.New("pipeline run record: metadata.name is required")
	}
	run := &PipelineRun{Spec: in.Spec, Status: in.Status}
	run.Name = in.Name
	SetTypeMeta(run)
	run.Status.Bound()
	if err := run.Validate(); err != nil {
		return nil, err
	}
	return run, nil
}

// PipelineRunRecord encodes run as the payload of a pipeline.run record: its name, spec and
// status, with messages and log tails cut to their bounds.
func PipelineRunRecord(run *PipelineRun) ([]byte, error) {
	out := &PipelineRun{Spec: run.Spec, Status: *run.Status.DeepCopy()}
	out.Name = run.Name
	SetTypeMeta(out)
	out.Status.Bound()
	return json.Marshal(out)
}

// Bound cuts the run's messages to MaxRunMessageBytes, keeping their start, and the steps'
// log tails to MaxStepLogTailBytes, keeping their end, each at a UTF-8 boundary.
func (s *PipelineRunStatus) Bound() {
	s.Message = Head(s.Message, MaxRunMessageBytes)
	for i := range s.Steps {
		s.Steps[i].Message = Head(s.Steps[i].Message, MaxRunMessageBytes)
		s.Steps[i].LogTail = Tail(s.Steps[i].LogTail, MaxStepLogTailBytes)
	}
}

// Head returns the longest start of s of at most n bytes that does not split a UTF-8
// sequence.
func Head(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// Tail returns the longest end of s of at most n bytes that does not split a UTF-8
// sequence.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}
