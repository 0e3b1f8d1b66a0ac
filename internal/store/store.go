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

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

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
	// ErrUnavailable means the database could not serve the request now: it stayed locked
	// beyond the busy timeout, or no connection to it could be opened. Trying again later
	// may succeed.
	ErrUnavailable = errors.New("store unavailable")
)

// unavailable marks an SQLite error that may pass: errors.Is finds both it and
// ErrUnavailable.
type unavailable struct{ err error }

func (e *unavailable) Error() string   { return e.err.Error() }
func (e *unavailable) Unwrap() []error { return []error{e.err, ErrUnavailable} }

// classify marks err as ErrUnavailable when SQLite failed for want of a lock
// (SQLITE_BUSY, SQLITE_LOCKED) or of a file it could not open (SQLITE_CANTOPEN:
// the database opened at Open, so later this means the process ran out of file
// descriptors).
func classify(err error) error {
	var se *sqlite.Error
	if err == nil || errors.Is(err, ErrUnavailable) || !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff { // the primary result code, without the extended bits
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN:
		return &unavailable{err}
	}
	return err
}

// MaxConnections bounds the SQLite connections a DB keeps open; a request that
// finds them all busy waits for one. They stay open while idle: opening one costs
// more than most requests.
const MaxConnections = 16

// eventRetention is how many revisions of change log are kept for watches.
const eventRetention = 10000

// DB is an open store. It is safe for concurrent use.
type DB struct {
	db          *sql.DB
	clock       clock.Clock
	busyTimeout time.Duration
	// writeMu serialises this process's write transactions.
	writeMu sync.Mutex

	creds *credentialCache // cluster credentials recently looked up

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
	// 4: drift window reports, the newest DriftWindowRetention per cluster and deployment.
	// Times are Unix milliseconds; report is the agent's JSON.
	`CREATE TABLE drift_windows (
		id         INTEGER PRIMARY KEY,
		cluster    TEXT NOT NULL,
		deployment TEXT NOT NULL,
		version    TEXT NOT NULL,
		first      INTEGER NOT NULL,
		last       INTEGER NOT NULL,
		windows    INTEGER NOT NULL,
		started    INTEGER NOT NULL,
		ended      INTEGER NOT NULL,
		samples    INTEGER NOT NULL,
		verdict    TEXT NOT NULL,
		alarm      INTEGER NOT NULL,
		received   INTEGER NOT NULL,
		report     TEXT NOT NULL
	);
	CREATE INDEX drift_windows_newest ON drift_windows(deployment, cluster, ended);`,
	// 5: alert webhook messages waiting for their receivers; times are Unix milliseconds.
	`CREATE TABLE alerts (
		id           INTEGER PRIMARY KEY,
		url          TEXT NOT NULL,
		fingerprint  TEXT NOT NULL,
		status       TEXT NOT NULL,
		payload      TEXT NOT NULL,
		created      INTEGER NOT NULL,
		attempts     INTEGER NOT NULL,
		next_attempt INTEGER NOT NULL,
		last_error   TEXT NOT NULL
	);
	CREATE INDEX alerts_url ON alerts(url, id);`,
	// 6: notes from the edge (outbox records of kind note), in the order applied. The key is
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
	// 7: each cluster's public key for status bundles (recorded at join) and the sequence
	// number of the newest status bundle of it the hub imported.
	`CREATE TABLE cluster_bundle_keys (
		cluster    TEXT PRIMARY KEY,
		key        BLOB NOT NULL,
		status_seq INTEGER NOT NULL DEFAULT 0
	);`,
	// 8: each federated job's coordinator snapshot, written in the transaction of the message
	// or tick that made it; uid is the job's metadata.uid (a job deleted and created again
	// starts afresh) and seq counts the transitions applied.
	`CREATE TABLE fl_snapshots (
		job      TEXT PRIMARY KEY,
		uid      TEXT NOT NULL,
		seq      INTEGER NOT NULL,
		snapshot BLOB NOT NULL,
		updated  TEXT NOT NULL
	);`,
	// 9: each federated job's newest message to each cluster, written with its snapshot and
	// carried in the cluster's desired state.
	`CREATE TABLE fl_messages (
		job     TEXT NOT NULL,
		cluster TEXT NOT NULL,
		body    TEXT NOT NULL,
		PRIMARY KEY (job, cluster)
	);
	CREATE INDEX fl_messages_cluster ON fl_messages(cluster, job);`,
}

