package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DriftWindowRetention is how many drift windows the hub keeps per cluster
// and deployment: the newest by end time; older ones are forgotten as new
// ones arrive.
const DriftWindowRetention = 1000

// DriftWindow is a drift window report an agent sent the hub, as stored.
type DriftWindow struct {
	// Cluster sent the report about Deployment serving Version.
	Cluster, Deployment, Version string
	// First and Last are the agent's sequence numbers of the windows the
	// report covers; Windows counts them (more than one when merged).
	First, Last uint64
	Windows     int
	// Start and End bound the samples' times, by the agent's clock; the
	// store keeps them to the millisecond.
	Start, End time.Time
	// Samples is the number of samples.
	Samples uint64
	// Verdict is the report's verdict; Alarm whether the alarm was raised.
	Verdict string
	Alarm   bool
	// Received is when the hub stored the report (set by PutDriftWindow).
	Received time.Time
	// Report is the report's JSON, as the agent sent it.
	Report []byte
}

// PutDriftWindow stores w, received now by the store's clock, and forgets
// the windows of w's cluster and deployment beyond the newest
// DriftWindowRetention.
func (tx *Tx) PutDriftWindow(ctx context.Context, w DriftWindow) error {
	if !tx.write {
		return errors.New("store: write in a read transaction")
	}
	if w.Cluster == "" || w.Deployment == "" {
		return errors.New("store: drift window without cluster or deployment")
	}
	_, err := tx.q.ExecContext(ctx, `INSERT INTO drift_windows(cluster, deployment, version, first, last, windows,
		started, ended, samples, verdict, alarm, received, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		w.Cluster, w.Deployment, w.Version, int64(w.First), int64(w.Last), w.Windows,
		w.Start.UnixMilli(), w.End.UnixMilli(), int64(w.Samples), w.Verdict, w.Alarm,
		tx.clock.Now().UnixMilli(), string(w.Report))
	if err != nil {
		return fmt.Errorf("store: put drift window: %w", err)
	}
	_, err = tx.q.ExecContext(ctx, `DELETE FROM drift_windows WHERE cluster = ? AND deployment = ? AND id NOT IN (
		SELECT id FROM drift_windows WHERE cluster = ? AND deployment = ? ORDER BY ended DESC, id DESC LIMIT ?)`,
		w.Cluster, w.Deployment, w.Cluster, w.Deployment, DriftWindowRetention)
	if err != nil {
		return fmt.Errorf("store: forget old drift windows: %w", err)
	}
	return nil
}

// DriftWindows returns the stored windows of deployment from cluster (every
// cluster when empty), newest (latest end) first, at most limit of them.
func (tx *Tx) DriftWindows(ctx context.Context, deployment, cluster string, limit int) ([]DriftWindow, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT cluster, deployment, version, first, last, windows, started, ended,
		samples, verdict, alarm, received, report FROM drift_windows
		WHERE deployment = ? AND (? = '' OR cluster = ?) ORDER BY ended DESC, id DESC LIMIT ?`,
		deployment, cluster, cluster, limit)
	if err != nil {
		return nil, fmt.Errorf("store: drift windows: %w", err)
	}
	defer rows.Close()
	var out []DriftWindow
	for rows.Next() {
		var w DriftWindow
		var first, last, samples, start, end, received int64
		var report string
		if err := rows.Scan(&w.Cluster, &w.Deployment, &w.Version, &first, &last, &w.Windows, &start, &end,
			&samples, &w.Verdict, &w.Alarm, &received, &report); err != nil {
			return nil, fmt.Errorf("store: drift windows: %w", err)
		}
		w.First, w.Last, w.Samples = uint64(first), uint64(last), uint64(samples)
		w.Start, w.End, w.Received = time.UnixMilli(start).UTC(), time.UnixMilli(end).UTC(), time.UnixMilli(received).UTC()
		w.Report = []byte(report)
		out = append(out, w)
	}
	return out, rows.Err()
}

// DriftWindows is Tx.DriftWindows in a read transaction of its own.
func (db *DB) DriftWindows(ctx context.Context, deployment, cluster string, limit int) (ws []DriftWindow, err error) {
	err = db.View(ctx, func(tx *Tx) error {
		ws, err = tx.DriftWindows(ctx, deployment, cluster, limit)
		return err
	})
	return ws, err
}

// DeleteDriftWindows forgets the windows of deployment (of every
// deployment when empty) from cluster (every cluster when empty); one of
// the two must be given.
func (tx *Tx) DeleteDriftWindows(ctx context.Context, deployment, cluster string) error {
	if !tx.write {
		return errors.New("store: write in a read transaction")
	}
	if deployment == "" && cluster == "" {
		return errors.New("store: delete drift windows: name a deployment or a cluster")
	}
	_, err := tx.q.ExecContext(ctx, `DELETE FROM drift_windows WHERE (? = '' OR deployment = ?) AND (? = '' OR cluster = ?)`,
		deployment, deployment, cluster, cluster)
	if err != nil {
		return fmt.Errorf("store: delete drift windows: %w", err)
	}
	return nil
}
