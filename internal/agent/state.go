package agent

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/sqlfile"
)

// schema is the agent database, version 1. Every state change runs in one
// transaction, so a crash leaves all of a change or none of it.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
	name            TEXT PRIMARY KEY,
	model           TEXT NOT NULL,
	desired         TEXT NOT NULL,            -- DesiredModel JSON
	desired_version TEXT NOT NULL,
	desired_digest  TEXT NOT NULL,
	active_version  TEXT NOT NULL DEFAULT '',
	active_digest   TEXT NOT NULL DEFAULT '',
	active_model    TEXT NOT NULL DEFAULT '',
	activated_at    TEXT NOT NULL DEFAULT '',
	downgraded_from TEXT NOT NULL DEFAULT '',
	phase           TEXT NOT NULL,
	bytes_fetched   INTEGER NOT NULL DEFAULT 0,
	bytes_total     INTEGER NOT NULL DEFAULT 0,
	error           TEXT NOT NULL DEFAULT '',
	updated_at      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
	seq            INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment     TEXT NOT NULL,
	model          TEXT NOT NULL,
	version        TEXT NOT NULL,
	digest         TEXT NOT NULL,
	activated_at   TEXT NOT NULL,
	deactivated_at TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS history_deployment ON history(deployment, seq);
CREATE TABLE IF NOT EXISTS manifests (
	digest             TEXT PRIMARY KEY,
	model              TEXT NOT NULL,
	version            TEXT NOT NULL,
	size               INTEGER NOT NULL,     -- manifest bytes
	files_size         INTEGER NOT NULL,     -- sum of file sizes
	config_digest      TEXT NOT NULL,
	chunk_index_digest TEXT NOT NULL DEFAULT '',
	signature_digest   TEXT NOT NULL DEFAULT '',
	signature_key      TEXT NOT NULL DEFAULT '',
	cached_at          TEXT NOT NULL,
	profile_digest     TEXT NOT NULL DEFAULT '', -- the verified reference profile blob
	profile_error      TEXT NOT NULL DEFAULT ''  -- why the version's reference profile is unusable
);
CREATE TABLE IF NOT EXISTS files (
	manifest TEXT NOT NULL,
	path     TEXT NOT NULL,
	digest   TEXT NOT NULL,
	size     INTEGER NOT NULL,
	PRIMARY KEY (manifest, path)
);
CREATE INDEX IF NOT EXISTS files_digest ON files(digest);
-- The session of each blob upload under way (models produced here), so that
-- an upload cut by the link or a restart resumes where the hub stopped.
CREATE TABLE IF NOT EXISTS uploads (
	repo     TEXT NOT NULL,
	digest   TEXT NOT NULL,
	location TEXT NOT NULL,
	PRIMARY KEY (repo, digest)
);
`

// Meta keys.
const (
	metaCluster         = "cluster"
	metaHub             = "hub"
	metaAppliedRevision = "applied_revision"
	metaAppliedDoc      = "applied_doc"
	metaRejectedStale   = "rejected_stale"
	metaLastRejection   = "last_rejection"
	metaLastContact     = "last_contact"
)

// stateDB is the agent's SQLite database.
type stateDB struct {
	db *sql.DB
	// writeMu serialises this process's write transactions.
	writeMu sync.Mutex
}

// openState opens (creating if absent) the agent database at path, as
// internal/sqlfile opens it: `outpost agent status` reads it while the agent
// writes, and another process writing it (`outpost agent outbox put`) waits
// for the lock.
func openState(ctx context.Context, path string) (*stateDB, error) {
	db, err := sqlfile.Open(ctx, path, schema)
	if err != nil {
		return nil, err
	}
	if err := addColumns(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &stateDB{db: db}, nil
}

// addedColumns are the columns added to tables after their first release,
// with their definitions: a database made before gets them on open.
var addedColumns = []struct{ table, column, def string }{
	{"manifests", "profile_digest", "TEXT NOT NULL DEFAULT ''"},
	{"manifests", "profile_error", "TEXT NOT NULL DEFAULT ''"},
	{"deployments", "active_local", "INTEGER NOT NULL DEFAULT 0"},
	{"deployments", "active_variant", "TEXT NOT NULL DEFAULT ''"},
}

// addColumns adds the columns of addedColumns a database lacks.
func addColumns(ctx context.Context, db *sql.DB) error {
	for _, c := range addedColumns {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, c.table, c.column).Scan(&n); err != nil {
			return fmt.Errorf("schema: %s.%s: %w", c.table, c.column, err)
		}
		if n > 0 {
			continue
		}
		if _, err := db.ExecContext(ctx, `ALTER TABLE `+c.table+` ADD COLUMN `+c.column+` `+c.def); err != nil {
			// Another process (a status reader) may have added it meanwhile.
			if err2 := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, c.table, c.column).Scan(&n); err2 == nil && n > 0 {
				continue
			}
			return fmt.Errorf("schema: add %s.%s: %w", c.table, c.column, err)
		}
	}
	return nil
}

func (s *stateDB) Close() error { return s.db.Close() }

// privateDir makes dir, or makes an existing dir, readable by its owner
// alone: it holds the credential and the state.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// openPrivateState is openState for the agent itself: the database is
// created 0600 before SQLite opens it, so that SQLite gives its WAL and
// shared-memory files the same mode, and files an older agent left more
// open are made 0600.
func openPrivateState(ctx context.Context, path string) (*stateDB, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	return openState(ctx, path)
}

// update runs fn in one write transaction.
func (s *stateDB) update(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return sqlfile.Update(ctx, s.db, &s.writeMu, fn)
}

// view runs fn in one read transaction, which sees a consistent snapshot.
func (s *stateDB) view(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("state: begin: %w", err)
	}
	defer tx.Rollback()
	return fn(tx)
}

type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getMeta(ctx context.Context, q queryer, key string) (string, error) {
	var v string
	err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("state: read %s: %w", key, err)
	}
	return v, nil
}

func getMetaInt(ctx context.Context, q queryer, key string) (int64, error) {
	v, err := getMeta(ctx, q, key)
	if err != nil || v == "" {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("state: %s is %q: %w", key, v, err)
	}
	return n, nil
}

func setMeta(ctx context.Context, q queryer, key, value string) error {
	_, err := q.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("state: write %s: %w", key, err)
	}
	return nil
}

func (s *stateDB) meta(ctx context.Context, key string) (string, error) {
	return getMeta(ctx, s.db, key)
}

func (s *stateDB) setMeta(ctx context.Context, key, value string) error {
	return s.update(ctx, func(tx *sql.Tx) error { return setMeta(ctx, tx, key, value) })
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// deploymentRow is one deployment's row.
type deploymentRow struct {
	Name           string
	Desired        v1alpha1.DesiredModel
	ActiveModel    string
	ActiveVersion  string
	ActiveDigest   string
	ActiveVariant  string // the variant of ActiveVersion; empty for the full model
	ActiveLocal    bool
	ActivatedAt    time.Time
	DowngradedFrom string
	Phase          v1alpha1.ClusterPhase
	BytesFetched   int64
	BytesTotal     int64
	Error          string
	UpdatedAt      time.Time
}

func (r deploymentRow) deployed() Deployed {
	return Deployed{Model: r.ActiveModel, Version: r.ActiveVersion, Digest: r.ActiveDigest, Local: r.ActiveLocal}
}

const deploymentCols = `name, desired, active_model, active_version, active_digest, active_variant, active_local, activated_at,
	downgraded_from, phase, bytes_fetched, bytes_total, error, updated_at`

func scanDeployment(sc interface{ Scan(...any) error }) (deploymentRow, error) {
	var r deploymentRow
	var desired, activatedAt, phase, updated string
	if err := sc.Scan(&r.Name, &desired, &r.ActiveModel, &r.ActiveVersion, &r.ActiveDigest, &r.ActiveVariant, &r.ActiveLocal, &activatedAt,
		&r.DowngradedFrom, &phase, &r.BytesFetched, &r.BytesTotal, &r.Error, &updated); err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(desired), &r.Desired); err != nil {
		return r, fmt.Errorf("state: deployment %s: %w", r.Name, err)
	}
	r.ActivatedAt, r.UpdatedAt, r.Phase = parseTime(activatedAt), parseTime(updated), v1alpha1.ClusterPhase(phase)
	return r, nil
}

func listDeployments(ctx context.Context, q queryer) ([]deploymentRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+deploymentCols+` FROM deployments ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("state: list deployments: %w", err)
	}
	defer rows.Close()
	var out []deploymentRow
	for rows.Next() {
		r, err := scanDeployment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func getDeployment(ctx context.Context, q queryer, name string) (deploymentRow, bool, error) {
	r, err := scanDeployment(q.QueryRowContext(ctx, `SELECT `+deploymentCols+` FROM deployments WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("state: deployment %s: %w", name, err)
	}
	return r, true, nil
}

func (s *stateDB) deployments(ctx context.Context) ([]deploymentRow, error) {
	return listDeployments(ctx, s.db)
}

// applied loads what the guard needs.
func (s *stateDB) applied(ctx context.Context) (Applied, error) {
	a := Applied{Active: map[string]Deployed{}}
	err := s.view(ctx, func(tx *sql.Tx) error {
		var err error
		if a.Cluster, err = getMeta(ctx, tx, metaCluster); err != nil {
			return err
		}
		if a.Revision, err = getMetaInt(ctx, tx, metaAppliedRevision); err != nil {
			return err
		}
		rows, err := listDeployments(ctx, tx)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if r.ActiveDigest != "" {
				a.Active[r.Name] = r.deployed()
			}
		}
		return nil
	})
	return a, err
}

// applyResult says what applyDoc did.
type applyResult struct {
	Decision Decision
	// RejectedStale is the count after the call.
	RejectedStale int64
}

// applyDoc runs the guard against the stored state and records the outcome
// in one transaction: a stale document only bumps the rejected count; a
// newer one becomes the applied revision and sets every deployment's
// desired version, refusing downgrades and deactivating removed deployments.
func (s *stateDB) applyDoc(ctx context.Context, doc *v1alpha1.DesiredState, src Source, now time.Time) (applyResult, error) {
	var res applyResult
	err := s.update(ctx, func(tx *sql.Tx) error {
		var applied Applied
		var err error
		if applied.Cluster, err = getMeta(ctx, tx, metaCluster); err != nil {
			return err
		}
		if applied.Revision, err = getMetaInt(ctx, tx, metaAppliedRevision); err != nil {
			return err
		}
		rows, err := listDeployments(ctx, tx)
		if err != nil {
			return err
		}
		applied.Active = map[string]Deployed{}
		existing := map[string]deploymentRow{}
		for _, r := range rows {
			existing[r.Name] = r
			if r.ActiveDigest != "" {
				applied.Active[r.Name] = r.deployed()
			}
		}
		d := Decide(applied, doc, src)
		res.Decision = d
		if res.RejectedStale, err = getMetaInt(ctx, tx, metaRejectedStale); err != nil {
			return err
		}
		switch d.Verdict {
		case RejectStale:
			res.RejectedStale++
			if err := setMeta(ctx, tx, metaRejectedStale, strconv.FormatInt(res.RejectedStale, 10)); err != nil {
				return err
			}
			return setMeta(ctx, tx, metaLastRejection, formatTime(now)+" "+d.Reason)
		case RejectInvalid:
			return setMeta(ctx, tx, metaLastRejection, formatTime(now)+" "+d.Reason)
		case Unchanged:
			return nil
		}
		b, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		if err := setMeta(ctx, tx, metaAppliedRevision, strconv.FormatInt(doc.Revision, 10)); err != nil {
			return err
		}
		if err := setMeta(ctx, tx, metaAppliedDoc, string(b)); err != nil {
			return err
		}
		// Deployments that have nothing active and are no longer desired are simply dropped.
		wanted := map[string]bool{}
		for _, m := range doc.Models {
			wanted[m.Deployment] = true
		}
		for name, r := range existing {
			if !wanted[name] && r.ActiveDigest == "" {
				if _, err := tx.ExecContext(ctx, `DELETE FROM deployments WHERE name = ?`, name); err != nil {
					return fmt.Errorf("state: drop deployment %s: %w", name, err)
				}
			}
		}
		for _, p := range d.Plans {
			if err := applyPlan(ctx, tx, p, existing[p.Deployment], now); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

// applyPlan records one deployment's plan.
func applyPlan(ctx context.Context, tx *sql.Tx, p ModelPlan, old deploymentRow, now time.Time) error {
	ts := formatTime(now)
	if p.Step == StepRemove {
		if _, err := tx.ExecContext(ctx, `UPDATE history SET deactivated_at = ?
			WHERE deployment = ? AND digest = ? AND deactivated_at = ''`, ts, p.Deployment, p.Active.Digest); err != nil {
			return fmt.Errorf("state: deactivate %s: %w", p.Deployment, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM deployments WHERE name = ?`, p.Deployment); err != nil {
			return fmt.Errorf("state: remove deployment %s: %w", p.Deployment, err)
		}
		return nil
	}
	desired, err := json.Marshal(p.Want)
	if err != nil {
		return err
	}
	phase, errText := v1alpha1.PhasePending, ""
	fetched, total := int64(0), int64(0)
	switch p.Step {
	case StepNone, StepKeepLocal:
		phase = v1alpha1.PhaseActive
	case StepRefuse:
		phase, errText = v1alpha1.PhaseFailed, p.Error
	case StepFetch:
		if old.Desired.Digest == p.Want.Digest {
			// Same target as before: keep the progress made so far.
			fetched, total = old.BytesFetched, old.BytesTotal
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO deployments(name, model, desired, desired_version, desired_digest,
			phase, bytes_fetched, bytes_total, error, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET model = excluded.model, desired = excluded.desired,
			desired_version = excluded.desired_version, desired_digest = excluded.desired_digest,
			phase = excluded.phase, bytes_fetched = excluded.bytes_fetched, bytes_total = excluded.bytes_total,
			error = excluded.error, updated_at = excluded.updated_at`,
		p.Deployment, p.Want.Model, string(desired), p.Want.Version, p.Want.Digest,
		string(phase), fetched, total, errText, ts)
	if err != nil {
		return fmt.Errorf("state: set deployment %s: %w", p.Deployment, err)
	}
	return nil
}

// setProgress records a deployment's phase, progress and error, if its
// desired digest is still wantDigest (a superseded worker changes nothing).
func (s *stateDB) setProgress(ctx context.Context, dep, wantDigest string, phase v1alpha1.ClusterPhase, fetched, total int64, errText string, now time.Time) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE deployments SET phase = ?, bytes_fetched = ?, bytes_total = ?, error = ?, updated_at = ?
			WHERE name = ? AND desired_digest = ? AND (active_digest != desired_digest OR ? = 'Active')`,
			string(phase), fetched, total, errText, formatTime(now), dep, wantDigest, string(phase))
		if err != nil {
			return fmt.Errorf("state: progress of %s: %w", dep, err)
		}
		return nil
	})
}

// errSuperseded means a deployment's desired version changed while it was being fetched.
var errSuperseded = errors.New("desired version changed")

// activate switches a deployment's active version to want in one
// transaction, after the caller verified every file of want in the cache.
// It re-applies the guard against the active version at that moment, and
// records the version in the deployment's history. It returns the version
// replaced when the switch was a downgrade.
func (s *stateDB) activate(ctx context.Context, want v1alpha1.DesiredModel, now time.Time) (downgradedFrom string, err error) {
	err = s.update(ctx, func(tx *sql.Tx) error {
		r, ok, err := getDeployment(ctx, tx, want.Deployment)
		if err != nil {
			return err
		}
		if !ok || r.Desired.Digest != want.Digest {
			return errSuperseded
		}
		p := PlanModel(r.deployed(), r.Desired)
		switch p.Step {
		case StepNone:
			return nil
		case StepRefuse:
			return errors.New(p.Error)
		case StepKeepLocal:
			return fmt.Errorf("the version %s produced on this cluster stays active", r.ActiveVersion)
		}
		if p.Downgrade {
			downgradedFrom = r.ActiveVersion
		}
		ts := formatTime(now)
		if err := recordActivation(ctx, tx, r, want.Model, want.Version, want.Digest, ts); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE deployments SET active_model = ?, active_version = ?, active_digest = ?,
				active_variant = ?, activated_at = ?, downgraded_from = ?, phase = ?, error = '', bytes_fetched = bytes_total,
				updated_at = ?, active_local = 0
			WHERE name = ?`, want.Model, want.Version, want.Digest, activeVariant(want.Variant), ts, downgradedFrom,
			string(v1alpha1.PhaseActive), ts, r.Name)
		if err != nil {
			return fmt.Errorf("state: activate %s: %w", r.Name, err)
		}
		return nil
	})
	return downgradedFrom, err
}

// recordActivation closes the history entry of r's active version, if any,
// and opens one for model@version (digest), activated at ts.
func recordActivation(ctx context.Context, tx *sql.Tx, r deploymentRow, model, version, digest, ts string) error {
	if r.ActiveDigest != "" {
		if _, err := tx.ExecContext(ctx, `UPDATE history SET deactivated_at = ?
			WHERE deployment = ? AND digest = ? AND deactivated_at = ''`, ts, r.Name, r.ActiveDigest); err != nil {
			return fmt.Errorf("state: history of %s: %w", r.Name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO history(deployment, model, version, digest, activated_at)
		VALUES (?, ?, ?, ?, ?)`, r.Name, model, version, digest, ts); err != nil {
		return fmt.Errorf("state: history of %s: %w", r.Name, err)
	}
	return nil
}

// historyEntry is one activation of a version by a deployment.
type historyEntry struct {
	Deployment, Model, Version, Digest string
	ActivatedAt, DeactivatedAt         time.Time
}

// history lists every deployment's activations, newest first.
func (s *stateDB) history(ctx context.Context) ([]historyEntry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT deployment, model, version, digest, activated_at, deactivated_at
		FROM history ORDER BY seq DESC`)
	if err != nil {
		return nil, fmt.Errorf("state: history: %w", err)
	}
	defer rows.Close()
	var out []historyEntry
	for rows.Next() {
		var h historyEntry
		var a, d string
		if err := rows.Scan(&h.Deployment, &h.Model, &h.Version, &h.Digest, &a, &d); err != nil {
			return nil, err
		}
		h.ActivatedAt, h.DeactivatedAt = parseTime(a), parseTime(d)
		out = append(out, h)
	}
	return out, rows.Err()
}

// manifestRecord is a manifest held in the cache.
type manifestRecord struct {
	Digest           string
	Model, Version   string
	Size             int64
	FilesSize        int64
	ConfigDigest     string
	ChunkIndexDigest string
	SignatureDigest  string
	SignatureKey     string
	CachedAt         time.Time
	// ProfileDigest is the verified reference profile blob, if any, and
	// ProfileError why the version's reference profile is unusable.
	ProfileDigest string
	ProfileError  string
	Files         []fileRecord
}

// fileRecord is one file of a cached manifest.
type fileRecord struct {
	Path   string
	Digest string
	Size   int64
}

// putManifest records a manifest and its files (replacing an earlier record).
func (s *stateDB) putManifest(ctx context.Context, m manifestRecord) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO manifests(digest, model, version, size, files_size, config_digest,
				chunk_index_digest, signature_digest, signature_key, cached_at, profile_digest, profile_error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(digest) DO UPDATE SET chunk_index_digest = excluded.chunk_index_digest,
				signature_digest = excluded.signature_digest, signature_key = excluded.signature_key,
				profile_digest = excluded.profile_digest, profile_error = excluded.profile_error`,
			m.Digest, m.Model, m.Version, m.Size, m.FilesSize, m.ConfigDigest, m.ChunkIndexDigest,
			m.SignatureDigest, m.SignatureKey, formatTime(m.CachedAt), m.ProfileDigest, m.ProfileError)
		if err != nil {
			return fmt.Errorf("state: put manifest %s: %w", m.Digest, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM files WHERE manifest = ?`, m.Digest); err != nil {
			return err
		}
		for _, f := range m.Files {
			if _, err := tx.ExecContext(ctx, `INSERT INTO files(manifest, path, digest, size) VALUES (?, ?, ?, ?)`,
				m.Digest, f.Path, f.Digest, f.Size); err != nil {
				return fmt.Errorf("state: put manifest %s: %w", m.Digest, err)
			}
		}
		return nil
	})
}

// manifests lists every cached manifest with its files.
func (s *stateDB) manifests(ctx context.Context) ([]manifestRecord, error) {
	var out []manifestRecord
	err := s.view(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT digest, model, version, size, files_size, config_digest,
			chunk_index_digest, signature_digest, signature_key, cached_at, profile_digest, profile_error
			FROM manifests ORDER BY model, version, digest`)
		if err != nil {
			return fmt.Errorf("state: manifests: %w", err)
		}
		idx := map[string]int{}
		for rows.Next() {
			var m manifestRecord
			var cached string
			if err := rows.Scan(&m.Digest, &m.Model, &m.Version, &m.Size, &m.FilesSize, &m.ConfigDigest,
				&m.ChunkIndexDigest, &m.SignatureDigest, &m.SignatureKey, &cached, &m.ProfileDigest, &m.ProfileError); err != nil {
				rows.Close()
				return err
			}
			m.CachedAt = parseTime(cached)
			idx[m.Digest] = len(out)
			out = append(out, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		frows, err := tx.QueryContext(ctx, `SELECT manifest, path, digest, size FROM files ORDER BY manifest, path`)
		if err != nil {
			return fmt.Errorf("state: files: %w", err)
		}
		defer frows.Close()
		for frows.Next() {
			var man string
			var f fileRecord
			if err := frows.Scan(&man, &f.Path, &f.Digest, &f.Size); err != nil {
				return err
			}
			if i, ok := idx[man]; ok {
				out[i].Files = append(out[i].Files, f)
			}
		}
		return frows.Err()
	})
	return out, err
}

// manifest returns one cached manifest record.
func (s *stateDB) manifest(ctx context.Context, dg string) (manifestRecord, bool, error) {
	all, err := s.manifests(ctx)
	if err != nil {
		return manifestRecord{}, false, err
	}
	for _, m := range all {
		if m.Digest == dg {
			return m, true, nil
		}
	}
	return manifestRecord{}, false, nil
}

// setProfile records a cached manifest's reference profile blob and why
// its profile is unusable (empty when it is not).
func (s *stateDB) setProfile(ctx context.Context, manifest, profile, why string) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE manifests SET profile_digest = ?, profile_error = ? WHERE digest = ?`, profile, why, manifest); err != nil {
			return fmt.Errorf("state: profile of %s: %w", manifest, err)
		}
		return nil
	})
}

// deleteManifests forgets cached manifests.
func (s *stateDB) deleteManifests(ctx context.Context, digests []string) error {
	if len(digests) == 0 {
		return nil
	}
	return s.update(ctx, func(tx *sql.Tx) error {
		for _, d := range digests {
			if _, err := tx.ExecContext(ctx, `DELETE FROM files WHERE manifest = ?`, d); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM manifests WHERE digest = ?`, d); err != nil {
				return err
			}
		}
		return nil
	})
}

// activeVariant is how the state records the variant of a version it
// activates: empty for the full model, however the desired state names it.
func activeVariant(v string) string {
	if v == artifact.OriginalVariant {
		return ""
	}
	return v
}