// Option configures a DB at Open.
type Option func(*DB)

// WithClock makes the store read the time (creation timestamps, update times) from c instead
// of the system clock.
func WithClock(c clock.Clock) Option {
	return func(db *DB) { db.clock = clock.OrReal(c) }
}

// DefaultBusyTimeout is how long a statement waits for a lock another connection holds
// before it fails, unless WithBusyTimeout says otherwise.
const DefaultBusyTimeout = 10 * time.Second

// WithBusyTimeout sets how long a statement waits for a lock another connection holds
// before it fails with SQLITE_BUSY; zero or less fails at once.
func WithBusyTimeout(d time.Duration) Option {
	return func(db *DB) { db.busyTimeout = max(d, 0) }
}

// Open opens or creates the SQLite database at path and applies pending migrations. The
// database runs in WAL mode with synchronous=FULL, foreign keys on and a busy timeout of
// DefaultBusyTimeout (WithBusyTimeout), over at most MaxConnections connections.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	db := &DB{clock: clock.Real(), busyTimeout: DefaultBusyTimeout, creds: newCredentialCache(DefaultCredentialCacheSize),
		changed: make(chan struct{}), desired: newDesiredWatch()}
	for _, o := range opts {
		o(db)
	}
	q := url.Values{}
	busy := fmt.Sprintf("busy_timeout(%d)", db.busyTimeout.Milliseconds())
	for _, p := range []string{busy, "journal_mode(WAL)", "foreign_keys(1)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	// The path is a URI's: '#', '?' and '%' in it are escaped, or SQLite would
	// open another file.
	sqldb, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	sqldb.SetMaxOpenConns(MaxConnections)
	sqldb.SetMaxIdleConns(MaxConnections)
	db.db = sqldb
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
	// creds lists the clusters whose credential this transaction changed,
	// forgotten by the credential cache once it ends.
	creds []string
}

// Update runs fn in one write transaction (BEGIN IMMEDIATE) and commits when fn returns nil;
// otherwise it rolls back and returns fn's error. An error wraps ErrUnavailable when the
// database stayed locked beyond the busy timeout or could not be opened. Waiters on Changed wake after a commit that
// changed something.
func (db *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	tx, err := db.run(ctx, "BEGIN IMMEDIATE", true, fn)
	if tx != nil && len(tx.creds) > 0 {
		// Whether or not it committed: forgetting a credential costs one read.
		db.creds.invalidate(tx.creds)
	}
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

// View runs fn in one read transaction, which sees a consistent snapshot. Its errors wrap
// ErrUnavailable as Update's do.
func (db *DB) View(ctx context.Context, fn func(*Tx) error) error {
	_, err := db.run(ctx, "BEGIN", false, fn)
	return err
}

// statement returns a read-only Tx outside any transaction, for a read that is
// one statement: SQLite runs each statement atomically, and a transaction
// around it costs two more statements.
func (db *DB) statement() *Tx { return &Tx{q: db.db, clock: db.clock} }

// run runs fn in a transaction begun with begin and returns the transaction, if
// one began, with fn's error or the commit's. Its errors wrap ErrUnavailable when
// SQLite could not get a lock or a connection (classify).
func (db *DB) run(ctx context.Context, begin string, write bool, fn func(*Tx) error) (*Tx, error) {
	tx, err := db.runTx(ctx, begin, write, fn)
	return tx, classify(err)
}

func (db *DB) runTx(ctx context.Context, begin string, write bool, fn func(*Tx) error) (tx *Tx, err error) {
	conn, err := db.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer conn.Close()
	done := false
	defer func() {
		if !done {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	// A failed BEGIN is rolled back too: the driver reports the context's end
	// for a BEGIN that ran, and the connection must not go back to the pool
	// inside a transaction.
	if _, err := conn.ExecContext(ctx, begin); err != nil {
		return nil, fmt.Errorf("store: begin: %w", err)
	}
	tx = &Tx{q: conn, clock: db.clock, write: write}
	if err := fn(tx); err != nil {
		return tx, err
	}
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		return tx, fmt.Errorf("store: commit: %w", err)
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
