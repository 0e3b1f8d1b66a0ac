package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestFLSnapshot(t *testing.T) {
	db, path := open(t)
	ctx := t.Context()
	put := func(s FLSnapshot) error {
		return db.Update(ctx, func(tx *Tx) error { return tx.PutFLSnapshot(ctx, s) })
	}
	get := func(job string) (FLSnapshot, error) {
		var s FLSnapshot
		err := db.View(ctx, func(tx *Tx) error {
			var err error
			s, err = tx.FLSnapshot(ctx, job)
			return err
		})
		return s, err
	}
	if _, err := get("fl"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("snapshot of a new job: %v, want ErrNotFound", err)
	}
	for _, tc := range []struct {
		name string
		s    FLSnapshot
		want error
	}{
		{"first", FLSnapshot{Job: "fl", UID: "u1", Seq: 1, State: []byte("one")}, nil},
		{"next", FLSnapshot{Job: "fl", UID: "u1", Seq: 2, State: []byte("two")}, nil},
		{"replayed", FLSnapshot{Job: "fl", UID: "u1", Seq: 2, State: []byte("old")}, ErrFLSeq},
		{"skipped", FLSnapshot{Job: "fl", UID: "u1", Seq: 4, State: []byte("gap")}, ErrFLSeq},
		{"other job's second", FLSnapshot{Job: "other", UID: "u2", Seq: 2, State: []byte("x")}, ErrFLSeq},
	} {
		if err := put(tc.s); !errors.Is(err, tc.want) {
			t.Errorf("%s: PutFLSnapshot = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A failed write inside a transaction takes the transaction's other writes with it.
	boom := errors.New("boom")
	err := db.Update(ctx, func(tx *Tx) error {
		if err := tx.PutFLSnapshot(ctx, FLSnapshot{Job: "fl", UID: "u1", Seq: 3, State: []byte("three")}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	s, err := get("fl")
	if err != nil || s.Seq != 2 || !bytes.Equal(s.State, []byte("two")) || s.UID != "u1" || s.Updated.IsZero() {
		t.Fatalf("after a rolled back write: %+v, %v; want seq 2 %q", s, err, "two")
	}
	// A job created again under the same name starts at 1.
	if err := put(FLSnapshot{Job: "fl", UID: "u3", Seq: 1, State: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	// The snapshot survives reopening.
	db.Close()
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	var jobs []string
	err = db2.Update(ctx, func(tx *Tx) error {
		if s, err = tx.FLSnapshot(ctx, "fl"); err != nil {
			return err
		}
		if jobs, err = tx.FLSnapshotJobs(ctx); err != nil {
			return err
		}
		return tx.DeleteFLSnapshot(ctx, "fl")
	})
	if err != nil || s.UID != "u3" || s.Seq != 1 || string(s.State) != "new" || len(jobs) != 1 || jobs[0] != "fl" {
		t.Fatalf("after reopening: %+v %v, %v", s, jobs, err)
	}
	db = db2
	if _, err := get("fl"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestFLMessages(t *testing.T) {
	db, _ := open(t)
	ctx := t.Context()
	set := func(job string, m map[string][]byte) []string {
		t.Helper()
		var changed []string
		if err := db.Update(ctx, func(tx *Tx) error {
			var err error
			changed, err = tx.SetFLMessages(ctx, job, m)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return changed
	}
	for _, tc := range []struct {
		name        string
		job         string
		msgs        map[string][]byte
		wantChanged string
	}{
		{"first", "a", map[string][]byte{"c1": []byte(`1`), "c2": []byte(`2`)}, "c1,c2"},
		{"same", "a", map[string][]byte{"c1": []byte(`1`), "c2": []byte(`2`)}, ""},
		{"one changes, one goes, one comes", "a", map[string][]byte{"c1": []byte(`3`), "c3": []byte(`4`)}, "c1,c2,c3"},
		{"another job", "b", map[string][]byte{"c1": []byte(`5`)}, "c1"},
	} {
		if got := strings.Join(set(tc.job, tc.msgs), ","); got != tc.wantChanged {
			t.Errorf("%s: changed %q, want %q", tc.name, got, tc.wantChanged)
		}
	}
	var got map[string][]byte
	if err := db.View(ctx, func(tx *Tx) error {
		var err error
		got, err = tx.FLMessagesFor(ctx, "c1")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got["a"]) != "3" || string(got["b"]) != "5" {
		t.Fatalf("messages to c1: %q", got)
	}
}
