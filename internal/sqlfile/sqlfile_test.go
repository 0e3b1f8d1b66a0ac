package sqlfile

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	// A path with characters a URL gives meaning to still names the file.
	path := filepath.Join(t.TempDir(), "state?#1.db")
	db, err := Open(t.Context(), path, `CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)`)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, p := range []struct{ pragma, want string }{{"journal_mode", "wal"}, {"synchronous", "2"}, {"busy_timeout", "10000"}} {
		var got string
		if err := db.QueryRowContext(t.Context(), "PRAGMA "+p.pragma).Scan(&got); err != nil || got != p.want {
			t.Errorf("PRAGMA %s = %q, %v; want %q", p.pragma, got, err, p.want)
		}
	}
	if _, err := db.ExecContext(t.Context(), `INSERT INTO kv VALUES ('a', 'b')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Opening again runs the schema again: it must be idempotent, and the row is there.
	db, err = Open(t.Context(), path, `CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)`)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRowContext(t.Context(), `SELECT v FROM kv WHERE k = 'a'`).Scan(&v); err != nil || v != "b" {
		t.Fatalf("row after reopening: %q, %v", v, err)
	}
	if _, err := Open(t.Context(), filepath.Join(t.TempDir(), "x.db"), `CREATE TABLE broken (`); err == nil || !strings.Contains(err.Error(), "create schema") {
		t.Fatalf("a bad schema: %v", err)
	}
}
