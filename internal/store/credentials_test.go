package store

import (
	"crypto/sha256"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"outpost.dev/outpost/internal/store/storetest"
)

func TestJoinTokens(t *testing.T) {
	db, path := open(t)
	ctx := t.Context()
	now := time.Date(2031, 1, 2, 3, 4, 5, 600, time.UTC)
	toks := []JoinToken{
		{ID: "t1", Hash: sha256.Sum256([]byte("one")), Description: "first", Created: now, Expires: now.Add(time.Hour)},
		{ID: "t2", Hash: sha256.Sum256([]byte("two")), Created: now, Expires: now.Add(-30 * 24 * time.Hour)},
		{ID: "t3", Hash: sha256.Sum256([]byte("three")), Created: now.Add(time.Second), Expires: now.Add(time.Minute)},
	}
	err := db.Update(ctx, func(tx *Tx) error {
		for _, jt := range toks {
			if err := tx.AddJoinToken(ctx, jt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx *Tx) error { return tx.AddJoinToken(ctx, toks[0]) }); err == nil {
		t.Error("a second token with the same ID was stored")
	}
	rev, err := db.Revision(ctx)
	if err != nil || rev != 0 {
		t.Errorf("join tokens moved the resource revision to %d (%v)", rev, err)
	}

	// Reopening keeps them (and does not re-run migrations).
	db.Close()
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	got, err := db.JoinTokens(ctx)
	if err != nil || len(got) != 3 || got[0] != toks[0] || got[1] != toks[1] || got[2] != toks[2] {
		t.Fatalf("JoinTokens = %+v, %v", got, err)
	}
	err = db.View(ctx, func(tx *Tx) error {
		jt, err := tx.JoinTokenByHash(ctx, sha256.Sum256([]byte("one")))
		if err != nil || jt != toks[0] {
			t.Errorf("JoinTokenByHash = %+v, %v", jt, err)
		}
		if _, err := tx.JoinTokenByHash(ctx, sha256.Sum256([]byte("nope"))); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown hash = %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(ctx, func(tx *Tx) error {
		if err := tx.DeleteJoinTokensExpiredBefore(ctx, now.Add(-24*time.Hour)); err != nil {
			return err
		}
		if err := tx.DeleteJoinToken(ctx, "t3"); err != nil {
			return err
		}
		if err := tx.DeleteJoinToken(ctx, "t3"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete = %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := db.JoinTokens(ctx); err != nil || len(got) != 1 || got[0].ID != "t1" {
		t.Errorf("after deletes = %+v, %v", got, err)
	}
}

func TestClusterCredentials(t *testing.T) {
	db, _ := open(t)
	ctx := t.Context()
	now := time.Now()
	h1, h2, h3 := sha256.Sum256([]byte("1")), sha256.Sum256([]byte("2")), sha256.Sum256([]byte("3"))
	set := func(cluster string, h [32]byte) {
		t.Helper()
		if err := db.Update(ctx, func(tx *Tx) error { return tx.SetClusterCredential(ctx, cluster, h, now) }); err != nil {
			t.Fatal(err)
		}
	}
	lookup := func(h [32]byte, want string) {
		t.Helper()
		got, ok, err := db.ClusterForCredential(ctx, h)
		if err != nil || ok != (want != "") || got != want {
			t.Errorf("ClusterForCredential = %q, %v, %v; want %q", got, ok, err, want)
		}
	}
	set("a", h1)
	set("b", h2)
	lookup(h1, "a")
	lookup(h2, "b")
	set("a", h3) // rotation: the old credential stops working
	lookup(h1, "")
	lookup(h3, "a")
	if err := db.Update(ctx, func(tx *Tx) error { return tx.SetClusterCredential(ctx, "c", h2, now) }); err == nil {
		t.Error("two clusters share a credential hash")
	}
	err := db.Update(ctx, func(tx *Tx) error {
		if has, err := tx.HasClusterCredential(ctx, "a"); err != nil || !has {
			t.Errorf("HasClusterCredential(a) = %v, %v", has, err)
		}
		return tx.DeleteClusterCredential(ctx, "a")
	})
	if err != nil {
		t.Fatal(err)
	}
	lookup(h3, "")
	lookup(h2, "b")
}

// TestCachedCredentials checks that a credential once found is found again
// without reading the database (here locked by another connection), and that
// one rotated or deleted stops working as the change commits, even when the
// change is made while it is remembered.
func TestCachedCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	db, err := Open(t.Context(), path, WithBusyTimeout(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := t.Context()
	now := time.Now()
	h1, h2, h3 := sha256.Sum256([]byte("1")), sha256.Sum256([]byte("2")), sha256.Sum256([]byte("3"))
	update := func(fn func(tx *Tx) error) error { return db.Update(ctx, fn) }
	lookup := func(h [32]byte, want string) {
		t.Helper()
		got, ok, err := db.ClusterForCredential(ctx, h)
		if err != nil || ok != (want != "") || got != want {
			t.Errorf("ClusterForCredential = %q, %v, %v; want %q", got, ok, err, want)
		}
	}
	for cluster, h := range map[string][32]byte{"a": h1, "b": h2} {
		if err := update(func(tx *Tx) error { return tx.SetClusterCredential(ctx, cluster, h, now) }); err != nil {
			t.Fatal(err)
		}
	}
	lookup(h1, "a")

	release := storetest.Lock(t, db.SQL(), path)
	lookup(h1, "a") // remembered: no read
	if _, _, err := db.ClusterForCredential(ctx, h2); !errors.Is(err, ErrUnavailable) {
		t.Errorf("credential not seen before, store locked: error = %v, want ErrUnavailable", err)
	}
	release()

	// A rotation that rolls back changes nothing.
	boom := errors.New("boom")
	if err := update(func(tx *Tx) error {
		if err := tx.SetClusterCredential(ctx, "a", h3, now); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("rolled back rotation: %v", err)
	}
	lookup(h1, "a")
	lookup(h3, "")
	// A rotation that commits: the remembered credential stops working.
	if err := update(func(tx *Tx) error { return tx.SetClusterCredential(ctx, "a", h3, now) }); err != nil {
		t.Fatal(err)
	}
	lookup(h1, "")
	lookup(h3, "a")
	lookup(h2, "b")
	// So does a deleted one, and the others stay.
	if err := update(func(tx *Tx) error { return tx.DeleteClusterCredential(ctx, "a") }); err != nil {
		t.Fatal(err)
	}
	lookup(h3, "")
	lookup(h2, "b")
}
