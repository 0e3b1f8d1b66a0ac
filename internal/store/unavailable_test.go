package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"outpost.dev/outpost/internal/store/storetest"
)

func TestErrUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	db, err := Open(t.Context(), path, WithBusyTimeout(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := t.Context()
	h1, h2 := sha256.Sum256([]byte("1")), sha256.Sum256([]byte("2"))
	set := func(ctx context.Context, cluster string, h [32]byte) error {
		return db.Update(ctx, func(tx *Tx) error { return tx.SetClusterCredential(ctx, cluster, h, time.Now()) })
	}
	if err := set(ctx, "a", h1); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"read", func(ctx context.Context) error { _, err := db.Revision(ctx); return err }},
		{"credential lookup", func(ctx context.Context) error { _, _, err := db.ClusterForCredential(ctx, h2); return err }},
		{"write", func(ctx context.Context) error { return set(ctx, "b", h2) }},
	}
	release := storetest.Lock(t, db.SQL(), path)
	for _, c := range calls {
		t.Run("locked/"+c.name, func(t *testing.T) {
			if err := c.call(ctx); !errors.Is(err, ErrUnavailable) {
				t.Errorf("error = %v, want one wrapping ErrUnavailable", err)
			}
		})
	}
	release()
	for _, c := range calls {
		t.Run("released/"+c.name, func(t *testing.T) {
			if err := c.call(ctx); err != nil {
				t.Errorf("error = %v", err)
			}
		})
	}
	// Errors that will not pass by themselves are not ErrUnavailable.
	if err := set(ctx, "c", h1); err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("two clusters sharing a credential: error = %v, want a constraint error", err)
	}
}
