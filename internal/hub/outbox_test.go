package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/store"
)

// tally is a record handler that sums the "n" of each record and counts its
// calls, in memory (a rolled-back batch still counts its calls).
type tally struct {
	mu    sync.Mutex
	calls map[string]int // by cluster
	sum   map[string]int
}

func (ta *tally) handle(ctx context.Context, tx *store.Tx, cluster string, rec v1alpha1.OutboxRecord) error {
	var p struct {
		N    int  `json:"n"`
		Fail bool `json:"fail"`
	}
	if err := json.Unmarshal(rec.Payload, &p); err != nil || p.N < 0 {
		return fmt.Errorf("%w: payload %s: want {\"n\": N >= 0}", ErrRefused, rec.Payload)
	}
	if p.Fail {
		return fmt.Errorf("store busy")
	}
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.calls[cluster]++
	ta.sum[cluster] += p.N
	return nil
}

func (ta *tally) get(cluster string) (calls, sum int) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.calls[cluster], ta.sum[cluster]
}

func newOutboxEnv(t *testing.T) (*agentEnv, *tally, string) {
	t.Helper()
	ta := &tally{calls: map[string]int{}, sum: map[string]int{}}
	e := newAgentEnv(t, func(cfg *Config) {
		cfg.Records = map[string]RecordHandler{"tally": ta.handle}
	})
	cred := e.mustJoin(e.createToken(3600, "").Token, "edge-1", nil)
	return e, ta, cred
}

func batch(records ...v1alpha1.OutboxRecord) v1alpha1.OutboxBatch {
	return v1alpha1.OutboxBatch{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindOutboxBatch, Records: records}
}

func tallyRecord(key, payload string) v1alpha1.OutboxRecord {
	return v1alpha1.OutboxRecord{Key: key, Kind: "tally", Payload: json.RawMessage(payload)}
}

func outcomes(t *testing.T, r response) []string {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("outbox = %d %s", r.code, r.body)
	}
	resp := decodeJSON[v1alpha1.OutboxResponse](t, r.body)
	var out []string
	for _, res := range resp.Results {
		out = append(out, res.Key+":"+res.Outcome)
	}
	return out
}

