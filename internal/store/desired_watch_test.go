package store

import (
	"context"
	"path/filepath"
	"testing"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestDesiredChangedWakesOnlyItsCluster: a desired-state change wakes the
// waiters of that cluster and nobody else; unchanged documents, other
// writes and rolled-back transactions wake no one.
func TestDesiredChangedWakesOnlyItsCluster(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	set := func(cluster, doc string) {
		t.Helper()
		if err := db.Update(ctx, func(tx *Tx) error {
			_, _, err := tx.SetDesiredState(ctx, cluster, []byte(doc))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	set("a", `{"v":1}`)
	chA, revA, known := db.DesiredChanged("a")
	if !known || revA == 0 {
		t.Fatalf("revision of a not known after a commit: %d %v", revA, known)
	}
	chB, _, knownB := db.DesiredChanged("b")
	if knownB {
		t.Fatal("b has no desired state yet")
	}

	set("b", `{"v":1}`)
	if closed(chA) || !closed(chB) {
		t.Fatalf("after a change to b: a woken %v, b woken %v; want false, true", closed(chA), closed(chB))
	}
	set("a", `{"v":1}`) // same document: no change
	if closed(chA) {
		t.Fatal("an unchanged document woke a")
	}
	db.Update(ctx, func(tx *Tx) error {
		tx.SetDesiredState(ctx, "a", []byte(`{"v":2}`))
		return context.Canceled // rolled back
	})
	if closed(chA) {
		t.Fatal("a rolled-back change woke a")
	}
	set("a", `{"v":2}`)
	if !closed(chA) {
		t.Fatal("a change to a did not wake a")
	}
	if _, rev, _ := db.DesiredChanged("a"); rev <= revA {
		t.Fatalf("revision of a did not advance: %d after %d", rev, revA)
	}
	chA, _, _ = db.DesiredChanged("a")
	if err := db.Update(ctx, func(tx *Tx) error { return tx.DeleteDesiredState(ctx, "a") }); err != nil {
		t.Fatal(err)
	}
	if _, _, known := db.DesiredChanged("a"); !closed(chA) || known {
		t.Fatal("deleting a's desired state did not wake a or left its revision known")
	}
}
