package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/uuid"

	"outpost.dev/outpost/api/v1alpha1"
)

// EventType is the kind of change recorded in the change log.
type EventType string

// Event types, as in a Kubernetes watch.
const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
)

// Event is one change to a resource.
type Event struct {
	// Type is ADDED, MODIFIED or DELETED.
	Type EventType
	// Revision is the global revision of the change.
	Revision int64
	// Object is the resource after the change; for DELETED, its last state.
	Object v1alpha1.Object
}

// ApplyResult says what Apply did.
type ApplyResult int

// Apply results.
const (
	Unchanged ApplyResult = iota
	Created
	Updated
)

// now is the store clock's time, to the second as Kubernetes timestamps are.
func (tx *Tx) now() metav1.Time { return metav1.NewTime(tx.clock.Now().UTC().Truncate(time.Second)) }

func kindOf(obj v1alpha1.Object) (*v1alpha1.KindInfo, error) {
	k, ok := v1alpha1.LookupKind(v1alpha1.KindOf(obj))
	if !ok || k.Kind != v1alpha1.KindOf(obj) {
		return nil, fmt.Errorf("store: unsupported object type %T", obj)
	}
	return k, nil
}

// Get returns the resource of kind named name, or an error wrapping ErrNotFound.
func (tx *Tx) Get(ctx context.Context, kind, name string) (v1alpha1.Object, error) {
	obj, _, err := tx.get(ctx, kind, name)
	return obj, err
}

// get is Get, also returning the stored JSON.
func (tx *Tx) get(ctx context.Context, kind, name string) (v1alpha1.Object, []byte, error) {
	var body []byte
	err := tx.q.QueryRowContext(ctx, `SELECT body FROM resources WHERE kind = ? AND name = ?`, kind, name).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store: get %s %q: %w", kind, name, err)
	}
	obj, err := decode(kind, body)
	return obj, body, err
}

func decode(kind string, body []byte) (v1alpha1.Object, error) {
	obj, err := v1alpha1.New(kind)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(body, obj); err != nil {
		return nil, fmt.Errorf("store: decode stored %s: %w", kind, err)
	}
	v1alpha1.SetTypeMeta(obj)
	return obj, nil
}

