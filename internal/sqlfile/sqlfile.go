// Package sqlfile opens the SQLite database files of an edge machine (the
// agent's state, the pipeline engine's runs) the one way they are opened:
// WAL mode, so that readers such as `outpost agent status` never wait for
// the writer; synchronous=FULL, so that a committed transaction survives a
// power cut; a busy timeout; and write transactions that begin IMMEDIATE,
// so that a second writer (another process) waits for the lock instead of
// failing a transaction that read first and writes second.
package sqlfile

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// BusyTimeout is how long, in milliseconds, a connection waits for a lock
// another holds before it fails.
const BusyTimeout = 10000

// Open opens (creating if absent) the database at path and runs schema,
// statements that must be idempotent (CREATE TABLE IF NOT EXISTS ...).
func Open(ctx context.Context, path, schema string) (*sql.DB, error) {
	q := url.Values{}
	for _, p := range []string{fmt.Sprintf("busy_timeout(%d)", BusyTimeout), "journal_mode(WAL)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: create schema: %w", path, err)
	}
	return db, nil
}

// Update runs fn in one write transaction of db, holding mu (which
// serialises the process's writers of the file) throughout: fn's changes
// are all committed, or, when it returns an error, none.
func Update(ctx context.Context, db *sql.DB, mu *sync.Mutex, fn func(*sql.Tx) error) error {
	mu.Lock()
	defer mu.Unlock()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
