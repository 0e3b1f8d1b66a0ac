package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/feedback"
	"outpost.dev/outpost/internal/testenv"
)

// fakePredictions are the classes the fake model (scale 1) gives rows: its
// outputs are (sum of the row, 1), so class 0 when the sum is above 1.
func fakePredictions(rows [][]float32) []int {
	out := make([]int, len(rows))
	for i, r := range rows {
		var sum float32
		for _, v := range r {
			sum += v
		}
		if sum <= 1 {
			out[i] = 1
		}
	}
	return out
}

func feedbackHarness(t testing.TB, keep int32) (*harness, *feedback.Store) {
	t.Helper()
	store, err := feedback.Open(context.Background(), filepath.Join(t.TempDir(), "feedback.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := newHarness(t, false, 0, func(c *Config) { c.Feedback = store })
	ref := writeFakeReference(t, h.dir, 500, drift.FeaturizerConfig{})
	h.srv.Sync(context.Background(), []Model{h.monitored("1.0.0", "1", &v1alpha1.Monitoring{WindowSamples: 1000, FeedbackSamples: keep}, ref)})
	if st := h.waitVersion("fashion", "1.0.0"); st.Drift == nil {
		t.Fatalf("status %+v, want drift monitoring", st)
	}
	return h, store
}

// postWithID sends rows with a request id and fails unless answered 200.
func (h *harness) postWithID(id string, rows [][]float32) {
	h.t.Helper()
	b, _ := json.Marshal(map[string]any{"id": id, "inputs": []any{map[string]any{"name": "x", "shape": []int{len(rows), 4}, "datatype": "FP32", "data": rows}}})
	if code, _, body := h.do("POST", "/v2/models/fashion/infer", b, nil); code != http.StatusOK {
		h.t.Fatalf("infer: %d %s", code, body)
	}
}

// TestFeedback checks the way of a true label: a request with an id is
// kept, its labels posted right after the answer are taken (the monitor's
// queue is flushed first), and the version's accuracy shows in status and
// /metrics; the samples kept are the request's own.
func TestFeedback(t *testing.T) {
	h, store := feedbackHarness(t, 100)
	r := rand.New(rand.NewPCG(5, 6))
	rows := fakeRows(r, 4, 0)
	pred := fakePredictions(rows)
	h.postWithID("cam-1", rows)
	h.post(fakeRows(r, 2, 0)) // no id: not kept

	labels := append([]int(nil), pred...)
	labels[2] = 1 - labels[2] // one wrong prediction
	body, _ := json.Marshal(FeedbackRequest{ID: "cam-1", Labels: labels})
	code, _, b := h.do("POST", "/v2/models/fashion/feedback", body, nil)
	if code != http.StatusOK {
		t.Fatalf("feedback: %d %s", code, b)
	}
	var res FeedbackResponse
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if want := (FeedbackResponse{ModelName: "fashion", ModelVersion: "1.0.0", ID: "cam-1", Labelled: 4, Correct: 3}); res != want {
		t.Fatalf("feedback response %+v, want %+v", res, want)
	}
	set, err := store.Labelled(context.Background(), "fashion", 0)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 4 || len(set.X) != 16 || set.X[5] != rows[1][1] || int(set.Labels[2]) != labels[2] {
		t.Fatalf("kept set %+v, want the request's rows and labels", set)
	}
	st := h.waitStatus("fashion", func(st ModelStatus) bool { return st.Drift != nil })
	if fb := st.Drift.Feedback; fb == nil || *fb != (FeedbackStatus{Labelled: 4, Correct: 3}) {
		t.Fatalf("drift status feedback %+v, want 3 of 4", st.Drift.Feedback)
	}
	_, _, metrics := h.do("GET", "/metrics", nil, nil)
	for _, line := range []string{
		`outpost_feedback_labelled_samples{deployment="fashion",version="1.0.0"} 4`,
		`outpost_feedback_correct_samples{deployment="fashion",version="1.0.0"} 3`,
	} {
		if !bytes.Contains(metrics, []byte(line)) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
}

// TestFeedbackRefused checks each refusal: a clear status and message, and
// nothing labelled.
func TestFeedbackRefused(t *testing.T) {
	h, store := feedbackHarness(t, 100)
	h.postWithID("cam-1", fakeRows(rand.New(rand.NewPCG(7, 8)), 2, 0))
	for _, tt := range []struct {
		name, path, body string
		code             int
		msg              string
	}{
		{"unknown id", "fashion", `{"id":"cam-9","labels":[1,0]}`, http.StatusNotFound, "keeps no request"},
		{"too few labels", "fashion", `{"id":"cam-1","labels":[1]}`, http.StatusBadRequest, "number of labels"},
		{"too many labels", "fashion", `{"id":"cam-1","labels":[1,0,1]}`, http.StatusBadRequest, "number of labels"},
		{"label out of range", "fashion", `{"id":"cam-1","labels":[1,256]}`, http.StatusBadRequest, "not a class"},
		{"negative label", "fashion", `{"id":"cam-1","labels":[-1,0]}`, http.StatusBadRequest, "not a class"},
		{"no id", "fashion", `{"labels":[1,0]}`, http.StatusBadRequest, "needs the id"},
		{"no labels", "fashion", `{"id":"cam-1"}`, http.StatusBadRequest, "needs labels"},
		{"not JSON", "fashion", `id=cam-1`, http.StatusBadRequest, "feedback body"},
		{"unknown field", "fashion", `{"id":"cam-1","labels":[1,0],"label":1}`, http.StatusBadRequest, "unknown field"},
		{"trailing data", "fashion", `{"id":"cam-1","labels":[1,0]} {}`, http.StatusBadRequest, "after the JSON"},
		{"label not a number", "fashion", `{"id":"cam-1","labels":["shirt",0]}`, http.StatusBadRequest, "feedback body"},
		{"too large", "fashion", `{"id":"cam-1","labels":[` + strings.Repeat("1,", MaxFeedbackBytes/2) + `1]}`, http.StatusRequestEntityTooLarge, "exceeds"},
		{"unknown deployment", "shoes", `{"id":"cam-1","labels":[1,0]}`, http.StatusNotFound, "shoes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, b := h.do("POST", "/v2/models/"+tt.path+"/feedback", []byte(tt.body), nil)
			if code != tt.code || !strings.Contains(string(b), tt.msg) {
				t.Fatalf("%d %s, want %d and %q", code, b, tt.code, tt.msg)
			}
		})
	}
	if a, err := store.Accuracy(context.Background(), "fashion", "1.0.0"); err != nil || a.Labelled != 0 {
		t.Fatalf("refused feedback labelled samples: %+v, %v", a, err)
	}
}

// TestFeedbackOff checks that a deployment that keeps no feedback samples
// keeps no request and refuses labels, saying how to turn it on.
func TestFeedbackOff(t *testing.T) {
	h, store := feedbackHarness(t, 0)
	h.postWithID("cam-1", fakeRows(rand.New(rand.NewPCG(9, 10)), 2, 0))
	code, _, b := h.do("POST", "/v2/models/fashion/feedback", []byte(`{"id":"cam-1","labels":[1,0]}`), nil)
	if code != http.StatusConflict || !strings.Contains(string(b), "feedbackSamples") {
		t.Fatalf("%d %s, want 409 naming spec.monitoring.feedbackSamples", code, b)
	}
	testenv.WaitFor(t, 10*time.Second, "the request monitored", func() bool {
		st := h.srv.Status()
		return len(st) == 1 && st[0].Drift != nil && st[0].Drift.Samples == 2
	})
	if _, err := store.Label(context.Background(), "fashion", "cam-1", []int{1, 0}); err == nil {
		t.Fatal("a request was kept although the deployment keeps none")
	}
	if st := h.srv.Status(); st[0].Drift.Feedback != nil {
		t.Fatalf("feedback status %+v of a deployment that keeps none", st[0].Drift.Feedback)
	}
}

// FuzzFeedbackBody checks that no feedback body makes the server fail: it
// is answered 200 or a 4xx with a message.
func FuzzFeedbackBody(f *testing.F) {
	for _, s := range []string{`{"id":"cam-1","labels":[1,0]}`, `{"id":"cam-1","labels":[1]}`, `{}`, `[]`, `{"id":1}`, `{"id":"cam-1","labels":[1e99,0]}`} {
		f.Add([]byte(s))
	}
	h, _ := feedbackHarness(f, 100)
	h.postWithID("cam-1", fakeRows(rand.New(rand.NewPCG(1, 1)), 2, 0))
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := http.Post(h.http.URL+"/v2/models/fashion/feedback", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		code := resp.StatusCode
		var e ErrorResponse
		switch {
		case code == http.StatusOK:
		case code >= 400 && code < 500 && json.Unmarshal(b, &e) == nil && e.Error != "":
		default:
			t.Fatalf("body %q: %d %s", body, code, b)
		}
	})
}