// List returns the resources of kind whose labels match sel (nil matches all), sorted by name.
func (tx *Tx) List(ctx context.Context, kind string, sel labels.Selector) ([]v1alpha1.Object, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT labels, body FROM resources WHERE kind = ? ORDER BY name`, kind)
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", kind, err)
	}
	defer rows.Close()
	out := []v1alpha1.Object{}
	for rows.Next() {
		var lbls, body string
		if err := rows.Scan(&lbls, &body); err != nil {
			return nil, fmt.Errorf("store: list %s: %w", kind, err)
		}
		if sel != nil && !sel.Empty() {
			var set labels.Set
			if err := json.Unmarshal([]byte(lbls), &set); err != nil {
				return nil, fmt.Errorf("store: list %s: labels: %w", kind, err)
			}
			if !sel.Matches(set) {
				continue
			}
		}
		obj, err := decode(kind, []byte(body))
		if err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
	return out, rows.Err()
}

// Apply creates obj or updates the stored resource of the same kind and name. It validates
// obj first. On update it keeps uid, creationTimestamp and status, bumps generation only when
// spec changed, and changes nothing at all (not even the revision) when the result equals the
// stored object. Server-set metadata in obj (uid, resourceVersion, generation,
// creationTimestamp, managedFields) is ignored, and so is obj's status: write status with
// UpdateStatus. It returns the stored object.
func (tx *Tx) Apply(ctx context.Context, obj v1alpha1.Object) (v1alpha1.Object, ApplyResult, error) {
	k, err := kindOf(obj)
	if err != nil {
		return nil, Unchanged, err
	}
	if err := obj.Validate(); err != nil {
		return nil, Unchanged, err
	}
	cp := obj.DeepCopyObject().(v1alpha1.Object)
	v1alpha1.SetTypeMeta(cp)
	cp.SetManagedFields(nil)
	cp.SetDeletionTimestamp(nil)
	cp.SetDeletionGracePeriodSeconds(nil)
	cp.SetGenerateName("")
	cp.SetSelfLink("")

	kind := k.Kind
	old, err := tx.Get(ctx, kind, cp.GetName())
	switch {
	case errors.Is(err, ErrNotFound):
		cp.SetUID(uuid.NewUUID())
		cp.SetGeneration(1)
		cp.SetCreationTimestamp(tx.now())
		k.ResetStatus(cp)
		stored, err := tx.put(ctx, kind, cp, Added)
		return stored, Created, err
	case err != nil:
		return nil, Unchanged, err
	}
	cp.SetUID(old.GetUID())
	cp.SetCreationTimestamp(old.GetCreationTimestamp())
	cp.SetResourceVersion(old.GetResourceVersion())
	k.CopyStatus(cp, old)
	newSpec, err := specJSON(cp)
	if err != nil {
		return nil, Unchanged, err
	}
	oldSpec, err := specJSON(old)
	if err != nil {
		return nil, Unchanged, err
	}
	gen := old.GetGeneration()
	if !bytes.Equal(newSpec, oldSpec) {
		gen++
	}
	cp.SetGeneration(gen)
	if same, err := sameJSON(cp, old); err != nil || same {
		return old, Unchanged, err
	}
	stored, err := tx.put(ctx, kind, cp, Modified)
	return stored, Updated, err
}

// UpdateStatus replaces the status of the stored resource with obj's status and leaves the
// rest unchanged. When obj carries a resourceVersion it must equal the stored one, or the
// error wraps ErrConflict. It reports whether anything changed.
func (tx *Tx) UpdateStatus(ctx context.Context, obj v1alpha1.Object) (v1alpha1.Object, bool, error) {
	k, err := kindOf(obj)
	if err != nil {
		return nil, false, err
	}
	kind := k.Kind
	old, oldBody, err := tx.get(ctx, kind, obj.GetName())
	if err != nil {
		return nil, false, err
	}
	if rv := obj.GetResourceVersion(); rv != "" && rv != old.GetResourceVersion() {
		return nil, false, fmt.Errorf("%s %q: resourceVersion %s is not the current %s: %w",
			kind, obj.GetName(), rv, old.GetResourceVersion(), ErrConflict)
	}
	// obj may be old itself, or share its status: copy the status into a copy.
	cp := old.DeepCopyObject().(v1alpha1.Object)
	k.CopyStatus(cp, obj)
	if err := cp.Validate(); err != nil {
		return nil, false, err
	}
	// The stored JSON is what put encoded: the same encoding of cp means no change.
	// (Compared to the stored bytes, not to old encoded again: a deployment's status
	// with a row per cluster is megabytes at 10,000 clusters.)
	body, err := json.Marshal(cp)
	if err != nil {
		return nil, false, fmt.Errorf("store: encode %s: %w", kind, err)
	}
	if bytes.Equal(body, oldBody) {
		return old, false, nil
	}
	stored, err := tx.put(ctx, kind, cp, Modified)
	return stored, err == nil, err
}

// ResourceVersion returns the resourceVersion of the stored resource, without reading the
// resource itself, or an error wrapping ErrNotFound.
func (tx *Tx) ResourceVersion(ctx context.Context, kind, name string) (int64, error) {
	var rv int64
	err := tx.q.QueryRowContext(ctx, `SELECT resource_version FROM resources WHERE kind = ? AND name = ?`, kind, name).Scan(&rv)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("store: get %s %q: %w", kind, name, err)
	}
	return rv, nil
}

// ReplaceStatus stores obj, which must be the stored resource (its resourceVersion the
// current one, or the error wraps ErrConflict) with a changed status, at a new revision.
// Unlike UpdateStatus it neither reads the stored resource nor compares: it is for a
// caller that read the resource in this transaction and changed only its status, and
// saves reading and encoding it again (a deployment with a row per cluster is megabytes
// at 10,000 clusters). It returns the stored object, obj itself.
func (tx *Tx) ReplaceStatus(ctx context.Context, obj v1alpha1.Object) (v1alpha1.Object, error) {
	k, err := kindOf(obj)
	if err != nil {
		return nil, err
	}
	rv, err := tx.ResourceVersion(ctx, k.Kind, obj.GetName())
	if err != nil {
		return nil, err
	}
	if cur := strconv.FormatInt(rv, 10); obj.GetResourceVersion() != cur {
		return nil, fmt.Errorf("%s %q: resourceVersion %s is not the current %s: %w",
			k.Kind, obj.GetName(), obj.GetResourceVersion(), cur, ErrConflict)
	}
	if err := obj.Validate(); err != nil {
		return nil, err
	}
	return tx.put(ctx, k.Kind, obj, Modified)
}

// Delete removes the resource and returns its last state, or an error wrapping ErrNotFound.
func (tx *Tx) Delete(ctx context.Context, kind, name string) (v1alpha1.Object, error) {
	old, err := tx.Get(ctx, kind, name)
	if err != nil {
		return nil, err
	}
	rev, err := tx.next(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM resources WHERE kind = ? AND name = ?`, kind, name); err != nil {
		return nil, fmt.Errorf("store: delete %s %q: %w", kind, name, err)
	}
	old.SetResourceVersion(strconv.FormatInt(rev, 10))
	body, err := json.Marshal(old)
	if err != nil {
		return nil, fmt.Errorf("store: encode event: %w", err)
	}
	if err := tx.logEvent(ctx, rev, kind, old.GetName(), Deleted, body); err != nil {
		return nil, err
	}
	return old, nil
}

