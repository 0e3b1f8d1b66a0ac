// Package outbox is the agent's durable store-and-forward queue: every
// record that must reach the hub (drift windows, pipeline results, models
// produced at the edge, federated learning messages) goes in here first,
// in SQLite, and leaves only once the hub acknowledged it.
//
// Each record has an idempotency key, unique within its cluster: the hub
// applies a key once, so a record sent again after a crash, a cut link or
// a lost answer takes effect exactly once. Records leave in priority order,
// oldest first within a priority.
//
// The outbox has a byte budget. When a new record would exceed it, the
// oldest records of the lowest priority make room: two records of the same
// merge group are merged into one (their kind's MergeFunc; a drift window
// merges with the next into a coarser one), and what cannot be merged is
// dropped. A record that was ever offered to the hub is never merged: the
// hub may already have applied it, and a merge would count it twice.
// Merged and dropped records are counted by kind; the counts travel with
// the agent's reports.
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/internal/clock"
)

// Priority orders records: higher leaves first and is dropped last.
type Priority int

// Priorities, after docs/design.md's transfer order: control > active
// deployment > federated learning > drift and metrics > logs.
const (
	PriorityLogs    Priority = 10
	PriorityMetrics Priority = 20
	PriorityFL      Priority = 30
	PriorityResults Priority = 40
	PriorityControl Priority = 50
)

// DefaultBudget is the byte budget when Options.Budget is zero.
const DefaultBudget = 64 << 20

// MaxRecordBytes bounds one record's payload.
const MaxRecordBytes = 8 << 20

// Record is one message for the hub.
type Record struct {
	// Key is the idempotency key, unique within the cluster, such as
	// "drift/fashion/1.1.0/000042".
	Key string `json:"key"`
	// Kind names what the record is, such as "drift.window"; the hub applies
	// each kind with its own handler.
	Kind string `json:"kind"`
	// Priority orders sending and dropping.
	Priority Priority `json:"priority"`
	// Group, if set, names the records this one may be merged with when the
	// budget fills (with the kind's MergeFunc). Empty means never merged.
	Group string `json:"group,omitempty"`
	// Payload is the kind's content, JSON.
	Payload []byte `json:"payload"`
	// Created is when the record was put.
	Created time.Time `json:"created"`
}

// MergeFunc merges the payloads of two records of one kind and group, the
// older first, into the payload of one record that stands for both.
type MergeFunc func(older, newer []byte) ([]byte, error)

// Options configures an Outbox.
type Options struct {
	// Budget bounds the payload bytes held; 0 means DefaultBudget.
	Budget int64
	// Merge holds the MergeFunc of each kind that can merge.
	Merge map[string]MergeFunc
	// Clock stamps records; nil means the real clock.
	Clock clock.Clock
	// WriteLock, if set, is held around each of the outbox's write
	// transactions. A process that writes the same database elsewhere passes
	// the lock its own writers hold, so that SQLite never makes one writer
	// wait for another; nil means a lock of the outbox's own.
	WriteLock sync.Locker
}

// Stats says what the outbox holds and what it had to give up.
type Stats struct {
	// Records and Bytes are what waits to be sent.
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	// Merged counts, by kind, records merged into others to stay within
	// the budget; Dropped those dropped.
	Merged  map[string]int64 `json:"merged,omitempty"`
	Dropped map[string]int64 `json:"dropped,omitempty"`
	// Refused counts, by kind, records the hub refused for good.
	Refused map[string]int64 `json:"refused,omitempty"`
}

// Outbox is a durable queue of records in a SQLite database. It is safe for
// concurrent use; several Outboxes must not share a database.
type Outbox struct {
	db    *sql.DB
	opts  Options
	mu    sync.Locker // serialises writers: budget checks read then write
	ready chan struct{}
}

const schema = `
CREATE TABLE IF NOT EXISTS outbox_records (
	seq      INTEGER PRIMARY KEY AUTOINCREMENT,
	key      TEXT NOT NULL UNIQUE,
	kind     TEXT NOT NULL,
	priority INTEGER NOT NULL,
	grp      TEXT NOT NULL DEFAULT '',
	payload  BLOB NOT NULL,
	size     INTEGER NOT NULL,
	created  TEXT NOT NULL,
	offered  INTEGER NOT NULL DEFAULT 0  -- times sent to the hub without an answer for it
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox_records(priority DESC, seq);
CREATE TABLE IF NOT EXISTS outbox_counts (
	kind    TEXT PRIMARY KEY,
	merged  INTEGER NOT NULL DEFAULT 0,
	dropped INTEGER NOT NULL DEFAULT 0,
	refused INTEGER NOT NULL DEFAULT 0
);
`

// Open returns the outbox kept in db, creating its tables if needed.
func Open(ctx context.Context, db *sql.DB, opts Options) (*Outbox, error) {
	if opts.Budget <= 0 {
		opts.Budget = DefaultBudget
	}
	opts.Clock = clock.OrReal(opts.Clock)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("outbox: create tables: %w", err)
	}
	mu := opts.WriteLock
	if mu == nil {
		mu = &sync.Mutex{}
	}
	return &Outbox{db: db, opts: opts, mu: mu, ready: make(chan struct{}, 1)}, nil
}

