// Package feedback keeps, on the edge machine, the inputs of recent
// inference requests that carried an id, so that a true label sent later
// for that id (the serving endpoint's POST /v2/models/NAME/feedback) can be
// attached to them. The labelled samples stay local: they measure the
// serving version's accuracy on recent inputs, and a pipeline's dataset
// step reads them (path feedback:DEPLOYMENT) to retrain and to judge a
// candidate against the version it would replace.
//
// A Store is one SQLite file (internal/sqlfile). Each deployment keeps
// about the number of samples its monitoring asks for (at most a tenth
// more); beyond it, the oldest unlabelled requests go first, then the
// oldest labelled ones.
package feedback

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sync"
	"time"

	"outpost.dev/outpost/internal/sqlfile"
)

// MaxRequestID bounds the length of a request id.
const MaxRequestID = 256

// Errors of Label.
var (
	// ErrUnknownRequest: no samples are kept for the request id (it carried
	// no id, its deployment keeps none, or they were dropped for newer ones).
	ErrUnknownRequest = errors.New("no request with this id is kept")
	// ErrLabelCount: the labels do not match the request's samples one to one.
	ErrLabelCount = errors.New("the number of labels is not the number of samples of the request")
)

const schema = `
CREATE TABLE IF NOT EXISTS samples (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment TEXT NOT NULL,
	request    TEXT NOT NULL,
	idx        INTEGER NOT NULL,
	version    TEXT NOT NULL,
	shape      TEXT NOT NULL,
	x          BLOB NOT NULL,
	predicted  INTEGER NOT NULL,
	label      INTEGER,
	at         INTEGER NOT NULL,
	UNIQUE (deployment, request, idx)
);
CREATE INDEX IF NOT EXISTS samples_version ON samples (deployment, version, label);
`

// Store is the feedback file of one edge machine. It is safe for
// concurrent use, and by several processes (the agent, and the pipeline
// commands that read it).
type Store struct {
	db *sql.DB
	mu sync.Mutex // serialises this process's writers
}

