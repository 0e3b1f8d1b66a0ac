package pipeline

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/sqlfile"
)

// schema is the engine's database, runs.db, version 1. Every change of a
// run's state is one transaction: a crash leaves all of it or none.
const schema = `
CREATE TABLE IF NOT EXISTS runs (
	number       INTEGER PRIMARY KEY AUTOINCREMENT,
	name         TEXT NOT NULL UNIQUE,
	pipeline     TEXT NOT NULL,
	generation   INTEGER NOT NULL,
	trigger      TEXT NOT NULL,
	cluster      TEXT NOT NULL,
	spec         TEXT NOT NULL,            -- PipelineSpec JSON
	options      TEXT NOT NULL,            -- RunOptions JSON
	phase        TEXT NOT NULL,
	message      TEXT NOT NULL DEFAULT '',
	created_at   TEXT NOT NULL,
	started_at   TEXT NOT NULL DEFAULT '',
	completed_at TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS steps (
	run          INTEGER NOT NULL,
	idx          INTEGER NOT NULL,
	name         TEXT NOT NULL,
	phase        TEXT NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0, -- starts
	failures     INTEGER NOT NULL DEFAULT 0, -- failed attempts
	cached       INTEGER NOT NULL DEFAULT 0,
	retry_at     TEXT NOT NULL DEFAULT '',
	started_at   TEXT NOT NULL DEFAULT '',
	completed_at TEXT NOT NULL DEFAULT '',
	outputs      TEXT NOT NULL DEFAULT '{}',
	adapted      TEXT NOT NULL DEFAULT '',
	message      TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (run, idx)
);
CREATE TABLE IF NOT EXISTS cache (
	key        TEXT PRIMARY KEY,
	type       TEXT NOT NULL,
	outputs    TEXT NOT NULL,
	run        TEXT NOT NULL,
	step       TEXT NOT NULL,
	created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
	repository TEXT NOT NULL,
	version    TEXT NOT NULL,
	digest     TEXT NOT NULL,
	file       TEXT NOT NULL,            -- digest of the ONNX file
	run        INTEGER NOT NULL,
	step       TEXT NOT NULL,
	uploaded   INTEGER NOT NULL DEFAULT 0,
	created_at TEXT NOT NULL,
	PRIMARY KEY (repository, version)
);
`

// db is the engine's SQLite database.
type db struct {
	sql *sql.DB
	// writeMu serialises this process's write transactions.
	writeMu sync.Mutex
}

// openDB opens (creating if absent) the database at path, as the agent's
// state is opened (internal/sqlfile): readers (`outpost pipeline runs`)
// never wait for the engine, and a second writer waits for the lock.
func openDB(ctx context.Context, path string) (*db, error) {
	s, err := sqlfile.Open(ctx, path, schema)
	if err != nil {
		return nil, err
	}
	return &db{sql: s}, nil
}

func (d *db) close() error { return d.sql.Close() }

