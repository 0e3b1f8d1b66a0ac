package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// FLSnapshot is the stored coordinator state of one federated job.
type FLSnapshot struct {
	// Job is the FederatedJob's name; UID its metadata.uid.
	Job, UID string
	// Seq counts the transitions applied: each PutFLSnapshot stores the next.
	Seq int64
	// State is the coordinator's snapshot, opaque to the store.
	State []byte
	// Updated is when it was written, by the store's clock.
	Updated time.Time
}

// ErrFLSeq reports a snapshot written out of turn: its Seq is not one above the stored one.
var ErrFLSeq = errors.New("store: federated job snapshot out of sequence")

// FLSnapshot returns the snapshot of job, or an error wrapping ErrNotFound.
func (tx *Tx) FLSnapshot(ctx context.Context, job string) (FLSnapshot, error) {
	s := FLSnapshot{Job: job}
	var updated string
	err := tx.q.QueryRowContext(ctx, `SELECT uid, seq, snapshot, updated FROM fl_snapshots WHERE job = ?`, job).
		Scan(&s.UID, &s.Seq, &s.State, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("federated job %q has no snapshot: %w", job, ErrNotFound)
	}
	if err != nil {
		return s, fmt.Errorf("store: federated job snapshot: %w", err)
	}
	s.Updated, _ = time.Parse(time.RFC3339Nano, updated)
	return s, nil
}

// PutFLSnapshot stores s as job s.Job's snapshot. s.Seq must be one above the stored
// snapshot's of the same UID, or 1 when there is none or it is of another UID (a job
// deleted and created again); otherwise it returns an error wrapping ErrFLSeq and
// writes nothing, so a writer that read an old snapshot cannot overwrite a newer one.
func (tx *Tx) PutFLSnapshot(ctx context.Context, s FLSnapshot) error {
	want := int64(1)
	old, err := tx.FLSnapshot(ctx, s.Job)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	case old.UID == s.UID:
		want = old.Seq + 1
	}
	if s.Seq != want {
		return fmt.Errorf("federated job %q: snapshot %d after %d: %w", s.Job, s.Seq, want-1, ErrFLSeq)
	}
	tx.wrote = true
	_, err = tx.q.ExecContext(ctx, `INSERT INTO fl_snapshots(job, uid, seq, snapshot, updated) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(job) DO UPDATE SET uid = excluded.uid, seq = excluded.seq, snapshot = excluded.snapshot, updated = excluded.updated`,
		s.Job, s.UID, s.Seq, s.State, tx.clock.Now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("store: put federated job snapshot: %w", err)
	}
	return nil
}

// DeleteFLSnapshot forgets job's snapshot, if any.
func (tx *Tx) DeleteFLSnapshot(ctx context.Context, job string) error {
	tx.wrote = true
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM fl_snapshots WHERE job = ?`, job); err != nil {
		return fmt.Errorf("store: delete federated job snapshot: %w", err)
	}
	return nil
}

// FLSnapshotJobs lists the jobs with a snapshot, sorted.
func (tx *Tx) FLSnapshotJobs(ctx context.Context) ([]string, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT job FROM fl_snapshots ORDER BY job`)
	if err != nil {
		return nil, fmt.Errorf("store: federated job snapshots: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var j string
		if err := rows.Scan(&j); err != nil {
			return nil, fmt.Errorf("store: federated job snapshots: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// SetFLMessages replaces job's messages to clusters with msgs (cluster to body; a cluster
// absent from msgs has none) and returns the clusters whose message changed, sorted.
func (tx *Tx) SetFLMessages(ctx context.Context, job string, msgs map[string][]byte) ([]string, error) {
	old, err := tx.flMessagesOf(ctx, job)
	if err != nil {
		return nil, err
	}
	var changed []string
	for c, b := range old {
		if nb, ok := msgs[c]; !ok || string(nb) != b {
			changed = append(changed, c)
		}
	}
	for c, b := range msgs {
		if _, ok := old[c]; !ok {
			changed = append(changed, c)
		} else if string(b) == old[c] {
			continue
		}
		tx.wrote = true
		if _, err := tx.q.ExecContext(ctx, `INSERT INTO fl_messages(job, cluster, body) VALUES (?, ?, ?)
			ON CONFLICT(job, cluster) DO UPDATE SET body = excluded.body`, job, c, string(b)); err != nil {
			return nil, fmt.Errorf("store: put federated message: %w", err)
		}
	}
	for c := range old {
		if _, ok := msgs[c]; !ok {
			tx.wrote = true
			if _, err := tx.q.ExecContext(ctx, `DELETE FROM fl_messages WHERE job = ? AND cluster = ?`, job, c); err != nil {
				return nil, fmt.Errorf("store: delete federated message: %w", err)
			}
		}
	}
	slices.Sort(changed)
	return changed, nil
}

func (tx *Tx) flMessagesOf(ctx context.Context, job string) (map[string]string, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT cluster, body FROM fl_messages WHERE job = ?`, job)
	if err != nil {
		return nil, fmt.Errorf("store: federated messages: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var c, b string
		if err := rows.Scan(&c, &b); err != nil {
			return nil, fmt.Errorf("store: federated messages: %w", err)
		}
		out[c] = b
	}
	return out, rows.Err()
}

// FLMessagesFor returns the messages of every job to cluster, by job.
func (tx *Tx) FLMessagesFor(ctx context.Context, cluster string) (map[string][]byte, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT job, body FROM fl_messages WHERE cluster = ? ORDER BY job`, cluster)
	if err != nil {
		return nil, fmt.Errorf("store: federated messages: %w", err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var j, b string
		if err := rows.Scan(&j, &b); err != nil {
			return nil, fmt.Errorf("store: federated messages: %w", err)
		}
		out[j] = []byte(b)
	}
	return out, rows.Err()
}