// Open opens (creating if absent) the store at path.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := sqlfile.Open(ctx, path, schema)
	if err != nil {
		return nil, fmt.Errorf("feedback store: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Request is one inference request's samples to keep.
type Request struct {
	// Deployment and Version are what answered it; ID is the request's id.
	Deployment, Version, ID string
	// Shape is the shape of one sample; X holds the samples, one after the
	// other, and Predicted the class the model gave each.
	Shape     []int
	X         []float32
	Predicted []int
	// At is when it was answered.
	At time.Time
}

// validate checks that the request's parts agree.
func (r *Request) validate() error {
	if r.Deployment == "" || r.ID == "" || len(r.ID) > MaxRequestID {
		return fmt.Errorf("a kept request needs a deployment and an id of 1 to %d bytes", MaxRequestID)
	}
	dim := 1
	for _, d := range r.Shape {
		if d <= 0 {
			return fmt.Errorf("sample shape %v", r.Shape)
		}
		dim *= d
	}
	if len(r.Predicted) == 0 || len(r.X) != dim*len(r.Predicted) {
		return fmt.Errorf("%d values for %d samples of shape %v", len(r.X), len(r.Predicted), r.Shape)
	}
	return nil
}

// Keep stores r's samples, replacing those of an earlier request of the
// same deployment and id. When the deployment then holds more than a tenth
// over limit samples, its oldest requests go, unlabelled ones first, down
// to limit.
func (s *Store) Keep(ctx context.Context, r Request, limit int) error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("feedback: %w", err)
	}
	if limit < len(r.Predicted) {
		return nil // the request alone is more than the deployment keeps
	}
	shape, _ := json.Marshal(r.Shape)
	dim := len(r.X) / len(r.Predicted)
	return sqlfile.Update(ctx, s.db, &s.mu, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM samples WHERE deployment = ? AND request = ?`, r.Deployment, r.ID); err != nil {
			return err
		}
		for i, p := range r.Predicted {
			x := encode(r.X[i*dim : (i+1)*dim])
			if _, err := tx.ExecContext(ctx, `INSERT INTO samples (deployment, request, idx, version, shape, x, predicted, at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, r.Deployment, r.ID, i, r.Version, string(shape), x, p, r.At.UnixNano()); err != nil {
				return err
			}
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM samples WHERE deployment = ?`, r.Deployment).Scan(&n); err != nil {
			return err
		}
		if n <= limit+limit/10 {
			return nil // trimming a tenth at a time keeps Keep cheap
		}
		// Whole requests go, other than r, oldest first, unlabelled before labelled.
		rows, err := tx.QueryContext(ctx, `SELECT request, count(*) FROM samples WHERE deployment = ? AND request != ?
			GROUP BY request ORDER BY max(label IS NOT NULL), min(seq)`, r.Deployment, r.ID)
		if err != nil {
			return err
		}
		var drop []string
		for excess := n - limit; excess > 0 && rows.Next(); {
			var id string
			var k int
			if err := rows.Scan(&id, &k); err != nil {
				rows.Close()
				return err
			}
			drop, excess = append(drop, id), excess-k
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for _, id := range drop {
			if _, err := tx.ExecContext(ctx, `DELETE FROM samples WHERE deployment = ? AND request = ?`, r.Deployment, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// Labelled is the outcome of one Label call.
type Labelled struct {
	// Version answered the request; Samples were labelled, Correct of them
	// as the model predicted.
	Version          string
	Samples, Correct int
}

// Label records the true labels of the samples of request id of
// deployment, in order. Labelling again replaces the labels.
func (s *Store) Label(ctx context.Context, deployment, id string, labels []int) (Labelled, error) {
	var out Labelled
	err := sqlfile.Update(ctx, s.db, &s.mu, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT seq, version, predicted FROM samples WHERE deployment = ? AND request = ? ORDER BY idx`, deployment, id)
		if err != nil {
			return err
		}
		var seqs, preds []int64
		for rows.Next() {
			var seq, pred int64
			if err := rows.Scan(&seq, &out.Version, &pred); err != nil {
				rows.Close()
				return err
			}
			seqs, preds = append(seqs, seq), append(preds, pred)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		switch {
		case len(seqs) == 0:
			return ErrUnknownRequest
		case len(labels) != len(seqs):
			return fmt.Errorf("%w: %d labels for %d samples", ErrLabelCount, len(labels), len(seqs))
		}
		for i, l := range labels {
			if l < 0 || l > math.MaxUint8 {
				return fmt.Errorf("label %d: %d is not a class from 0 to 255", i, l)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE samples SET label = ? WHERE seq = ?`, l, seqs[i]); err != nil {
				return err
			}
			if int64(l) == preds[i] {
				out.Correct++
			}
		}
		out.Samples = len(labels)
		return nil
	})
	return out, err
}

// Accuracy is how a version did on the labelled samples it answered.
type Accuracy struct {
	// Labelled samples, Correct of them as predicted.
	Labelled, Correct int
}

// Accuracy returns how version of deployment did on its labelled samples.
func (s *Store) Accuracy(ctx context.Context, deployment, version string) (Accuracy, error) {
	var a Accuracy
	err := s.db.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(label = predicted), 0) FROM samples
		WHERE deployment = ? AND version = ? AND label IS NOT NULL`, deployment, version).Scan(&a.Labelled, &a.Correct)
	return a, err
}

// Set is the labelled samples of a deployment, oldest first.
type Set struct {
	// Shape is one sample's shape; X the samples, Labels their labels.
	Shape  []int
	X      []float32
	Labels []uint8
	// Fingerprint changes whenever the set does.
	Fingerprint string
}

// Len is the number of samples.
func (s *Set) Len() int { return len(s.Labels) }

// Labelled returns the labelled samples of deployment: the most recent
// limit of them (0: all), of the shape of the most recent one.
func (s *Store) Labelled(ctx context.Context, deployment string, limit int) (*Set, error) {
	q := `SELECT seq, shape, x, label FROM samples WHERE deployment = ? AND label IS NOT NULL ORDER BY seq DESC`
	args := []any{deployment}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("feedback: %w", err)
	}
	defer rows.Close()
	set := &Set{}
	var chunks [][]float32
	var shape string
	h := fnv.New64a() // of every sample's seq and label: labels can change without new rows
	for rows.Next() {
		var seq, label int64
		var sh string
		var x []byte
		if err := rows.Scan(&seq, &sh, &x, &label); err != nil {
			return nil, fmt.Errorf("feedback: %w", err)
		}
		if shape == "" {
			shape = sh
			if err := json.Unmarshal([]byte(sh), &set.Shape); err != nil {
				return nil, fmt.Errorf("feedback: sample %d: shape %q: %w", seq, sh, err)
			}
		}
		if sh != shape {
			continue // of a model with other inputs, before the last change
		}
		v, err := decode(x)
		if err != nil {
			return nil, fmt.Errorf("feedback: sample %d: %w", seq, err)
		}
		chunks = append(chunks, v)
		set.Labels = append(set.Labels, uint8(label))
		_ = binary.Write(h, binary.LittleEndian, [2]int64{seq, label})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("feedback: %w", err)
	}
	slices.Reverse(chunks)
	slices.Reverse(set.Labels)
	for _, c := range chunks {
		set.X = append(set.X, c...)
	}
	set.Fingerprint = fmt.Sprintf("feedback:%s@%d/%016x", deployment, set.Len(), h.Sum64())
	return set, nil
}

// encode is v as little-endian float32s.
func encode(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// decode is the inverse of encode.
func decode(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("%d bytes are not float32 values", len(b))
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}
