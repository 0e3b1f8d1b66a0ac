package v1alpha1

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParsePipelineRunRecord(t *testing.T) {
	long := strings.Repeat("é", MaxStepLogTailBytes) // two bytes each: twice the bound
	tests := []struct {
		name, payload, wantErr string
		check                  func(t *testing.T, r *PipelineRun)
	}{
		{name: "a run", payload: `{"apiVersion":"ml.outpost.dev/v1alpha1","kind":"PipelineRun","metadata":{"name":"r1","uid":"x","labels":{"a":"b"}},
			"spec":{"pipeline":"p","cluster":"c","trigger":"Schedule"},"status":{"phase":"Running","sequence":3,"steps":[{"name":"s","phase":"Running"}]},"extra":1}`,
			check: func(t *testing.T, r *PipelineRun) {
				if r.Name != "r1" || r.UID != "" || r.Labels != nil || r.Spec.Trigger != TriggeredSchedule || r.Status.Sequence != 3 ||
					r.Status.Phase != RunRunning || r.Kind != KindPipelineRun {
					t.Errorf("parsed %+v", r)
				}
			}},
		{name: "no kind is a run", payload: `{"metadata":{"name":"r1"},"spec":{"pipeline":"p","cluster":"c"}}`},
		{name: "long log tails and messages are cut", payload: string(mustMarshal(t, map[string]any{
			"metadata": map[string]any{"name": "r"}, "spec": map[string]any{"pipeline": "p", "cluster": "c"},
			"status": map[string]any{"message": long + "!", "steps": []any{map[string]any{"name": "s", "phase": "Failed", "logTail": "start" + long + "end", "message": long}}},
		})), check: func(t *testing.T, r *PipelineRun) {
			st := r.Status.Steps[0]
			if len(st.LogTail) > MaxStepLogTailBytes || !strings.HasSuffix(st.LogTail, "end") || !utf8.ValidString(st.LogTail) {
				t.Errorf("log tail of %d bytes, ends %q", len(st.LogTail), st.LogTail[len(st.LogTail)-5:])
			}
			if len(st.Message) > MaxRunMessageBytes || !utf8.ValidString(st.Message) || len(r.Status.Message) > MaxRunMessageBytes {
				t.Errorf("messages of %d and %d bytes", len(st.Message), len(r.Status.Message))
			}
		}},
		{name: "not JSON", payload: `{`, wantErr: "pipeline run record"},
		{name: "another kind", payload: `{"kind":"Pipeline","metadata":{"name":"r"}}`, wantErr: "holds a Pipeline"},
		{name: "another version", payload: `{"apiVersion":"v9","metadata":{"name":"r"}}`, wantErr: "apiVersion"},
		{name: "no name", payload: `{"spec":{"pipeline":"p","cluster":"c"}}`, wantErr: "metadata.name"},
		{name: "no cluster", payload: `{"metadata":{"name":"r"},"spec":{"pipeline":"p"}}`, wantErr: "spec.cluster"},
		{name: "bad phase", payload: `{"metadata":{"name":"r"},"spec":{"pipeline":"p","cluster":"c"},"status":{"phase":"Sleeping"}}`, wantErr: "status.phase"},
		{name: "negative sequence", payload: `{"metadata":{"name":"r"},"spec":{"pipeline":"p","cluster":"c"},"status":{"sequence":-1}}`, wantErr: "status.sequence"},
		{name: "too large", payload: `{"metadata":{"name":"r"},"x":"` + strings.Repeat("a", MaxPipelineRunRecordBytes) + `"}`, wantErr: "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParsePipelineRunRecord([]byte(tt.payload))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A record PipelineRunRecord writes is one ParsePipelineRunRecord reads back.
func TestPipelineRunRecordRoundTrip(t *testing.T) {
	run := &PipelineRun{Spec: PipelineRunSpec{Pipeline: "p", Cluster: "c", Trigger: TriggeredLocal},
		Status: PipelineRunStatus{Phase: RunFailed, Sequence: 9, Steps: []StepStatus{{Name: "s", Phase: RunFailed, LogTail: strings.Repeat("x", 5000)}}}}
	run.Name, run.UID = "r", "uid"
	b, err := PipelineRunRecord(run)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePipelineRunRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "r" || got.Status.Sequence != 9 || len(got.Status.Steps[0].LogTail) != MaxStepLogTailBytes || len(run.Status.Steps[0].LogTail) != 5000 {
		t.Errorf("round trip: %+v (the original's tail %d bytes)", got, len(run.Status.Steps[0].LogTail))
	}
}

func TestHeadTail(t *testing.T) {
	for _, tt := range []struct {
		s          string
		n          int
		head, tail string
	}{
		{"abc", 5, "abc", "abc"},
		{"abcdef", 3, "abc", "def"},
		{"aéb", 2, "a", "b"},
		{"éé", 3, "é", "é"},
		{"abc", 0, "", ""},
	} {
		if h, tl := Head(tt.s, tt.n), Tail(tt.s, tt.n); h != tt.head || tl != tt.tail {
			t.Errorf("Head/Tail(%q, %d) = %q, %q, want %q, %q", tt.s, tt.n, h, tl, tt.head, tt.tail)
		}
	}
}

func FuzzParsePipelineRunRecord(f *testing.F) {
	f.Add([]byte(`{"metadata":{"name":"r"},"spec":{"pipeline":"p","cluster":"c"},"status":{"phase":"Running","sequence":1}}`))
	f.Add([]byte(`{"metadata":{"name":"r"},"status":{"steps":[{"name":"s","logTail":"ééé"}]}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParsePipelineRunRecord(b)
		if err != nil {
			return
		}
		if r.Validate() != nil {
			t.Fatalf("accepted an invalid run: %s", b)
		}
		again, err := PipelineRunRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParsePipelineRunRecord(again); err != nil {
			t.Fatalf("cannot read back what it wrote: %v", err)
		}
	})
}
