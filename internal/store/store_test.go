package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/testenv"
)

func open(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hub.db")
	db, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func cluster(name string, l map[string]string) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func md(name, version string) *v1alpha1.ModelDeployment {
	return &v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ModelDeploymentSpec{Model: v1alpha1.ModelRef{Name: "resnet", Version: version},
			ClusterSelectors: []metav1.LabelSelector{{}}},
	}
}

func rv(t *testing.T, o v1alpha1.Object) int64 {
	t.Helper()
	n, err := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", o.GetResourceVersion(), err)
	}
	return n
}

func TestPragmas(t *testing.T) {
	db, _ := open(t)
	for pragma, want := range map[string]string{"journal_mode": "wal", "busy_timeout": "10000", "foreign_keys": "1", "synchronous": "2"} {
		var got string
		if err := db.SQL().QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}

func TestWithBusyTimeout(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		want string
	}{
		{"default", nil, "10000"},
		{"shorter", []Option{WithBusyTimeout(250 * time.Millisecond)}, "250"},
		{"negative fails at once", []Option{WithBusyTimeout(-time.Second)}, "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var got string
			if err := db.SQL().QueryRowContext(t.Context(), "PRAGMA busy_timeout").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("PRAGMA busy_timeout = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestConnectionsBounded checks that the store keeps at most MaxConnections
// SQLite connections and keeps them open between requests: with a fleet's
// requests arriving together, a connection per request exhausted the hub's
// file descriptors, and reopening one for each request cost more than the
// request.
func TestConnectionsBounded(t *testing.T) {
	db, _ := open(t)
	ctx := t.Context()
	var conns []*sql.Conn
	for range MaxConnections {
		c, err := db.SQL().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// One more waits for a connection to come back.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := db.Revision(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("request beyond %d connections: error = %v, want it to wait", MaxConnections, err)
	}
	for _, c := range conns {
		c.Close()
	}
	if _, err := db.Revision(ctx); err != nil {
		t.Fatal(err)
	}
	st := db.SQL().Stats()
	if st.OpenConnections != MaxConnections || st.MaxIdleClosed != 0 {
		t.Errorf("after the burst: %d connections open, %d closed for want of idle room; want %d, 0",
			st.OpenConnections, st.MaxIdleClosed, MaxConnections)
	}
}

func TestApplyLifecycle(t *testing.T) {
	ctx := t.Context()
	db, _ := open(t)

	created, res, err := db.Apply(ctx, md("a", "1.0.0"))
	if err != nil || res != Created {
		t.Fatalf("Apply = %v, %v", res, err)
	}
	if created.GetUID() == "" || created.GetGeneration() != 1 || created.GetCreationTimestamp().Time.IsZero() || rv(t, created) != 1 {
		t.Fatalf("created metadata %+v", created.(*v1alpha1.ModelDeployment).ObjectMeta)
	}

	// Status is written separately and survives a later apply.
	st := created.DeepCopyObject().(*v1alpha1.ModelDeployment)
	st.Status.ResolvedVersion = "1.0.0"
	if _, changed, err := db.UpdateStatus(ctx, st); err != nil || !changed {
		t.Fatalf("UpdateStatus = %v, %v", changed, err)
	}

	// Same spec again: nothing changes, not even the revision.
	revBefore, _ := db.Revision(ctx)
	again, res, err := db.Apply(ctx, md("a", "1.0.0"))
	if err != nil || res != Unchanged {
		t.Fatalf("re-Apply = %v, %v", res, err)
	}
	if revAfter, _ := db.Revision(ctx); revAfter != revBefore {
		t.Fatalf("no-op apply moved revision %d -> %d", revBefore, revAfter)
	}

	// A label change updates without a generation bump.
	lbl := md("a", "1.0.0")
	lbl.Labels = map[string]string{"team": "vision"}
	lbl.Status.ResolvedVersion = "9.9.9" // ignored: status only through UpdateStatus
	upd, res, err := db.Apply(ctx, lbl)
	if err != nil || res != Updated {
		t.Fatalf("label Apply = %v, %v", res, err)
	}
	if upd.GetGeneration() != 1 || upd.GetUID() != created.GetUID() || rv(t, upd) <= rv(t, again) {
		t.Fatalf("label update metadata %+v", upd.(*v1alpha1.ModelDeployment).ObjectMeta)
	}
	if got := upd.(*v1alpha1.ModelDeployment).Status.ResolvedVersion; got != "1.0.0" {
		t.Fatalf("status after apply = %q, want kept 1.0.0", got)
	}

	// A spec change bumps generation.
	spec, _, err := db.Apply(ctx, md("a", "^1"))
	if err != nil || spec.GetGeneration() != 2 {
		t.Fatalf("spec Apply generation = %d, %v", spec.GetGeneration(), err)
	}

	// Stale resourceVersion on status is a conflict.
	st.SetResourceVersion(created.GetResourceVersion())
	if _, _, err := db.UpdateStatus(ctx, st); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale UpdateStatus err = %v, want ErrConflict", err)
	}

	deleted, err := db.Delete(ctx, v1alpha1.KindModelDeployment, "a")
	if err != nil || deleted.GetName() != "a" {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := db.Get(ctx, v1alpha1.KindModelDeployment, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after delete err = %v", err)
	}
	if _, err := db.Delete(ctx, v1alpha1.KindModelDeployment, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete err = %v", err)
	}

	evs, cur, err := db.Changes(ctx, v1alpha1.KindModelDeployment, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []EventType
	last := int64(0)
	for _, ev := range evs {
		types = append(types, ev.Type)
		if ev.Revision <= last || ev.Revision > cur {
			t.Fatalf("event revisions not increasing: %d after %d (current %d)", ev.Revision, last, cur)
		}
		last = ev.Revision
	}
	want := []EventType{Added, Modified, Modified, Modified, Deleted}
	if len(types) != len(want) {
		t.Fatalf("events = %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events = %v, want %v", types, want)
		}
	}
	after, _, err := db.Changes(ctx, v1alpha1.KindModelDeployment, evs[2].Revision, 0)
	if err != nil || len(after) != 2 {
		t.Fatalf("Changes after %d = %d events, %v", evs[2].Revision, len(after), err)
	}
}

func TestApplyInvalidStoresNothing(t *testing.T) {
	ctx := t.Context()
	db, _ := open(t)
	if _, _, err := db.Apply(ctx, md("a", "1.x.y")); err == nil {
		t.Fatal("Apply accepted an invalid version")
	}
	if rev, _ := db.Revision(ctx); rev != 0 {
		t.Fatalf("revision = %d after a rejected apply", rev)
	}
}

func TestUpdateRollsBack(t *testing.T) {
	ctx := t.Context()
	db, _ := open(t)
	boom := errors.New("boom")
	err := db.Update(ctx, func(tx *Tx) error {
		if _, _, err := tx.Apply(ctx, cluster("a", nil)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update err = %v", err)
	}
	if _, err := db.Get(ctx, v1alpha1.KindCluster, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rolled-back object is visible: %v", err)
	}
	if rev, _ := db.Revision(ctx); rev != 0 {
		t.Fatalf("revision = %d after rollback", rev)
	}
}

func TestListSelector(t *testing.T) {
	ctx := t.Context()
	db, _ := open(t)
	for _, c := range []*v1alpha1.Cluster{
		cluster("b", map[string]string{"region": "eu"}),
		cluster("a", map[string]string{"region": "eu", "gpu": "true"}),
		cluster("c", map[string]string{"region": "us"}),
	} {
		if _, _, err := db.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		sel  string
		want string
	}{
		{"", "a,b,c"},
		{"region=eu", "a,b"},
		{"region in (eu,us),!gpu", "b,c"},
		{"region=mars", ""},
	}
	for _, tt := range tests {
		sel, err := labels.Parse(tt.sel)
		if err != nil {
			t.Fatal(err)
		}
		objs, rev, err := db.List(ctx, v1alpha1.KindCluster, sel)
		if err != nil || rev != 3 {
			t.Fatalf("List(%q) rev %d, %v", tt.sel, rev, err)
		}
		var names string
		for i, o := range objs {
			if i > 0 {
				names += ","
			}
			names += o.GetName()
		}
		if names != tt.want {
			t.Errorf("List(%q) = %s, want %s", tt.sel, names, tt.want)
		}
	}
}

func TestDesiredState(t *testing.T) {
	ctx := t.Context()
	db, _ := open(t)
	var r1, r2, r3 int64
	err := db.Update(ctx, func(tx *Tx) error {
		var err error
		var changed bool
		if r1, changed, err = tx.SetDesiredState(ctx, "edge-1", []byte(`{"models":[]}`)); err != nil || !changed {
			return errors.Join(err, errors.New("first write not a change"))
		}
		if r2, changed, err = tx.SetDesiredState(ctx, "edge-1", []byte(`{"models":[]}`)); err != nil || changed {
			return errors.Join(err, errors.New("same doc counted as a change"))
		}
		r3, _, err = tx.SetDesiredState(ctx, "edge-1", []byte(`{"models":[1]}`))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if r1 != r2 || r3 <= r1 {
		t.Fatalf("revisions %d %d %d", r1, r2, r3)
	}
	rev, doc, err := db.DesiredState(ctx, "edge-1")
	if err != nil || rev != r3 || string(doc) != `{"models":[1]}` {
		t.Fatalf("DesiredState = %d %s %v", rev, doc, err)
	}
	if _, _, err := db.DesiredState(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown cluster err = %v", err)
	}
	if err := db.Update(ctx, func(tx *Tx) error { return tx.DeleteDesiredState(ctx, "edge-1") }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.DesiredState(ctx, "edge-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted desired state err = %v", err)
	}
}

func TestSurvivesReopen(t *testing.T) {
	ctx := t.Context()
	db, path := open(t)
	c, _, err := db.Apply(ctx, cluster("edge-1", map[string]string{"region": "eu"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx *Tx) error {
		_, _, err := tx.SetDesiredState(ctx, "edge-1", []byte("{}"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rev, _ := db.Revision(ctx)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db2.Close()
	got, err := db2.Get(ctx, v1alpha1.KindCluster, "edge-1")
	if err != nil || got.GetUID() != c.GetUID() || got.GetLabels()["region"] != "eu" {
		t.Fatalf("after reopen Get = %+v, %v", got, err)
	}
	if rev2, _ := db2.Revision(ctx); rev2 != rev {
		t.Fatalf("revision after reopen = %d, want %d", rev2, rev)
	}
	next, _, err := db2.Apply(ctx, cluster("edge-2", nil))
	if err != nil || rv(t, next) != rev+1 {
		t.Fatalf("revision continues: got %s, want %d (%v)", next.GetResourceVersion(), rev+1, err)
	}
	var n int
	if err := db2.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(migrations) {
		t.Fatalf("migrations applied = %d, %v", n, err)
	}
}

func TestChangedBroadcastAndConcurrentWrites(t *testing.T) {
	ctx := t.Context()
	db, _ := open(t)
	ch := db.Changed()
	const writers = 4
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				if _, _, err := db.Apply(ctx, cluster("c"+strconv.Itoa(i)+"-"+strconv.Itoa(j), nil)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed channel not closed after a write")
	}
	wg.Wait()
	if rev, _ := db.Revision(ctx); rev != writers*5 {
		t.Fatalf("revision = %d, want %d", rev, writers*5)
	}
}

func TestCompacted(t *testing.T) {
	ctx := t.Context()
	db, _ := open(t)
	if _, err := db.SQL().ExecContext(ctx, `UPDATE meta SET value = 5 WHERE key = 'compacted'`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Changes(ctx, v1alpha1.KindCluster, 2, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("err = %v, want ErrCompacted", err)
	}
}

// TestClock: the store stamps times from its clock.
func TestClock(t *testing.T) {
	ctx := t.Context()
	start := time.Date(2031, 5, 6, 7, 8, 9, 500, time.UTC)
	c := clock.NewFake(start)
	db, err := Open(ctx, filepath.Join(t.TempDir(), "hub.db"), WithClock(c))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	created, _, err := db.Apply(ctx, md("a", "1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	if got := created.GetCreationTimestamp().Time; !got.Equal(start.Truncate(time.Second)) {
		t.Errorf("creationTimestamp %v, want the clock's %v", got, start.Truncate(time.Second))
	}
	c.Advance(time.Hour)
	if _, _, err := db.Apply(ctx, md("a", "1.1.0")); err != nil {
		t.Fatal(err)
	}
	var createdAt, updatedAt, migrated string
	if err := db.SQL().QueryRowContext(ctx, `SELECT created, updated FROM resources WHERE name = 'a'`).Scan(&createdAt, &updatedAt); err != nil {
		t.Fatal(err)
	}
	if err := db.SQL().QueryRowContext(ctx, `SELECT applied FROM schema_migrations WHERE version = 1`).Scan(&migrated); err != nil {
		t.Fatal(err)
	}
	want := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	if migrated != want(start) || createdAt != want(start) || updatedAt != want(start.Add(time.Hour)) {
		t.Errorf("migration applied %s, resource created %s and updated %s; want %s, %[4]s and %s",
			migrated, createdAt, updatedAt, want(start), want(start.Add(time.Hour)))
	}
}

// A database path is a file name, whatever characters it holds: not a URI
// whose '#' or '?' would cut it short.
func TestOpenPathWithURICharacters(t *testing.T) {
	for _, name := range []string{"a#b", "a?b", "a%23b", "a b", "ä"} {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "hub.db")
		db, err := Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open(%q): %v", path, err)
		}
		if _, _, err := db.Apply(t.Context(), cluster("edge", nil)); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if _, err := os.Stat(path); err != nil {
			t.Errorf("Open(%q) did not create it: %v", path, err)
		}
		db, err = Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Get(t.Context(), v1alpha1.KindCluster, "edge"); err != nil {
			t.Errorf("reopening %q: %v", path, err)
		}
		db.Close()
	}
}

// TestCanceledTransactionLeavesNoTransactionOpen races a context's end with
// the BEGIN of Update and View. The driver may report the context's error for
// a BEGIN that ran; the connection then went back to the pool inside a
// transaction, and the next request on it failed with "cannot start a
// transaction within a transaction".
func TestCanceledTransactionLeavesNoTransactionOpen(t *testing.T) {
	db, _ := open(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				// Deadlines spread over the time a transaction takes.
				c, cancel := context.WithTimeout(ctx, time.Duration((i*7+g)%200)*time.Microsecond)
				fn := func(tx *Tx) error { _, err := tx.Revision(c); return err }
				if i%2 == 0 {
					_ = db.Update(c, fn)
				} else {
					_ = db.View(c, fn)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	testenv.NoOpenTransaction(t, db.SQL(), MaxConnections)
}