// put stores obj at a new revision and records the event.
func (tx *Tx) put(ctx context.Context, kind string, obj v1alpha1.Object, typ EventType) (v1alpha1.Object, error) {
	rev, err := tx.next(ctx)
	if err != nil {
		return nil, err
	}
	obj.SetResourceVersion(strconv.FormatInt(rev, 10))
	body, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("store: encode %s: %w", kind, err)
	}
	lbls := obj.GetLabels()
	if lbls == nil {
		lbls = map[string]string{}
	}
	lblJSON, err := json.Marshal(lbls)
	if err != nil {
		return nil, fmt.Errorf("store: encode labels: %w", err)
	}
	ts := tx.clock.Now().UTC().Format(time.RFC3339Nano)
	_, err = tx.q.ExecContext(ctx, `INSERT INTO resources(kind, name, uid, generation, resource_version, labels, body, created, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(kind, name) DO UPDATE SET uid = excluded.uid, generation = excluded.generation,
			resource_version = excluded.resource_version, labels = excluded.labels, body = excluded.body,
			updated = excluded.updated`,
		kind, obj.GetName(), string(obj.GetUID()), obj.GetGeneration(), rev, string(lblJSON), string(body), ts, ts)
	if err != nil {
		return nil, fmt.Errorf("store: write %s %q: %w", kind, obj.GetName(), err)
	}
	if err := tx.logEvent(ctx, rev, kind, obj.GetName(), typ, body); err != nil {
		return nil, err
	}
	return obj, nil
}

