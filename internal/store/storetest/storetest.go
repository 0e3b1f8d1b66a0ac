// Package storetest helps tests of the store and of what is built on it.
package storetest

import (
	"database/sql"
	"net/url"
	"testing"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, as the store's
)

// Lock holds the database at path locked from another connection, as
// another process (a backup, a sqlite3 shell) might, until the returned
// function is called. db (a store's DB.SQL) has its idle connections closed
// first: a connection open in WAL mode would keep the lock from being taken.
func Lock(t testing.TB, db *sql.DB, path string) (release func()) {
	t.Helper()
	db.SetMaxIdleConns(0)
	q := url.Values{"_pragma": {"busy_timeout(1000)"}}
	other, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{"PRAGMA locking_mode=EXCLUSIVE", "BEGIN EXCLUSIVE"} {
		if _, err := conn.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return func() {
		_, _ = conn.ExecContext(t.Context(), "COMMIT")
		conn.Close()
		other.Close()
	}
}
