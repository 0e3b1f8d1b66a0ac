package testenv

import (
	"database/sql"
	"testing"
)

// NoOpenTransaction takes n connections from db's pool at once (all it
// holds, when n is at least its open connections) and fails t unless each
// can begin a transaction: none was left inside one.
func NoOpenTransaction(t testing.TB, db *sql.DB, n int) {
	t.Helper()
	ctx := t.Context()
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.ExecContext(ctx, "BEGIN"); err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, n, err)
		}
		if _, err := c.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
	}
}
