package feedback

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "feedback.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// req is a request of n samples of shape [2], sample i holding (base+i, -(base+i)),
// each predicted as class i%3.
func req(dep, version, id string, base float32, n int) Request {
	r := Request{Deployment: dep, Version: version, ID: id, Shape: []int{2}, At: time.Unix(0, 0)}
	for i := range n {
		v := base + float32(i)
		r.X = append(r.X, v, -v)
		r.Predicted = append(r.Predicted, i%3)
	}
	return r
}

func TestKeepLabelAccuracy(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	if err := s.Keep(ctx, req("fashion", "1.0.0", "a", 0, 3), 100); err != nil {
		t.Fatal(err)
	}
	if err := s.Keep(ctx, req("fashion", "1.1.0", "b", 10, 2), 100); err != nil {
		t.Fatal(err)
	}
	// a's predictions are 0, 1, 2: two of these labels are right.
	got, err := s.Label(ctx, "fashion", "a", []int{0, 1, 0})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Labelled{Version: "1.0.0", Samples: 3, Correct: 2}); got != want {
		t.Fatalf("Label = %+v, want %+v", got, want)
	}
	for _, tt := range []struct {
		version string
		want    Accuracy
	}{{"1.0.0", Accuracy{3, 2}}, {"1.1.0", Accuracy{}}, {"2.0.0", Accuracy{}}} {
		a, err := s.Accuracy(ctx, "fashion", tt.version)
		if err != nil || a != tt.want {
			t.Errorf("Accuracy(%s) = %+v, %v; want %+v", tt.version, a, err, tt.want)
		}
	}
	// Relabelling replaces.
	if _, err := s.Label(ctx, "fashion", "a", []int{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Accuracy(ctx, "fashion", "1.0.0"); a != (Accuracy{3, 3}) {
		t.Errorf("after relabelling: %+v", a)
	}
	set, err := s.Labelled(ctx, "fashion", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(set.Shape, []int{2}) || !slices.Equal(set.Labels, []uint8{0, 1, 2}) ||
		!slices.Equal(set.X, []float32{0, 0, 1, -1, 2, -2}) {
		t.Fatalf("Labelled = %+v", set)
	}
}

func TestLabelErrors(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	if err := s.Keep(ctx, req("fashion", "1.0.0", "a", 0, 2), 100); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, dep, id string
		labels        []int
		want          error
	}{
		{"unknown id", "fashion", "zzz", []int{1, 2}, ErrUnknownRequest},
		{"other deployment", "shoes", "a", []int{1, 2}, ErrUnknownRequest},
		{"too few", "fashion", "a", []int{1}, ErrLabelCount},
		{"too many", "fashion", "a", []int{1, 2, 3}, ErrLabelCount},
		{"negative", "fashion", "a", []int{1, -1}, nil},
		{"too large", "fashion", "a", []int{256, 1}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Label(ctx, tt.dep, tt.id, tt.labels)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Label = %v, want %v", err, tt.want)
			}
		})
	}
	// Nothing was labelled by the refused calls.
	if a, _ := s.Accuracy(ctx, "fashion", "1.0.0"); a.Labelled != 0 {
		t.Fatalf("refused labels were kept: %+v", a)
	}
}

func TestKeepRefusesInconsistentRequests(t *testing.T) {
	s := open(t)
	bad := []Request{
		{Deployment: "d", ID: "", Shape: []int{1}, X: []float32{1}, Predicted: []int{0}},
		{Deployment: "", ID: "x", Shape: []int{1}, X: []float32{1}, Predicted: []int{0}},
		{Deployment: "d", ID: "x", Shape: []int{2}, X: []float32{1}, Predicted: []int{0}},
		{Deployment: "d", ID: "x", Shape: []int{0}, X: nil, Predicted: []int{0}},
		{Deployment: "d", ID: "x", Shape: []int{1}, X: nil, Predicted: nil},
		{Deployment: "d", ID: string(make([]byte, MaxRequestID+1)), Shape: []int{1}, X: []float32{1}, Predicted: []int{0}},
	}
	for i, r := range bad {
		if err := s.Keep(context.Background(), r, 10); err == nil {
			t.Errorf("request %d kept: %+v", i, r)
		}
	}
}

