// Package store keeps state in a SQLite database: schema migrations, Outpost resources with
// one global revision counter and a change log for watches, and the desired state document of
// each cluster. Every write runs in one SQLite transaction, so a crash leaves either all of a
// change or none of it.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"outpost.dev/outpost/internal/clock"
)

// Errors returned by the store; test them with errors.Is.
var (
	// ErrNotFound means the resource or desired state does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a resourceVersion precondition failed.
	ErrConflict = errors.New("conflict")
	// ErrCompacted means the change log no longer holds changes that old.
	ErrCompacted = errors.New("revision compacted")
)

// eventRetention is how many revisions of change log are kept for watches.
const eventRetention = 10000

// DB is an open store. It is safe for concurrent use.
type DB struct {
	db    *sql.DB
	clock clock.Clock
	// writeMu serialises this process's write transactions.
	writeMu sync.Mutex

	mu      sync.Mutex
	changed chan struct{} // closed and replaced after every committed write
	desired desiredWatch  // per-cluster wake-ups for desired-state long-polls
}

var migrations = []string{
	// 1: resources, change log, revision counter, desired states.
	`CREATE TABLE meta (
		key   TEXT PRIMARY KEY,
		value INTEGER NOT NULL
	);
	INSERT INTO meta(key, value) VALUES ('revision', 0), ('compacted', 0);
	CREATE TABLE resources (
		kind             TEXT NOT NULL,
		name             TEXT NOT NULL,
		uid              TEXT NOT NULL,
		generation       INTEGER NOT NULL,
		resource_version INTEGER NOT NULL,
		labels           TEXT NOT NULL,
		body             TEXT NOT NULL,
		created          TEXT NOT NULL,
		updated          TEXT NOT NULL,
		PRIMARY KEY (kind, name)
	);
	CREATE TABLE events (
		revision INTEGER PRIMARY KEY,
		kind     TEXT NOT NULL,
		name     TEXT NOT NULL,
		type     TEXT NOT NULL,
		body     TEXT NOT NULL
	);
	CREATE INDEX events_kind ON events(kind, revision);
	CREATE TABLE desired_states (
		cluster  TEXT PRIMARY KEY,
		revision INTEGER NOT NULL,
		doc      TEXT NOT NULL
	);`,
	// 2: join tokens and cluster credentials, both known only by their SHA-256 hash.
	`CREATE TABLE join_tokens (
		id          TEXT PRIMARY KEY,
		hash        BLOB NOT NULL UNIQUE,
		description TEXT NOT NULL,
		created     TEXT NOT NULL,
		expires     TEXT NOT NULL
	);
	CREATE TABLE cluster_credentials (
		cluster TEXT PRIMARY KEY,
		hash    BLOB NOT NULL UNIQUE,
		created TEXT NOT NULL
	);`,
	// 3: the outcome of every outbox record an agent sent, by cluster and idempotency key.
	`CREATE TABLE outbox_outcomes (
		cluster TEXT NOT NULL,
		key     TEXT NOT NULL,
		kind    TEXT NOT NULL,
		outcome TEXT NOT NULL,
		message TEXT NOT NULL,
		taken   TEXT NOT NULL,
		PRIMARY KEY (cluster, key)
	);
	CREATE INDEX outbox_outcomes_taken ON outbox_outcomes(taken);`,
	// 4: notes from the edge (outbox records of kind note), in the order applied. The key is
	// not unique here: outbox_outcomes makes each key apply once, and a note stored twice
	// would show that it did not.
	`CREATE TABLE notes (
		seq      INTEGER PRIMARY KEY AUTOINCREMENT,
		cluster  TEXT NOT NULL,
		key      TEXT NOT NULL,
		text     TEXT NOT NULL,
		created  TEXT NOT NULL,
		received TEXT NOT NULL
	);
	CREATE INDEX notes_cluster ON notes(cluster, seq);
	CREATE INDEX notes_received ON notes(received);`,
}

// Option configures a DB at Open.
type Option func(*DB)

