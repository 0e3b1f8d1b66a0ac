package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// QueuedAlert is an alert webhook message waiting in the hub's queue until
// its receiver takes it.
type QueuedAlert struct {
	// ID orders the queue: a receiver gets its alerts in ID order.
	ID int64
	// URL is the receiver's webhook URL.
	URL string
	// Fingerprint identifies the alert (not the message): its firing and
	// its resolution share it.
	Fingerprint string
	// Status is firing or resolved.
	Status string
	// Payload is the message to POST, JSON.
	Payload []byte
	// Created is when the alert was queued, by the store's clock.
	Created time.Time
	// Attempts counts the failed deliveries so far; NextAttempt is when to
	// try again; LastError says why the last one failed.
	Attempts    int
	NextAttempt time.Time
	LastError   string
}

// EnqueueAlert queues a, due at once, in the transaction that decided it:
// the alert is queued if and only if that decision is stored.
func (tx *Tx) EnqueueAlert(ctx context.Context, a QueuedAlert) error {
	if !tx.write {
		return errors.New("store: write in a read transaction")
	}
	if a.URL == "" || len(a.Payload) == 0 {
		return errors.New("store: alert without receiver or payload")
	}
	now := tx.clock.Now().UnixMilli()
	if _, err := tx.q.ExecContext(ctx, `INSERT INTO alerts(url, fingerprint, status, payload, created, attempts, next_attempt, last_error)
		VALUES (?, ?, ?, ?, ?, 0, ?, '')`, a.URL, a.Fingerprint, a.Status, string(a.Payload), now, now); err != nil {
		return fmt.Errorf("store: queue alert: %w", err)
	}
	tx.wrote = true // wake the delivery loop, which waits on Changed
	return nil
}

// AlertHeads returns, for each receiver, the oldest alert queued for it:
// the one to deliver next, as a receiver takes its alerts in order.
func (db *DB) AlertHeads(ctx context.Context) ([]QueuedAlert, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT id, url, fingerprint, status, payload, created, attempts, next_attempt, last_error
		FROM alerts WHERE id IN (SELECT MIN(id) FROM alerts GROUP BY url) ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store: queued alerts: %w", err)
	}
	defer rows.Close()
	var out []QueuedAlert
	for rows.Next() {
		var a QueuedAlert
		var payload string
		var created, next int64
		if err := rows.Scan(&a.ID, &a.URL, &a.Fingerprint, &a.Status, &payload, &created, &a.Attempts, &next, &a.LastError); err != nil {
			return nil, fmt.Errorf("store: queued alerts: %w", err)
		}
		a.Payload = []byte(payload)
		a.Created, a.NextAttempt = time.UnixMilli(created).UTC(), time.UnixMilli(next).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// AlertDelivered removes the alert id from the queue: its receiver took it.
func (db *DB) AlertDelivered(ctx context.Context, id int64) error {
	return db.Update(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM alerts WHERE id = ?`, id); err != nil {
			return fmt.Errorf("store: alert delivered: %w", err)
		}
		return nil
	})
}

// AlertFailed records a failed delivery of the alert id, to be tried
// again at next.
func (db *DB) AlertFailed(ctx context.Context, id int64, next time.Time, reason string) error {
	return db.Update(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `UPDATE alerts SET attempts = attempts + 1, next_attempt = ?, last_error = ? WHERE id = ?`,
			next.UnixMilli(), reason, id); err != nil {
			return fmt.Errorf("store: alert failed: %w", err)
		}
		return nil
	})
}

// QueuedAlerts counts the alerts waiting for their receivers.
func (tx *Tx) QueuedAlerts(ctx context.Context) (int64, error) {
	var n int64
	if err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM alerts`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count queued alerts: %w", err)
	}
	return n, nil
}