// Ready is signalled (without blocking, coalescing) after each Put, for a
// sender waiting for work.
func (o *Outbox) Ready() <-chan struct{} { return o.ready }

// ErrTooLarge is returned by Put for a record larger than the budget or
// MaxRecordBytes.
var ErrTooLarge = errors.New("record too large")

// Put adds rec durably. A record whose key is already in the outbox is not
// added again (the first one stays), and Put reports false. To stay within
// the budget it first merges or drops older records of lower or equal
// priority, as the package comment says; if that cannot make room, the new
// record is the one dropped and counted, and Put reports false.
func (o *Outbox) Put(ctx context.Context, rec Record) (added bool, err error) {
	if err := validate(rec); err != nil {
		return false, err
	}
	size := int64(len(rec.Payload))
	if size > o.opts.Budget || size > MaxRecordBytes {
		return false, fmt.Errorf("outbox: %s %q: %d bytes: %w (budget %d, limit %d)", rec.Kind, rec.Key, size, ErrTooLarge, o.opts.Budget, MaxRecordBytes)
	}
	if rec.Created.IsZero() {
		rec.Created = o.opts.Clock.Now()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	err = o.update(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox_records WHERE key = ?`, rec.Key).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		fits, err := o.makeRoom(ctx, tx, rec.Priority, size)
		if err != nil {
			return err
		}
		if !fits {
			return count(ctx, tx, rec.Kind, "dropped", 1)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox_records(key, kind, priority, grp, payload, size, created) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			rec.Key, rec.Kind, int(rec.Priority), rec.Group, rec.Payload, size, rec.Created.UTC().Format(time.RFC3339Nano)); err != nil {
			return err
		}
		added = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("outbox: put %s %q: %w", rec.Kind, rec.Key, err)
	}
	if added {
		select {
		case o.ready <- struct{}{}:
		default:
		}
	}
	return added, nil
}

func validate(rec Record) error {
	switch {
	case rec.Key == "" || len(rec.Key) > 512 || strings.ContainsAny(rec.Key, "\x00\n"):
		return fmt.Errorf("outbox: record key %q: want 1 to 512 characters, no NUL or newline", rec.Key)
	case rec.Kind == "" || len(rec.Kind) > 64:
		return fmt.Errorf("outbox: record %q: kind %q: want 1 to 64 characters", rec.Key, rec.Kind)
	case !json.Valid(rec.Payload):
		return fmt.Errorf("outbox: record %q (%s): the payload is not JSON", rec.Key, rec.Kind)
	}
	return nil
}

// victim is a record that may make room.
type victim struct {
	seq     int64
	key     string
	kind    string
	group   string
	size    int64
	payload []byte
	offered int64
}

// makeRoom merges or drops records of priority at most p, oldest first,
// until size more bytes fit in the budget. It reports whether they fit.
func (o *Outbox) makeRoom(ctx context.Context, tx *sql.Tx, p Priority, size int64) (bool, error) {
	for {
		var used int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM outbox_records`).Scan(&used); err != nil {
			return false, err
		}
		if used+size <= o.opts.Budget {
			return true, nil
		}
		v, ok, err := o.oldest(ctx, tx, p)
		if err != nil || !ok {
			return false, err
		}
		merged, err := o.mergeNext(ctx, tx, v)
		if err != nil {
			return false, err
		}
		if merged {
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox_records WHERE seq = ?`, v.seq); err != nil {
			return false, err
		}
		if err := count(ctx, tx, v.kind, "dropped", 1); err != nil {
			return false, err
		}
	}
}

// oldest returns the oldest record of the lowest priority not above p.
func (o *Outbox) oldest(ctx context.Context, tx *sql.Tx, p Priority) (victim, bool, error) {
	var v victim
	err := tx.QueryRowContext(ctx, `SELECT seq, key, kind, grp, size, payload, offered FROM outbox_records
		WHERE priority <= ? ORDER BY priority, seq LIMIT 1`, int(p)).Scan(&v.seq, &v.key, &v.kind, &v.group, &v.size, &v.payload, &v.offered)
	if errors.Is(err, sql.ErrNoRows) {
		return v, false, nil
	}
	return v, err == nil, err
}

// mergeNext merges v into the next record of its kind and group, if both
// may merge, and reports whether it did. The merged record keeps the newer
// record's key and place; v is deleted and counted as merged.
func (o *Outbox) mergeNext(ctx context.Context, tx *sql.Tx, v victim) (bool, error) {
	merge := o.opts.Merge[v.kind]
	if merge == nil || v.group == "" || v.offered > 0 {
		return false, nil
	}
	var next victim
	err := tx.QueryRowContext(ctx, `SELECT seq, key, payload FROM outbox_records
		WHERE kind = ? AND grp = ? AND seq > ? AND offered = 0 ORDER BY seq LIMIT 1`, v.kind, v.group, v.seq).Scan(&next.seq, &next.key, &next.payload)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	payload, err := merge(v.payload, next.payload)
	if err != nil {
		return false, fmt.Errorf("merge %s %q into %q: %w", v.kind, v.key, next.key, err)
	}
	if int64(len(payload)) >= v.size+int64(len(next.payload)) {
		return false, nil // merging would not make room
	}
	if _, err := tx.ExecContext(ctx, `UPDATE outbox_records SET payload = ?, size = ? WHERE seq = ?`, payload, len(payload), next.seq); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM outbox_records WHERE seq = ?`, v.seq); err != nil {
		return false, err
	}
	return true, count(ctx, tx, v.kind, "merged", 1)
}

func count(ctx context.Context, tx *sql.Tx, kind, column string, n int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO outbox_counts(kind, `+column+`) VALUES (?, ?)
		ON CONFLICT(kind) DO UPDATE SET `+column+` = `+column+` + excluded.`+column, kind, n)
	return err
}

// Next returns the next records of priority at least min to send, in
// order, up to max records and about maxBytes of payload (at least one
// record when any waits), and marks them offered: from now on they are
// never merged.
func (o *Outbox) Next(ctx context.Context, min Priority, max int, maxBytes int64) ([]Record, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Record
	err := o.update(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `SELECT seq, key, kind, priority, grp, payload, created FROM outbox_records
			WHERE priority >= ? ORDER BY priority DESC, seq LIMIT ?`, int(min), max)
		if err != nil {
			return err
		}
		var seqs []int64
		var total int64
		for rows.Next() {
			var r Record
			var seq int64
			var p int
			var created string
			if err := rows.Scan(&seq, &r.Key, &r.Kind, &p, &r.Group, &r.Payload, &created); err != nil {
				rows.Close()
				return err
			}
			if len(out) > 0 && total+int64(len(r.Payload)) > maxBytes {
				break
			}
			r.Priority = Priority(p)
			r.Created, _ = time.Parse(time.RFC3339Nano, created)
			total += int64(len(r.Payload))
			out = append(out, r)
			seqs = append(seqs, seq)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, s := range seqs {
			if _, err := tx.ExecContext(ctx, `UPDATE outbox_records SET offered = offered + 1 WHERE seq = ?`, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: next: %w", err)
	}
	return out, nil
}

// Has reports whether a record with key waits in the outbox.
func (o *Outbox) Has(ctx context.Context, key string) (bool, error) {
	var n int
	if err := o.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox_records WHERE key = ?`, key).Scan(&n); err != nil {
		return false, fmt.Errorf("outbox: has %q: %w", key, err)
	}
	return n > 0, nil
}