// WithClock makes the store read the time (creation timestamps, update times) from c instead
// of the system clock.
func WithClock(c clock.Clock) Option {
	return func(db *DB) { db.clock = clock.OrReal(c) }
}

// Open opens or creates the SQLite database at path and applies pending migrations. The
// database runs in WAL mode with synchronous=FULL, foreign keys on and a 10 s busy timeout.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	sqldb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db := &DB{db: sqldb, clock: clock.Real(), changed: make(chan struct{}), desired: newDesiredWatch()}
	for _, o := range opts {
		o(db)
	}
	if err := db.migrate(ctx); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		applied TEXT NOT NULL
	)`); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	for i, m := range migrations {
		version := i + 1
		err := db.Update(ctx, func(tx *Tx) error {
			var n int
			if err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.q.ExecContext(ctx, m); err != nil {
				return err
			}
			_, err := tx.q.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied) VALUES (?, ?)`,
				version, db.clock.Now().UTC().Format(time.RFC3339Nano))
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d: %w", version, err)
		}
	}
	return nil
}

// SQL returns the underlying database for other packages' own tables.
func (db *DB) SQL() *sql.DB { return db.db }

// Close closes the database.
func (db *DB) Close() error { return db.db.Close() }

// Changed returns a channel that is closed after the next write transaction commits. To wait
// for changes without missing one, take the channel first, then read the state, then wait.
func (db *DB) Changed() <-chan struct{} {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.changed
}

func (db *DB) broadcast() {
	db.mu.Lock()
	defer db.mu.Unlock()
	close(db.changed)
	db.changed = make(chan struct{})
}

// querier is what a transaction runs statements on.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Tx is a transaction. Use it only inside the function passed to Update or View.
type Tx struct {
	q     querier
	clock clock.Clock
	write bool
	wrote bool
	// desired lists the clusters whose desired state this transaction
	// changed, with the new revision (0 for deleted), published on commit.
	desired map[string]int64
}

// Update runs fn in one write transaction (BEGIN IMMEDIATE) and commits when fn returns nil;
// otherwise it rolls back and returns fn's error. Waiters on Changed wake after a commit that
// changed something.
func (db *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	tx, err := db.run(ctx, "BEGIN IMMEDIATE", true, fn)
	if err != nil {
		return err
	}
	if tx.wrote {
		db.broadcast()
	}
	if len(tx.desired) > 0 {
		db.desired.publish(tx.desired)
	}
	return nil
}

// View runs fn in one read transaction, which sees a consistent snapshot.
func (db *DB) View(ctx context.Context, fn func(*Tx) error) error {
	_, err := db.run(ctx, "BEGIN", false, fn)
	return err
}

func (db *DB) run(ctx context.Context, begin string, write bool, fn func(*Tx) error) (tx *Tx, err error) {
	conn, err := db.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, begin); err != nil {
		return nil, fmt.Errorf("store: begin: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	tx = &Tx{q: conn, clock: db.clock, write: write}
	if err := fn(tx); err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		return nil, fmt.Errorf("store: commit: %w", err)
	}
	done = true
	return tx, nil
}

// Revision returns the current global revision.
func (tx *Tx) Revision(ctx context.Context) (int64, error) {
	return tx.meta(ctx, "revision")
}

func (tx *Tx) meta(ctx context.Context, key string) (int64, error) {
	var v int64
	if err := tx.q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: read %s: %w", key, err)
	}
	return v, nil
}

// next increments the global revision and returns the new value.
func (tx *Tx) next(ctx context.Context) (int64, error) {
	if !tx.write {
		return 0, errors.New("store: write in a read transaction")
	}
	var rev int64
	if err := tx.q.QueryRowContext(ctx, `UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("store: bump revision: %w", err)
	}
	tx.wrote = true
	return rev, nil
}

// Revision returns the current global revision.
func (db *DB) Revision(ctx context.Context) (rev int64, err error) {
	err = db.View(ctx, func(tx *Tx) error {
		rev, err = tx.Revision(ctx)
		return err
	})
	return rev, err
}
