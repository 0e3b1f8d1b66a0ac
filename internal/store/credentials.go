package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// JoinToken is a stored join token. The secret itself is never stored, only its hash.
type JoinToken struct {
	// ID identifies the token without revealing it.
	ID string
	// Hash is the SHA-256 hash of the secret.
	Hash [32]byte
	// Description says what the token is for.
	Description string
	// Created and Expires bound the token's life.
	Created, Expires time.Time
}

const timeFormat = time.RFC3339Nano

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeFormat, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: stored time %q: %w", s, err)
	}
	return t, nil
}

// AddJoinToken stores a join token. Its ID must be new.
func (tx *Tx) AddJoinToken(ctx context.Context, t JoinToken) error {
	if !tx.write {
		return errors.New("store: write in a read transaction")
	}
	_, err := tx.q.ExecContext(ctx, `INSERT INTO join_tokens(id, hash, description, created, expires) VALUES (?, ?, ?, ?, ?)`,
		t.ID, t.Hash[:], t.Description, formatTime(t.Created), formatTime(t.Expires))
	if err != nil {
		return fmt.Errorf("store: add join token %s: %w", t.ID, err)
	}
	return nil
}

// JoinTokenByHash returns the join token whose secret has hash h, or an error wrapping ErrNotFound.
func (tx *Tx) JoinTokenByHash(ctx context.Context, h [32]byte) (JoinToken, error) {
	row := tx.q.QueryRowContext(ctx, `SELECT id, hash, description, created, expires FROM join_tokens WHERE hash = ?`, h[:])
	t, err := scanJoinToken(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return JoinToken{}, fmt.Errorf("join token: %w", ErrNotFound)
	}
	return t, err
}

// JoinTokens returns every stored join token, oldest first.
func (tx *Tx) JoinTokens(ctx context.Context) ([]JoinToken, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT id, hash, description, created, expires FROM join_tokens ORDER BY created, rowid`)
	if err != nil {
		return nil, fmt.Errorf("store: list join tokens: %w", err)
	}
	defer rows.Close()
	var out []JoinToken
	for rows.Next() {
		t, err := scanJoinToken(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// DeleteJoinToken removes the join token with id, or returns an error wrapping ErrNotFound.
func (tx *Tx) DeleteJoinToken(ctx context.Context, id string) error {
	res, err := tx.q.ExecContext(ctx, `DELETE FROM join_tokens WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("store: delete join token %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("join token %q: %w", id, ErrNotFound)
	}
	return nil
}

// DeleteJoinTokensExpiredBefore removes the join tokens that expired before t.
func (tx *Tx) DeleteJoinTokensExpiredBefore(ctx context.Context, t time.Time) error {
	// RFC 3339 UTC timestamps with the same layout sort as strings only when their fractional
	// parts have the same length, which RFC3339Nano does not promise; compare parsed times.
	toks, err := tx.JoinTokens(ctx)
	if err != nil {
		return err
	}
	for _, jt := range toks {
		if jt.Expires.Before(t) {
			if err := tx.DeleteJoinToken(ctx, jt.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

func scanJoinToken(scan func(dest ...any) error) (JoinToken, error) {
	var t JoinToken
	var hash []byte
	var created, expires string
	if err := scan(&t.ID, &hash, &t.Description, &created, &expires); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return t, err
		}
		return t, fmt.Errorf("store: read join token: %w", err)
	}
	if len(hash) != len(t.Hash) {
		return t, fmt.Errorf("store: join token %s: stored hash has %d bytes", t.ID, len(hash))
	}
	copy(t.Hash[:], hash)
	var err error
	if t.Created, err = parseTime(created); err != nil {
		return t, err
	}
	if t.Expires, err = parseTime(expires); err != nil {
		return t, err
	}
	return t, nil
}

// SetClusterCredential makes the credential with hash h the only one of cluster, replacing
// any earlier one.
func (tx *Tx) SetClusterCredential(ctx context.Context, cluster string, h [32]byte, now time.Time) error {
	if !tx.write {
		return errors.New("store: write in a read transaction")
	}
	_, err := tx.q.ExecContext(ctx, `INSERT INTO cluster_credentials(cluster, hash, created) VALUES (?, ?, ?)
		ON CONFLICT(cluster) DO UPDATE SET hash = excluded.hash, created = excluded.created`,
		cluster, h[:], formatTime(now))
	tx.creds = append(tx.creds, cluster)
	if err != nil {
		return fmt.Errorf("store: set credential of cluster %q: %w", cluster, err)
	}
	return nil
}

// DeleteClusterCredential removes the credential of cluster, if it has one.
func (tx *Tx) DeleteClusterCredential(ctx context.Context, cluster string) error {
	if !tx.write {
		return errors.New("store: write in a read transaction")
	}
	tx.creds = append(tx.creds, cluster)
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM cluster_credentials WHERE cluster = ?`, cluster); err != nil {
		return fmt.Errorf("store: delete credential of cluster %q: %w", cluster, err)
	}
	return nil
}

// HasClusterCredential reports whether cluster has a credential.
func (tx *Tx) HasClusterCredential(ctx context.Context, cluster string) (bool, error) {
	var n int
	if err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM cluster_credentials WHERE cluster = ?`, cluster).Scan(&n); err != nil {
		return false, fmt.Errorf("store: look up credential of cluster %q: %w", cluster, err)
	}
	return n > 0, nil
}

// ClusterForCredential returns the cluster whose credential has hash h; ok is false when
// none has. It implements auth.ClusterCredentials. An error wraps ErrUnavailable when the
// database could not be read now.
//
// This runs for every request an agent makes, so known credentials are remembered
// (WithCredentialCache): a credential that was rotated or deleted is forgotten as the
// change commits, and stops working at once.
func (db *DB) ClusterForCredential(ctx context.Context, h [32]byte) (cluster string, ok bool, err error) {
	cluster, ok, gen := db.creds.get(h)
	if ok {
		return cluster, true, nil
	}
	// One indexed read, outside a transaction.
	err = db.db.QueryRowContext(ctx, `SELECT cluster FROM cluster_credentials WHERE hash = ?`, h[:]).Scan(&cluster)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, classify(fmt.Errorf("store: look up cluster credential: %w", err))
	}
	db.creds.add(h, cluster, gen)
	return cluster, true, nil
}

// JoinTokens returns every stored join token, oldest first.
func (db *DB) JoinTokens(ctx context.Context) (toks []JoinToken, err error) {
	err = db.View(ctx, func(tx *Tx) error {
		toks, err = tx.JoinTokens(ctx)
		return err
	})
	return toks, err
}