// Outcome is what the hub did with one record.
type Outcome struct {
	// Key is the record's key.
	Key string
	// Done is true when the hub applied the record, now or before: it leaves.
	Done bool
	// Refused is true when the hub will never apply it (the reason in
	// Message): it leaves too, counted as refused.
	Refused bool
	// Kind is the record's kind, for the refused count.
	Kind string
	// Message is the hub's reason for a refusal.
	Message string
}

// Ack removes the records the hub applied or refused for good. Records
// with neither stay, to be sent again.
func (o *Outbox) Ack(ctx context.Context, outcomes []Outcome) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.update(ctx, func(tx *sql.Tx) error {
		for _, oc := range outcomes {
			if !oc.Done && !oc.Refused {
				continue
			}
			res, err := tx.ExecContext(ctx, `DELETE FROM outbox_records WHERE key = ?`, oc.Key)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n > 0 && oc.Refused {
				if err := count(ctx, tx, oc.Kind, "refused", 1); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox: ack: %w", err)
	}
	return nil
}

// Stats returns what the outbox holds and what it gave up.
func (o *Outbox) Stats(ctx context.Context) (Stats, error) { return ReadStats(ctx, o.db) }

// ReadStats returns the Stats of the outbox kept in db, without opening it
// for writing: all zero where db holds none.
func ReadStats(ctx context.Context, db *sql.DB) (Stats, error) {
	st := Stats{}
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('outbox_records', 'outbox_counts')`).Scan(&tables); err != nil {
		return st, fmt.Errorf("outbox: stats: %w", err)
	}
	if tables < 2 {
		return st, nil
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox_records`).Scan(&st.Records, &st.Bytes); err != nil {
		return st, fmt.Errorf("outbox: stats: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT kind, merged, dropped, refused FROM outbox_counts ORDER BY kind`)
	if err != nil {
		return st, fmt.Errorf("outbox: stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind string
		var m, d, r int64
		if err := rows.Scan(&kind, &m, &d, &r); err != nil {
			return st, fmt.Errorf("outbox: stats: %w", err)
		}
		add := func(dst *map[string]int64, n int64) {
			if n > 0 {
				if *dst == nil {
					*dst = map[string]int64{}
				}
				(*dst)[kind] = n
			}
		}
		add(&st.Merged, m)
		add(&st.Dropped, d)
		add(&st.Refused, r)
	}
	return st, rows.Err()
}

// update runs fn in one transaction.
func (o *Outbox) update(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}
