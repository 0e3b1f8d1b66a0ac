package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
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
	return rev, true, nil
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
	err = db.View(ctx, func(tx *Tx) error {
		rev, doc, err = tx.DesiredState(ctx, cluster)
		return err
	})
	return rev, doc, err
}
