package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// SetDesiredState stores the desired state document of cluster. When doc equals the stored
// document nothing is written and the stored revision is returned with changed false;
// otherwise the document gets a new global revision.
func (tx *Tx) SetDesiredState(ctx context.Context, cluster string, doc []byte) (rev int64, changed bool, err error) {
	oldRev, oldDoc, err := tx.DesiredState(ctx, cluster)
	switch {
	case err == nil && bytes.Equal(oldDoc, doc):
		return oldRev, false, nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return 0, false, err
	}
	if rev, err = tx.next(ctx); err != nil {
		return 0, false, err
	}
	_, err = tx.q.ExecContext(ctx, `INSERT INTO desired_states(cluster, revision, doc) VALUES (?, ?, ?)
		ON CONFLICT(cluster) DO UPDATE SET revision = excluded.revision, doc = excluded.doc`, cluster, rev, string(doc))
	if err != nil {
		return 0, false, fmt.Errorf("store: write desired state of %q: %w", cluster, err)
	}
	tx.noteDesired(cluster, rev)
	return rev, true, nil
}

func (tx *Tx) noteDesired(cluster string, rev int64) {
	if tx.desired == nil {
		tx.desired = map[string]int64{}
	}
	tx.desired[cluster] = rev
}

// DeleteDesiredState removes the desired state document of cluster, if any.
func (tx *Tx) DeleteDesiredState(ctx context.Context, cluster string) error {
	res, err := tx.q.ExecContext(ctx, `DELETE FROM desired_states WHERE cluster = ?`, cluster)
	if err != nil {
		return fmt.Errorf("store: delete desired state of %q: %w", cluster, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		if _, err := tx.next(ctx); err != nil {
			return err
		}
		tx.noteDesired(cluster, 0)
	}
	return nil
}

// DesiredState returns the desired state document of cluster and the revision at which it last
// changed, or an error wrapping ErrNotFound.
func (tx *Tx) DesiredState(ctx context.Context, cluster string) (int64, []byte, error) {
	var rev int64
	var doc string
	err := tx.q.QueryRowContext(ctx, `SELECT revision, doc FROM desired_states WHERE cluster = ?`, cluster).Scan(&rev, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, fmt.Errorf("desired state of cluster %q: %w", cluster, ErrNotFound)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("store: read desired state of %q: %w", cluster, err)
	}
	return rev, []byte(doc), nil
}

// DesiredStateClusters returns the names of the clusters that have a desired state document.
func (tx *Tx) DesiredStateClusters(ctx context.Context) ([]string, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT cluster FROM desired_states ORDER BY cluster`)
	if err != nil {
		return nil, fmt.Errorf("store: list desired states: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("store: list desired states: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DesiredState returns the desired state document of cluster and its revision; see Tx.DesiredState.
func (db *DB) DesiredState(ctx context.Context, cluster string) (rev int64, doc []byte, err error) {
	// One statement, which SQLite runs atomically: no transaction to begin and end.
	rev, doc, err = db.statement().DesiredState(ctx, cluster)
	return rev, doc, classify(err)
}

// DesiredChanged returns a channel closed after the next commit that changes
// or deletes cluster's desired state, and the revision of that state as of
// the last such commit this process saw (0 and false when unknown: read it
// with DesiredState). Long-polls wait on it instead of Changed, so that a
// write about one cluster, such as another cluster's status report, wakes
// nobody else. Take the channel before reading the state, then wait.
func (db *DB) DesiredChanged(cluster string) (ch <-chan struct{}, rev int64, known bool) {
	return db.desired.watch(cluster)
}

// desiredWatch keeps, per cluster, the last published desired-state
// revision and a channel closed when it next changes.
type desiredWatch struct {
	mu   *sync.Mutex
	revs map[string]int64
	chs  map[string]chan struct{}
}

func newDesiredWatch() desiredWatch {
	return desiredWatch{mu: &sync.Mutex{}, revs: map[string]int64{}, chs: map[string]chan struct{}{}}
}

func (w desiredWatch) watch(cluster string) (<-chan struct{}, int64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.chs[cluster]
	if !ok {
		ch = make(chan struct{})
		w.chs[cluster] = ch
	}
	rev, known := w.revs[cluster]
	return ch, rev, known
}

func (w desiredWatch) publish(changed map[string]int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for cluster, rev := range changed {
		if rev == 0 {
			delete(w.revs, cluster)
		} else {
			w.revs[cluster] = rev
		}
		if ch, ok := w.chs[cluster]; ok {
			close(ch)
			delete(w.chs, cluster)
		}
	}
}
