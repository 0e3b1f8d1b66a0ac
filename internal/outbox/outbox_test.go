package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"outpost.dev/outpost/internal/clock"
)

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newOutbox(t *testing.T, opts Options) (*Outbox, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.db")
	if opts.Clock == nil {
		opts.Clock = clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	}
	o, err := Open(t.Context(), openDB(t, path), opts)
	if err != nil {
		t.Fatal(err)
	}
	return o, path
}

func rec(key, kind string, p Priority, payload string) Record {
	return Record{Key: key, Kind: kind, Priority: p, Payload: []byte(payload)}
}

func keys(rs []Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Key
	}
	return out
}

func mustPut(t *testing.T, o *Outbox, r Record) bool {
	t.Helper()
	added, err := o.Put(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	return added
}

func TestOrderAndAck(t *testing.T) {
	o, _ := newOutbox(t, Options{})
	for _, r := range []Record{
		rec("m1", "drift.window", PriorityMetrics, `{"n":1}`),
		rec("l1", "log", PriorityLogs, `"x"`),
		rec("c1", "control", PriorityControl, `{}`),
		rec("m2", "drift.window", PriorityMetrics, `{"n":2}`),
	} {
		if !mustPut(t, o, r) {
			t.Fatalf("%s not added", r.Key)
		}
	}
	if mustPut(t, o, rec("m1", "drift.window", PriorityMetrics, `{"n":99}`)) {
		t.Error("a second record with key m1 was added")
	}
	got, err := o.Next(t.Context(), 0, 100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"c1", "m1", "m2", "l1"}; !reflect.DeepEqual(keys(got), want) {
		t.Fatalf("Next = %v, want %v (priority, then age)", keys(got), want)
	}
	if string(got[1].Payload) != `{"n":1}` {
		t.Errorf("m1 payload %s: the first record with a key must stay", got[1].Payload)
	}
	if got, _ := o.Next(t.Context(), PriorityMetrics, 100, 1<<20); !reflect.DeepEqual(keys(got), []string{"c1", "m1", "m2"}) {
		t.Errorf("Next(min metrics) = %v", keys(got))
	}
	if got, _ := o.Next(t.Context(), 0, 2, 1<<20); !reflect.DeepEqual(keys(got), []string{"c1", "m1"}) {
		t.Errorf("Next(max 2) = %v", keys(got))
	}
	if got, _ := o.Next(t.Context(), 0, 100, 3); !reflect.DeepEqual(keys(got), []string{"c1"}) {
		t.Errorf("Next(max 3 bytes) = %v: at least one record, then within the bytes", keys(got))
	}
	err = o.Ack(t.Context(), []Outcome{
		{Key: "c1", Done: true},
		{Key: "m1", Refused: true, Kind: "drift.window", Message: "bad"},
		{Key: "m2"}, // neither: stays
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = o.Next(t.Context(), 0, 100, 1<<20)
	if !reflect.DeepEqual(keys(got), []string{"m2", "l1"}) {
		t.Errorf("after Ack: %v", keys(got))
	}
	st, err := o.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 2 || st.Bytes != int64(len(`{"n":2}`)+len(`"x"`)) || st.Refused["drift.window"] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// mergeCounts adds the counts of two {"n": N} payloads.
func mergeCounts(older, newer []byte) ([]byte, error) {
	var a, b struct{ N int }
	if err := json.Unmarshal(older, &a); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(newer, &b); err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{"N":%d}`, a.N+b.N), nil
}

// payload is a {"N": n} record padded to about size bytes.
func payload(n, size int) string {
	s := fmt.Sprintf(`{"N":%d,"pad":"`, n)
	return s + strings.Repeat("x", max(0, size-len(s)-2)) + `"}`
}

func TestBudgetMergesThenDrops(t *testing.T) {
	o, _ := newOutbox(t, Options{Budget: 1000, Merge: map[string]MergeFunc{"w": mergeCounts}})
	// Ten windows of 200 bytes in one group: each new one past the budget
	// merges the two oldest (their padding goes).
	for i := range 10 {
		r := rec(fmt.Sprintf("w%02d", i), "w", PriorityMetrics, payload(1, 200))
		r.Group = "fashion"
		if !mustPut(t, o, r) {
			t.Fatalf("w%02d not added", i)
		}
	}
	st, _ := o.Stats(t.Context())
	if st.Bytes > 1000 || st.Merged["w"] == 0 || st.Dropped["w"] != 0 {
		t.Fatalf("after 10 windows: %+v, want within 1000 bytes by merging, nothing dropped", st)
	}
	all, _ := o.Next(t.Context(), 0, 100, 1<<20)
	total := 0
	for _, r := range all {
		var p struct{ N int }
		if err := json.Unmarshal(r.Payload, &p); err != nil {
			t.Fatal(err)
		}
		total += p.N
	}
	if total != 10 {
		t.Errorf("the windows left count %d samples, want 10: a merge lost or doubled some", total)
	}
	// All are offered now: none may merge any more, so room is made by dropping.
	if !mustPut(t, o, rec("big", "w", PriorityMetrics, payload(1, 900))) {
		t.Fatal("a record within the budget was not added")
	}
	st, _ = o.Stats(t.Context())
	if st.Dropped["w"] == 0 || st.Bytes > 1000 {
		t.Errorf("stats %+v: offered records must be dropped, not merged", st)
	}
}

func TestBudgetSparesHigherPriority(t *testing.T) {
	o, _ := newOutbox(t, Options{Budget: 500})
	mustPut(t, o, rec("ctl", "control", PriorityControl, payload(0, 300)))
	mustPut(t, o, rec("log1", "log", PriorityLogs, payload(0, 150)))
	// A metrics record needing room may drop the log, not the control record.
	if !mustPut(t, o, rec("m", "metric", PriorityMetrics, payload(0, 150))) {
		t.Fatal("metric not added")
	}
	// A log needing room finds nothing at or below its priority to drop: it is dropped itself.
	if mustPut(t, o, rec("log2", "log", PriorityLogs, payload(0, 100))) {
		t.Error("log2 added over the budget")
	}
	all, _ := o.Next(t.Context(), 0, 100, 1<<20)
	if !reflect.DeepEqual(keys(all), []string{"ctl", "m"}) {
		t.Errorf("left %v, want [ctl m]", keys(all))
	}
	st, _ := o.Stats(t.Context())
	if st.Dropped["log"] != 2 {
		t.Errorf("dropped %v, want 2 logs", st.Dropped)
	}
}

func TestBadRecords(t *testing.T) {
	o, _ := newOutbox(t, Options{Budget: 100})
	for _, tt := range []struct {
		r    Record
		want string
	}{
		{rec("", "k", 0, `{}`), "key"},
		{rec("a\nb", "k", 0, `{}`), "key"},
		{rec(strings.Repeat("k", 513), "k", 0, `{}`), "key"},
		{rec("a", "", 0, `{}`), "kind"},
		{rec("a", "k", 0, `{not json`), "not JSON"},
		{rec("a", "k", 0, payload(0, 200)), "too large"},
	} {
		_, err := o.Put(t.Context(), tt.r)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Put(%q, %q): %v, want an error about %s", tt.r.Key, tt.r.Kind, err, tt.want)
		}
	}
	if st, _ := o.Stats(t.Context()); st.Records != 0 {
		t.Errorf("bad records changed the outbox: %+v", st)
	}
}

// Records survive closing the database, as after kill -9 (each Put is one
// committed transaction), and so does their offered mark.
func TestDurable(t *testing.T) {
	o, path := newOutbox(t, Options{})
	mustPut(t, o, rec("a", "k", PriorityMetrics, `{"x":1}`))
	mustPut(t, o, rec("b", "k", PriorityMetrics, `{"x":2}`))
	if _, err := o.Next(t.Context(), 0, 1, 1<<20); err != nil {
		t.Fatal(err)
	}
	o.db.Close()
	db := openDB(t, path)
	o2, err := Open(t.Context(), db, Options{Merge: map[string]MergeFunc{"k": func(a, b []byte) ([]byte, error) { return nil, errors.New("must not merge") }}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := o2.Next(t.Context(), 0, 100, 1<<20)
	if err != nil || !reflect.DeepEqual(keys(got), []string{"a", "b"}) {
		t.Fatalf("after reopening: %v %v", keys(got), err)
	}
	var offered int
	if err := db.QueryRowContext(context.Background(), `SELECT offered FROM outbox_records WHERE key = 'a'`).Scan(&offered); err != nil || offered != 2 {
		t.Errorf("a offered %d times (%v), want 2", offered, err)
	}
}

func TestReadySignalled(t *testing.T) {
	o, _ := newOutbox(t, Options{})
	select {
	case <-o.Ready():
		t.Fatal("ready before any Put")
	default:
	}
	mustPut(t, o, rec("a", "k", 0, `1`))
	mustPut(t, o, rec("b", "k", 0, `2`))
	select {
	case <-o.Ready():
	default:
		t.Fatal("not ready after Put")
	}
	mustPut(t, o, rec("a", "k", 0, `1`)) // a duplicate signals nothing
	select {
	case <-o.Ready():
		t.Error("ready after a duplicate Put")
	default:
	}
}