// logEvent records the change of revision rev: the object's JSON after it (for a
// deletion, its last state).
func (tx *Tx) logEvent(ctx context.Context, rev int64, kind, name string, typ EventType, body []byte) error {
	if _, err := tx.q.ExecContext(ctx, `INSERT INTO events(revision, kind, name, type, body) VALUES (?, ?, ?, ?, ?)`,
		rev, kind, name, string(typ), string(body)); err != nil {
		return fmt.Errorf("store: log event: %w", err)
	}
	if horizon := rev - eventRetention; horizon > 0 {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM events WHERE revision <= ?`, horizon); err != nil {
			return fmt.Errorf("store: compact events: %w", err)
		}
		if _, err := tx.q.ExecContext(ctx, `UPDATE meta SET value = MAX(value, ?) WHERE key = 'compacted'`, horizon); err != nil {
			return fmt.Errorf("store: compact events: %w", err)
		}
	}
	return nil
}

// Changes returns up to limit changes to resources of kind after revision after, oldest
// first, and the current revision. It returns an error wrapping ErrCompacted when changes
// after that revision are no longer kept; the caller should list again.
func (tx *Tx) Changes(ctx context.Context, kind string, after int64, limit int) ([]Event, int64, error) {
	cur, err := tx.Revision(ctx)
	if err != nil {
		return nil, 0, err
	}
	compacted, err := tx.meta(ctx, "compacted")
	if err != nil {
		return nil, 0, err
	}
	if after < compacted {
		return nil, cur, fmt.Errorf("changes after revision %d: oldest kept is %d: %w", after, compacted+1, ErrCompacted)
	}
	if limit <= 0 {
		limit = 1000
	}
	rows, err := tx.q.QueryContext(ctx, `SELECT revision, type, body FROM events WHERE kind = ? AND revision > ? ORDER BY revision LIMIT ?`,
		kind, after, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("store: changes: %w", err)
	}
	defer rows.Close()
	var evs []Event
	for rows.Next() {
		var ev Event
		var typ, body string
		if err := rows.Scan(&ev.Revision, &typ, &body); err != nil {
			return nil, 0, fmt.Errorf("store: changes: %w", err)
		}
		ev.Type = EventType(typ)
		if ev.Object, err = decode(kind, []byte(body)); err != nil {
			return nil, 0, err
		}
		evs = append(evs, ev)
	}
	return evs, cur, rows.Err()
}

func specJSON(obj v1alpha1.Object) ([]byte, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("store: encode: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("store: encode: %w", err)
	}
	return m["spec"], nil
}

func sameJSON(a, b v1alpha1.Object) (bool, error) {
	ab, err := json.Marshal(a)
	if err != nil {
		return false, fmt.Errorf("store: encode: %w", err)
	}
	bb, err := json.Marshal(b)
	if err != nil {
		return false, fmt.Errorf("store: encode: %w", err)
	}
	return bytes.Equal(ab, bb), nil
}

// Get returns the resource of kind named name, or an error wrapping ErrNotFound.
func (db *DB) Get(ctx context.Context, kind, name string) (obj v1alpha1.Object, err error) {
	obj, err = db.statement().Get(ctx, kind, name) // one statement: see DesiredState
	return obj, classify(err)
}

// List returns the resources of kind matching sel (nil matches all), sorted by name, and the
// revision the list is current at.
func (db *DB) List(ctx context.Context, kind string, sel labels.Selector) (objs []v1alpha1.Object, rev int64, err error) {
	err = db.View(ctx, func(tx *Tx) error {
		if rev, err = tx.Revision(ctx); err != nil {
			return err
		}
		objs, err = tx.List(ctx, kind, sel)
		return err
	})
	return objs, rev, err
}

// Apply creates or updates obj in its own transaction; see Tx.Apply.
func (db *DB) Apply(ctx context.Context, obj v1alpha1.Object) (stored v1alpha1.Object, res ApplyResult, err error) {
	err = db.Update(ctx, func(tx *Tx) error {
		stored, res, err = tx.Apply(ctx, obj)
		return err
	})
	return stored, res, err
}

// UpdateStatus replaces a resource's status in its own transaction; see Tx.UpdateStatus.
func (db *DB) UpdateStatus(ctx context.Context, obj v1alpha1.Object) (stored v1alpha1.Object, changed bool, err error) {
	err = db.Update(ctx, func(tx *Tx) error {
		stored, changed, err = tx.UpdateStatus(ctx, obj)
		return err
	})
	return stored, changed, err
}

// Delete removes a resource in its own transaction; see Tx.Delete.
func (db *DB) Delete(ctx context.Context, kind, name string) (obj v1alpha1.Object, err error) {
	err = db.Update(ctx, func(tx *Tx) error {
		obj, err = tx.Delete(ctx, kind, name)
		return err
	})
	return obj, err
}

// Changes returns changes to kind after a revision; see Tx.Changes.
func (db *DB) Changes(ctx context.Context, kind string, after int64, limit int) (evs []Event, rev int64, err error) {
	err = db.View(ctx, func(tx *Tx) error {
		evs, rev, err = tx.Changes(ctx, kind, after, limit)
		return err
	})
	return evs, rev, err
}
