package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// OutboxRetention is how long the hub remembers the outcome of an outbox
// record's key. An agent that sends a record again after longer (it was
// applied, the answer was lost, and the agent was cut off for that long)
// would have it applied twice.
const OutboxRetention = 180 * 24 * time.Hour

// OutboxOutcome returns the outcome recorded for the outbox record key of
// cluster, and whether there is one.
func (tx *Tx) OutboxOutcome(ctx context.Context, cluster, key string) (outcome, message string, found bool, err error) {
	err = tx.q.QueryRowContext(ctx, `SELECT outcome, message FROM outbox_outcomes WHERE cluster = ? AND key = ?`, cluster, key).Scan(&outcome, &message)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("store: outbox outcome: %w", err)
	}
	return outcome, message, true, nil
}

// PutOutboxOutcome records the outcome of the outbox record key of cluster,
// in the transaction that applied (or refused) it, and forgets outcomes
// older than OutboxRetention.
func (tx *Tx) PutOutboxOutcome(ctx context.Context, cluster, key, kind, outcome, message string) error {
	now := tx.clock.Now().UTC()
	if _, err := tx.q.ExecContext(ctx, `INSERT INTO outbox_outcomes(cluster, key, kind, outcome, message, taken) VALUES (?, ?, ?, ?, ?, ?)`,
		cluster, key, kind, outcome, message, now.Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("store: record outbox outcome: %w", err)
	}
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM outbox_outcomes WHERE taken < ?`, now.Add(-OutboxRetention).Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("store: forget old outbox outcomes: %w", err)
	}
	return nil
}

// OutboxCounts returns, for cluster, how many records of each kind the hub
// applied.
func (tx *Tx) OutboxCounts(ctx context.Context, cluster string) (map[string]int64, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT kind, COUNT(*) FROM outbox_outcomes WHERE cluster = ? AND outcome = 'Applied' GROUP BY kind`, cluster)
	if err != nil {
		return nil, fmt.Errorf("store: outbox counts: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, fmt.Errorf("store: outbox counts: %w", err)
		}
		out[k] = n
	}
	return out, rows.Err()
}