// TestKeepBound checks that a deployment keeps its limit (here 10, so at
// most 11 before it is trimmed back to 10), dropping
// unlabelled samples before labelled ones and old before new, and leaves
// other deployments alone.
func TestKeepBound(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Keep(ctx, req("other", "1", "o", 0, 5), 10))
	must(s.Keep(ctx, req("d", "1", "r1", 0, 3), 10))
	must(s.Keep(ctx, req("d", "1", "r2", 3, 3), 10))
	if _, err := s.Label(ctx, "d", "r1", []int{7, 7, 7}); err != nil {
		t.Fatal(err)
	}
	must(s.Keep(ctx, req("d", "1", "r3", 6, 3), 10))
	must(s.Keep(ctx, req("d", "1", "r4", 9, 3), 10)) // 12 > 11: r2 (oldest unlabelled) goes
	if _, err := s.Label(ctx, "d", "r2", []int{1, 1, 1}); !errors.Is(err, ErrUnknownRequest) {
		t.Fatalf("r2 still kept: %v", err)
	}
	for _, id := range []string{"r1", "r3", "r4"} {
		if _, err := s.Label(ctx, "d", id, []int{7, 7, 7}); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	must(s.Keep(ctx, req("d", "1", "r5", 12, 3), 10)) // all others labelled: r1 goes, not r5
	set, err := s.Labelled(ctx, "d", 0)
	must(err)
	if want := []float32{6, -6, 7, -7, 8, -8, 9, -9, 10, -10, 11, -11}; !slices.Equal(set.X, want) {
		t.Fatalf("labelled X = %v, want %v", set.X, want)
	}
	if _, err := s.Label(ctx, "d", "r5", []int{1, 1, 1}); err != nil {
		t.Fatalf("the newest request was dropped: %v", err)
	}
	// A request larger than the limit is not kept; keeping an id again replaces it.
	must(s.Keep(ctx, req("d", "1", "big", 0, 11), 10))
	if _, err := s.Label(ctx, "d", "big", make([]int, 11)); !errors.Is(err, ErrUnknownRequest) {
		t.Fatalf("a request over the limit was kept: %v", err)
	}
	must(s.Keep(ctx, req("d", "2", "r5", 100, 1), 10))
	if l, err := s.Label(ctx, "d", "r5", []int{0}); err != nil || l.Version != "2" || l.Samples != 1 {
		t.Fatalf("replaced request: %+v, %v", l, err)
	}
	if a, _ := s.Accuracy(ctx, "other", "1"); a.Labelled != 0 {
		t.Fatal("other deployment touched")
	}
	o, err := s.Labelled(ctx, "other", 0)
	must(err)
	if o.Len() != 0 {
		t.Fatalf("other: %d labelled", o.Len())
	}
}

func TestLabelledLimitAndFingerprint(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	for i, id := range []string{"a", "b", "c"} {
		if err := s.Keep(ctx, req("d", "1", id, float32(10*i), 1), 100); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Label(ctx, "d", id, []int{i}); err != nil {
			t.Fatal(err)
		}
	}
	set, err := s.Labelled(ctx, "d", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(set.Labels, []uint8{1, 2}) || !slices.Equal(set.X, []float32{10, -10, 20, -20}) {
		t.Fatalf("the 2 most recent, oldest first: %+v", set)
	}
	all, _ := s.Labelled(ctx, "d", 0)
	if _, err := s.Label(ctx, "d", "b", []int{5}); err != nil {
		t.Fatal(err)
	}
	relabelled, _ := s.Labelled(ctx, "d", 0)
	same, _ := s.Labelled(ctx, "d", 0)
	if all.Fingerprint == relabelled.Fingerprint || relabelled.Fingerprint != same.Fingerprint {
		t.Fatalf("fingerprints: %s, after relabelling %s, again %s", all.Fingerprint, relabelled.Fingerprint, same.Fingerprint)
	}
}

// TestLabelledKeepsTheLatestShape checks that samples kept before the
// model's input shape changed are left out of the set.
func TestLabelledKeepsTheLatestShape(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	old := Request{Deployment: "d", Version: "1", ID: "old", Shape: []int{3}, X: []float32{1, 2, 3}, Predicted: []int{0}}
	if err := s.Keep(ctx, old, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.Keep(ctx, req("d", "2", "new", 0, 1), 100); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"old", "new"} {
		if _, err := s.Label(ctx, "d", id, []int{1}); err != nil {
			t.Fatal(err)
		}
	}
	set, err := s.Labelled(ctx, "d", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(set.Shape, []int{2}) || set.Len() != 1 {
		t.Fatalf("set = %+v", set)
	}
}
