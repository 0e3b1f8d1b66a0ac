package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// schema holds the registry's metadata tables. Blob and manifest bytes live in the OCI layout on disk;
// these tables say which repository links which content.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS reg_repositories (
		name TEXT PRIMARY KEY,
		created_at INTEGER NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS reg_blobs (
		repo TEXT NOT NULL,
		digest TEXT NOT NULL,
		size INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (repo, digest)
	)`,
	`CREATE INDEX IF NOT EXISTS reg_blobs_digest ON reg_blobs (digest)`,
	`CREATE TABLE IF NOT EXISTS reg_manifests (
		repo TEXT NOT NULL,
		digest TEXT NOT NULL,
		media_type TEXT NOT NULL,
		artifact_type TEXT NOT NULL DEFAULT '',
		subject TEXT NOT NULL DEFAULT '',
		size INTEGER NOT NULL,
		annotations TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		PRIMARY KEY (repo, digest)
	)`,
	`CREATE INDEX IF NOT EXISTS reg_manifests_digest ON reg_manifests (digest)`,
	`CREATE TABLE IF NOT EXISTS reg_tags (
		repo TEXT NOT NULL,
		tag TEXT NOT NULL,
		digest TEXT NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (repo, tag)
	)`,
	`CREATE INDEX IF NOT EXISTS reg_tags_digest ON reg_tags (repo, digest)`,
	`CREATE TABLE IF NOT EXISTS reg_referrers (
		repo TEXT NOT NULL,
		subject TEXT NOT NULL,
		digest TEXT NOT NULL,
		PRIMARY KEY (repo, subject, digest)
	)`,
	// A tombstone remembers what a deleted tag named, so that a tag policy can refuse to give
	// the name to other content.
	`CREATE TABLE IF NOT EXISTS reg_tombstones (
		repo TEXT NOT NULL,
		tag TEXT NOT NULL,
		digest TEXT NOT NULL,
		deleted_at INTEGER NOT NULL,
		PRIMARY KEY (repo, tag)
	)`,
	// updated_at is when bytes were last written to the session (0 for none yet).
	`CREATE TABLE IF NOT EXISTS reg_uploads (
		id TEXT PRIMARY KEY,
		repo TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL DEFAULT 0
	)`,
}

func (reg *Registry) migrate(ctx context.Context) error {
	for _, stmt := range schema {
		if _, err := reg.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create registry schema: %w", err)
		}
	}
	// Tables made before sessions recorded their last write.
	var n int
	if err := reg.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_table_info('reg_uploads') WHERE name = 'updated_at'`).Scan(&n); err != nil {
		return fmt.Errorf("inspect registry schema: %w", err)
	}
	if n == 0 {
		if _, err := reg.db.ExecContext(ctx, `ALTER TABLE reg_uploads ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0`); err != nil {
			return fmt.Errorf("migrate registry schema: %w", err)
		}
	}
	return nil
}

// querier is what *sql.DB and *sql.Conn have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// withTx runs fn in a write transaction started with BEGIN IMMEDIATE, so that concurrent writers wait on the
// busy timeout instead of failing to upgrade a read lock. reg.mu serialises the registry's own writers.
func (reg *Registry) withTx(ctx context.Context, fn func(q querier) error) (err error) {
	conn, err := reg.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("registry db conn: %w", err)
	}
	defer conn.Close()
	defer func() {
		if err != nil {
			// Use a fresh context: a cancelled request must still roll back,
			// and so must a failed BEGIN: the driver reports the context's end
			// for a BEGIN that ran.
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("registry db begin: %w", err)
	}
	if err = fn(conn); err != nil {
		return err
	}
	// fn succeeded: commit even if ctx ended meanwhile, as the store does.
	if _, err = conn.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		return fmt.Errorf("registry db commit: %w", err)
	}
	return nil
}

// now is the registry clock's time in Unix milliseconds, as the tables store it.
func (reg *Registry) now() int64 { return reg.clock.Now().UnixMilli() }

func (reg *Registry) ensureRepo(ctx context.Context, q querier, repo string) error {
	_, err := q.ExecContext(ctx, `INSERT INTO reg_repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, repo, reg.now())
	if err != nil {
		return fmt.Errorf("insert repository: %w", err)
	}
	return nil
}

func repoExists(ctx context.Context, q querier, repo string) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM reg_repositories WHERE name = ?`, repo).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("query repository: %w", err)
	}
	return true, nil
}

// blobLinked returns the size of blob d linked in repo, or ErrNotFound.
func blobLinked(ctx context.Context, q querier, repo, d string) (int64, error) {
	var size int64
	err := q.QueryRowContext(ctx, `SELECT size FROM reg_blobs WHERE repo = ? AND digest = ?`, repo, d).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("query blob link: %w", err)
	}
	return size, nil
}

func (reg *Registry) linkBlob(ctx context.Context, q querier, repo, d string, size int64) error {
	if err := reg.ensureRepo(ctx, q, repo); err != nil {
		return err
	}
	_, err := q.ExecContext(ctx, `INSERT INTO reg_blobs (repo, digest, size, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (repo, digest) DO NOTHING`, repo, d, size, reg.now())
	if err != nil {
		return fmt.Errorf("link blob: %w", err)
	}
	return nil
}

// contentReferenced reports whether any repository still links d as a blob or a manifest.
func contentReferenced(ctx context.Context, q querier, d string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM reg_blobs WHERE digest = ?) + (SELECT COUNT(*) FROM reg_manifests WHERE digest = ?)`, d, d).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("count references: %w", err)
	}
	return n > 0, nil
}

// buryTags records tombstones for tags of repo that named d and are being deleted.
func (reg *Registry) buryTags(ctx context.Context, q querier, repo string, d digest.Digest, tags ...string) error {
	for _, t := range tags {
		if _, err := q.ExecContext(ctx, `INSERT INTO reg_tombstones (repo, tag, digest, deleted_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, deleted_at = excluded.deleted_at`,
			repo, t, d.String(), reg.now()); err != nil {
			return wrapDB("record tombstone", err)
		}
	}
	return nil
}

// tombstone returns what tag of repo named when it was last deleted, or ErrNotFound.
func tombstone(ctx context.Context, q querier, repo, tag string) (Tombstone, error) {
	var d string
	var at int64
	err := q.QueryRowContext(ctx, `SELECT digest, deleted_at FROM reg_tombstones WHERE repo = ? AND tag = ?`, repo, tag).Scan(&d, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return Tombstone{}, ErrNotFound
	}
	if err != nil {
		return Tombstone{}, wrapDB("query tombstone", err)
	}
	return Tombstone{Digest: digest.Digest(d), Deleted: time.UnixMilli(at).UTC()}, nil
}