// tx runs f in one write transaction.
func (d *db) tx(ctx context.Context, f func(*sql.Tx) error) error {
	return sqlfile.Update(ctx, d.sql, &d.writeMu, f)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func metaTime(s string) *metav1.Time {
	if s == "" {
		return nil
	}
	t := metav1.NewTime(parseTime(s))
	return &t
}

// runRow is a run as the database holds it.
type runRow struct {
	number                           int64
	name, pipeline, trigger, cluster string
	generation                       int64
	spec                             v1alpha1.PipelineSpec
	opts                             RunOptions
	phase                            v1alpha1.RunPhase
	message                          string
	created, started, completed      string
}

// stepRow is a step of a run as the database holds it.
type stepRow struct {
	idx                         int
	name                        string
	phase                       v1alpha1.RunPhase
	attempts, failures          int32
	cached                      bool
	retryAt, started, completed string
	outputs                     map[string]string
	adapted, message            string
}

// errNoRun is returned for a run the database does not hold.
var errNoRun = errors.New("no such run")

const runColumns = `number, name, pipeline, generation, trigger, cluster, spec, options, phase, message, created_at, started_at, completed_at`

func scanRun(sc interface{ Scan(...any) error }) (*runRow, error) {
	var r runRow
	var spec, opts string
	if err := sc.Scan(&r.number, &r.name, &r.pipeline, &r.generation, &r.trigger, &r.cluster, &spec, &opts,
		&r.phase, &r.message, &r.created, &r.started, &r.completed); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(spec), &r.spec); err != nil {
		return nil, fmt.Errorf("run %s: spec: %w", r.name, err)
	}
	if err := json.Unmarshal([]byte(opts), &r.opts); err != nil {
		return nil, fmt.Errorf("run %s: options: %w", r.name, err)
	}
	return &r, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// getRun reads run name.
func getRun(ctx context.Context, q querier, name string) (*runRow, error) {
	r, err := scanRun(q.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("run %q: %w", name, errNoRun)
	}
	return r, err
}

// listRuns reads the runs, newest first; unfinished only when asked.
func listRuns(ctx context.Context, q querier, unfinished bool) ([]*runRow, error) {
	query := `SELECT ` + runColumns + ` FROM runs`
	if unfinished {
		query += ` WHERE phase NOT IN ('Succeeded', 'Failed')`
	}
	rows, err := q.QueryContext(ctx, query+` ORDER BY number DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*runRow
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// getSteps reads the steps of run number, in spec order.
func getSteps(ctx context.Context, q querier, run int64) ([]stepRow, error) {
	rows, err := q.QueryContext(ctx, `SELECT idx, name, phase, attempts, failures, cached, retry_at, started_at, completed_at, outputs, adapted, message
		FROM steps WHERE run = ? ORDER BY idx`, run)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []stepRow
	for rows.Next() {
		var s stepRow
		var outputs string
		if err := rows.Scan(&s.idx, &s.name, &s.phase, &s.attempts, &s.failures, &s.cached, &s.retryAt, &s.started, &s.completed,
			&outputs, &s.adapted, &s.message); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(outputs), &s.outputs); err != nil {
			return nil, fmt.Errorf("step %s: outputs: %w", s.name, err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// insertRun records a new run with its steps Pending.
func insertRun(ctx context.Context, tx *sql.Tx, r *runRow) (int64, error) {
	spec, err := json.Marshal(&r.spec)
	if err != nil {
		return 0, err
	}
	opts, err := json.Marshal(&r.opts)
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO runs (name, pipeline, generation, trigger, cluster, spec, options, phase, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.name, r.pipeline, r.generation, r.trigger, r.cluster, string(spec), string(opts), r.phase, r.created)
	if err != nil {
		return 0, err
	}
	n, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	for i, st := range r.spec.Steps {
		if _, err := tx.ExecContext(ctx, `INSERT INTO steps (run, idx, name, phase) VALUES (?, ?, ?, ?)`, n, i, st.Name, v1alpha1.RunPending); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// putStep writes a step's state.
func putStep(ctx context.Context, tx *sql.Tx, run int64, s *stepRow) error {
	outputs, err := json.Marshal(s.outputs)
	if err != nil {
		return err
	}
	if s.outputs == nil {
		outputs = []byte("{}")
	}
	_, err = tx.ExecContext(ctx, `UPDATE steps SET phase = ?, attempts = ?, failures = ?, cached = ?, retry_at = ?, started_at = ?,
		completed_at = ?, outputs = ?, adapted = ?, message = ? WHERE run = ? AND idx = ?`,
		s.phase, s.attempts, s.failures, s.cached, s.retryAt, s.started, s.completed, string(outputs), s.adapted, s.message, run, s.idx)
	return err
}

// putRunPhase writes a run's phase.
func putRunPhase(ctx context.Context, tx *sql.Tx, r *runRow) error {
	_, err := tx.ExecContext(ctx, `UPDATE runs SET phase = ?, message = ?, started_at = ?, completed_at = ? WHERE number = ?`,
		r.phase, r.message, r.started, r.completed, r.number)
	return err
}

// cacheEntry is an earlier step's outputs for a cache key.
type cacheEntry struct {
	outputs   map[string]string
	run, step string
}

func getCache(ctx context.Context, q querier, key string) (*cacheEntry, error) {
	var e cacheEntry
	var outputs string
	err := q.QueryRowContext(ctx, `SELECT outputs, run, step FROM cache WHERE key = ?`, key).Scan(&outputs, &e.run, &e.step)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(outputs), &e.outputs); err != nil {
		return nil, fmt.Errorf("cache %s: %w", key, err)
	}
	return &e, nil
}

func putCache(ctx context.Context, tx *sql.Tx, key string, typ v1alpha1.StepType, outputs map[string]string, run, step string, now time.Time) error {
	b, err := json.Marshal(outputs)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO cache (key, type, outputs, run, step, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET outputs = excluded.outputs, run = excluded.run, step = excluded.step, created_at = excluded.created_at`,
		key, string(typ), string(b), run, step, fmtTime(now))
	return err
}

// modelRow is a model version a run registered.
type modelRow struct {
	repository, version, digest, file string
	run                               int64
	runName, step                     string
	uploaded                          bool
}

func putModel(ctx context.Context, tx *sql.Tx, m *modelRow, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO models (repository, version, digest, file, run, step, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (repository, version) DO NOTHING`, m.repository, m.version, m.digest, m.file, m.run, m.step, fmtTime(now))
	return err
}

// getModels reads the models of run number (all runs when run is 0), or
// only those not uploaded yet.
func getModels(ctx context.Context, q querier, run int64, notUploaded bool) ([]modelRow, error) {
	query := `SELECT m.repository, m.version, m.digest, m.file, m.run, r.name, m.step, m.uploaded FROM models m JOIN runs r ON r.number = m.run WHERE 1`
	var args []any
	if run != 0 {
		query += ` AND m.run = ?`
		args = append(args, run)
	}
	if notUploaded {
		query += ` AND m.uploaded = 0`
	}
	rows, err := q.QueryContext(ctx, query+` ORDER BY m.run, m.created_at`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []modelRow
	for rows.Next() {
		var m modelRow
		if err := rows.Scan(&m.repository, &m.version, &m.digest, &m.file, &m.run, &m.runName, &m.step, &m.uploaded); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// getModel reads one registered version.
func getModel(ctx context.Context, q querier, repo, version string) (*modelRow, error) {
	var m modelRow
	err := q.QueryRowContext(ctx, `SELECT m.repository, m.version, m.digest, m.file, m.run, r.name, m.step, m.uploaded
		FROM models m JOIN runs r ON r.number = m.run WHERE m.repository = ? AND m.version = ?`, repo, version).
		Scan(&m.repository, &m.version, &m.digest, &m.file, &m.run, &m.runName, &m.step, &m.uploaded)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return &m, err
}
