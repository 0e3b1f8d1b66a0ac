package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SetClusterBundleKey records key as cluster's public key for status
// bundles. A new key (the cluster joined again with a new data directory)
// keeps the sequence number: an old status bundle stays a replay.
func (tx *Tx) SetClusterBundleKey(ctx context.Context, cluster string, key []byte) error {
	if !tx.write {
		return errors.New("store: write in a read transaction")
	}
	if _, err := tx.q.ExecContext(ctx, `INSERT INTO cluster_bundle_keys(cluster, key) VALUES (?, ?)
		ON CONFLICT(cluster) DO UPDATE SET key = excluded.key`, cluster, key); err != nil {
		return fmt.Errorf("store: set bundle key of cluster %q: %w", cluster, err)
	}
	return nil
}

// ClusterBundleKey returns cluster's recorded bundle key and the sequence
// number of its newest imported status bundle; an error wrapping
// ErrNotFound when none is recorded.
func (tx *Tx) ClusterBundleKey(ctx context.Context, cluster string) (key []byte, seq int64, err error) {
	err = tx.q.QueryRowContext(ctx, `SELECT key, status_seq FROM cluster_bundle_keys WHERE cluster = ?`, cluster).Scan(&key, &seq)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("store: bundle key of cluster %q: %w", cluster, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("store: bundle key of cluster %q: %w", cluster, err)
	}
	return key, seq, nil
}

// SetStatusSeq records seq as the newest status bundle of cluster the hub
// imported; it never goes down.
func (tx *Tx) SetStatusSeq(ctx context.Context, cluster string, seq int64) error {
	if !tx.write {
		return errors.New("store: write in a read transaction")
	}
	if _, err := tx.q.ExecContext(ctx, `UPDATE cluster_bundle_keys SET status_seq = max(status_seq, ?) WHERE cluster = ?`, seq, cluster); err != nil {
		return fmt.Errorf("store: status bundle of cluster %q: %w", cluster, err)
	}
	return nil
}