// Each key takes effect once, however often and in whatever batches it comes.
func TestOutboxExactlyOnce(t *testing.T) {
	e, ta, cred := newOutboxEnv(t)
	got := outcomes(t, e.postJSON("/clusters/edge-1/outbox", cred, batch(tallyRecord("a", `{"n":1}`), tallyRecord("b", `{"n":2}`))))
	if strings.Join(got, " ") != "a:Applied b:Applied" {
		t.Errorf("first batch: %v", got)
	}
	got = outcomes(t, e.postJSON("/clusters/edge-1/outbox", cred, batch(tallyRecord("b", `{"n":2}`), tallyRecord("c", `{"n":4}`), tallyRecord("a", `{"n":1}`))))
	if strings.Join(got, " ") != "b:Duplicate c:Applied a:Duplicate" {
		t.Errorf("second batch: %v", got)
	}
	if calls, sum := ta.get("edge-1"); calls != 3 || sum != 7 {
		t.Errorf("handler ran %d times, sum %d; want 3 and 7", calls, sum)
	}
	err := e.db.View(t.Context(), func(tx *store.Tx) error {
		counts, err := tx.OutboxCounts(t.Context(), "edge-1")
		if err == nil && counts["tally"] != 3 {
			t.Errorf("store counts %v, want tally 3", counts)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A record the hub cannot apply is refused, for good: sent again, it gets
// the same answer, and the rest of its batch is applied.
func TestOutboxRefusals(t *testing.T) {
	e, ta, cred := newOutboxEnv(t)
	r := e.postJSON("/clusters/edge-1/outbox", cred, batch(
		tallyRecord("bad", `{"n":-1}`),
		v1alpha1.OutboxRecord{Key: "odd", Kind: "telemetry.v9", Payload: json.RawMessage(`{}`)},
		tallyRecord("ok", `{"n":5}`),
	))
	resp := decodeJSON[v1alpha1.OutboxResponse](t, r.body)
	if r.code != http.StatusOK || len(resp.Results) != 3 {
		t.Fatalf("outbox = %d %s", r.code, r.body)
	}
	if res := resp.Results[0]; res.Outcome != v1alpha1.OutboxRefused || !strings.Contains(res.Message, "want {\"n\": N >= 0}") {
		t.Errorf("bad payload: %+v", res)
	}
	if res := resp.Results[1]; res.Outcome != v1alpha1.OutboxRefused || !strings.Contains(res.Message, `unknown record kind "telemetry.v9" (this hub applies: drift.window, fl.message, note, pipeline.run, tally)`) {
		t.Errorf("unknown kind: %+v", res)
	}
	if res := resp.Results[2]; res.Outcome != v1alpha1.OutboxApplied {
		t.Errorf("good record: %+v", res)
	}
	got := outcomes(t, e.postJSON("/clusters/edge-1/outbox", cred, batch(tallyRecord("bad", `{"n":-1}`))))
	if strings.Join(got, " ") != "bad:Refused" {
		t.Errorf("a refused record sent again: %v", got)
	}
	if calls, sum := ta.get("edge-1"); calls != 1 || sum != 5 {
		t.Errorf("handler applied %d records, sum %d; want 1 and 5", calls, sum)
	}
}

// A handler error that is not a refusal fails the whole batch: nothing of it
// is recorded, and the agent is told to send it again.
func TestOutboxBatchAtomic(t *testing.T) {
	e, ta, cred := newOutboxEnv(t)
	r := e.postJSON("/clusters/edge-1/outbox", cred, batch(tallyRecord("a", `{"n":1}`), tallyRecord("b", `{"n":2,"fail":true}`)))
	if r.code != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "send it again") {
		t.Fatalf("outbox = %d %s, want 503", r.code, r.body)
	}
	got := outcomes(t, e.postJSON("/clusters/edge-1/outbox", cred, batch(tallyRecord("a", `{"n":1}`))))
	if strings.Join(got, " ") != "a:Applied" {
		t.Errorf("after a failed batch, a = %v: its outcome must not have been kept", got)
	}
	// The failed batch ran the handler for a once before rolling back; the store kept nothing of it.
	if calls, _ := ta.get("edge-1"); calls != 2 {
		t.Errorf("handler calls %d", calls)
	}
}

func TestOutboxCompressedAndBadInput(t *testing.T) {
	e, ta, cred := newOutboxEnv(t)
	b, _ := json.Marshal(batch(tallyRecord("z", `{"n":3}`)))
	enc, _ := zstd.NewWriter(nil)
	r := e.do(http.MethodPost, "/clusters/edge-1/outbox", cred, "application/json", enc.EncodeAll(b, nil), "Content-Encoding", "zstd")
	if got := outcomes(t, r); strings.Join(got, " ") != "z:Applied" {
		t.Errorf("zstd batch: %v", got)
	}
	// A zstd bomb: 65 MiB of zeros compress to a few KB.
	bomb := enc.EncodeAll(make([]byte, MaxOutboxBytes+1<<20), nil)
	bad := []struct {
		name        string
		path, token string
		body        []byte
		header      []string
		code        int
		want        string
	}{
		{"bomb", "/clusters/edge-1/outbox", cred, bomb, []string{"Content-Encoding", "zstd"}, http.StatusRequestEntityTooLarge, "more than"},
		{"not zstd", "/clusters/edge-1/outbox", cred, b, []string{"Content-Encoding", "zstd"}, http.StatusBadRequest, "zstd"},
		{"gzip", "/clusters/edge-1/outbox", cred, b, []string{"Content-Encoding", "gzip"}, http.StatusUnsupportedMediaType, "zstd or none"},
		{"malformed", "/clusters/edge-1/outbox", cred, []byte(`{"records": [`), nil, http.StatusBadRequest, "decoding outbox batch"},
		{"no key", "/clusters/edge-1/outbox", cred, []byte(`{"records":[{"kind":"tally","payload":{}}]}`), nil, http.StatusBadRequest, "records[0].key"},
		{"key twice", "/clusters/edge-1/outbox", cred, mustJSON(t, batch(tallyRecord("d", `{"n":1}`), tallyRecord("d", `{"n":1}`))), nil, http.StatusBadRequest, "twice in one batch"},
		{"other cluster", "/clusters/edge-2/outbox", cred, b, nil, http.StatusForbidden, "may not send outbox records for cluster"},
		{"no token", "/clusters/edge-1/outbox", "", b, nil, http.StatusUnauthorized, ""},
		{"unknown cluster", "/clusters/ghost/outbox", e.admin, b, nil, http.StatusNotFound, `ghost\" not found`},
	}
	for _, tt := range bad {
		r := e.do(http.MethodPost, tt.path, tt.token, "application/json", tt.body, tt.header...)
		if r.code != tt.code || !strings.Contains(string(r.body), tt.want) {
			t.Errorf("%s: %d %s, want %d and %q", tt.name, r.code, r.body, tt.code, tt.want)
		}
	}
	if calls, _ := ta.get("edge-1"); calls != 1 {
		t.Errorf("bad input applied records: %d calls", calls)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func noteRecord(key, text string) v1alpha1.OutboxRecord {
	b, _ := json.Marshal(v1alpha1.NotePayload{Text: text})
	return v1alpha1.OutboxRecord{Key: key, Kind: v1alpha1.RecordKindNote, Payload: b}
}

// Notes are a built-in kind: stored once per key, listed by the admin
// only, kept after their cluster is deleted.
func TestOutboxNotes(t *testing.T) {
	e, _, cred := newOutboxEnv(t)
	got := outcomes(t, e.postJSON("/clusters/edge-1/outbox", cred, batch(noteRecord("n1", "fan replaced"), noteRecord("n2", "door open"))))
	if strings.Join(got, " ") != "n1:Applied n2:Applied" {
		t.Fatalf("notes: %v", got)
	}
	got = outcomes(t, e.postJSON("/clusters/edge-1/outbox", cred, batch(noteRecord("n2", "door open"),
		v1alpha1.OutboxRecord{Key: "n3", Kind: v1alpha1.RecordKindNote, Payload: json.RawMessage(`{"text": " "}`)},
		v1alpha1.OutboxRecord{Key: "n4", Kind: v1alpha1.RecordKindNote, Payload: json.RawMessage(`[1]`)})))
	if strings.Join(got, " ") != "n2:Duplicate n3:Refused n4:Refused" {
		t.Fatalf("again: %v", got)
	}
	list := func() []string {
		r := e.do(http.MethodGet, "/clusters/edge-1/notes", e.admin, "", nil)
		if r.code != http.StatusOK {
			t.Fatalf("notes = %d %s", r.code, r.body)
		}
		l := decodeJSON[v1alpha1.NoteList](t, r.body)
		if l.Kind != v1alpha1.KindNoteList {
			t.Errorf("kind %q", l.Kind)
		}
		var out []string
		for _, n := range l.Items {
			if n.Cluster != "edge-1" || n.Received.IsZero() {
				t.Errorf("note %+v", n)
			}
			out = append(out, n.Key+"="+n.Text)
		}
		return out
	}
	if got := strings.Join(list(), ","); got != "n1=fan replaced,n2=door open" {
		t.Errorf("notes %s", got)
	}
	if r := e.do(http.MethodGet, "/clusters/edge-1/notes", cred, "", nil); r.code != http.StatusForbidden {
		t.Errorf("a cluster read its notes: %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodDelete, "/clusters/edge-1", e.admin, "", nil); r.code != http.StatusOK {
		t.Fatalf("delete cluster = %d %s", r.code, r.body)
	}
	if got := strings.Join(list(), ","); got != "n1=fan replaced,n2=door open" {
		t.Errorf("notes after the cluster was deleted: %s", got)
	}
}
