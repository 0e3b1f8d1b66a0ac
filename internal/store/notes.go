package store

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

// PutNote stores a note from a cluster's outbox, stamped with the hub's
// clock, and forgets notes older than OutboxRetention (the hub forgets their
// keys then too).
func (tx *Tx) PutNote(ctx context.Context, cluster, key, text string, created time.Time) error {
	now := tx.clock.Now().UTC()
	if _, err := tx.q.ExecContext(ctx, `INSERT INTO notes(cluster, key, text, created, received) VALUES (?, ?, ?, ?, ?)`,
		cluster, key, text, created.UTC().Format(time.RFC3339Nano), now.Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("store: put note: %w", err)
	}
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM notes WHERE received < ?`, now.Add(-OutboxRetention).Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("store: forget old notes: %w", err)
	}
	return nil
}

// Notes returns the notes of cluster, oldest first, including those sent
// before the cluster was deleted and joined again.
func (tx *Tx) Notes(ctx context.Context, cluster string) ([]v1alpha1.Note, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT key, text, created, received FROM notes WHERE cluster = ? ORDER BY seq`, cluster)
	if err != nil {
		return nil, fmt.Errorf("store: notes: %w", err)
	}
	defer rows.Close()
	out := []v1alpha1.Note{}
	for rows.Next() {
		n := v1alpha1.Note{Cluster: cluster}
		var created, received string
		if err := rows.Scan(&n.Key, &n.Text, &created, &received); err != nil {
			return nil, fmt.Errorf("store: notes: %w", err)
		}
		n.Created, n.Received = parseNoteTime(created), parseNoteTime(received)
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: notes: %w", err)
	}
	return out, nil
}

func parseNoteTime(s string) metav1.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return metav1.NewTime(t)
}
