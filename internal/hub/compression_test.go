package hub

import (
	"context"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"outpost.dev/outpost/api/v1alpha1"
)

func TestCompressionWork(t *testing.T) {
	policy := func(name string, models []string, rows ...v1alpha1.CompressedVersion) *v1alpha1.CompressionPolicy {
		return &v1alpha1.CompressionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
			Spec: v1alpha1.CompressionPolicySpec{Models: models}, Status: v1alpha1.CompressionPolicyStatus{Versions: rows}}
	}
	row := func(model, version string, ph v1alpha1.CompressionPhase) v1alpha1.CompressedVersion {
		return v1alpha1.CompressedVersion{Model: model, Version: version, Phase: ph}
	}
	a1, a2, b1 := ModelVersion{"a", "1.0.0", "sha256:a1"}, ModelVersion{"a", "2.0.0", "sha256:a2"}, ModelVersion{"team/b", "1.0.0", "sha256:b1"}
	all := []ModelVersion{a1, a2, b1}
	task := func(p string, v ModelVersion) compressionTask {
		return compressionTask{policy: p, uid: "uid-" + p, version: v}
	}
	deleting := policy("gone", []string{"*"})
	deleting.DeletionTimestamp = &metav1.Time{}
	tests := []struct {
		name     string
		policies []*v1alpha1.CompressionPolicy
		versions []ModelVersion
		want     []compressionTask
	}{
		{"no policy", nil, all, nil},
		{"no version", []*v1alpha1.CompressionPolicy{policy("p", []string{"*"})}, nil, nil},
		{"every model", []*v1alpha1.CompressionPolicy{policy("p", []string{"*"})}, all,
			[]compressionTask{task("p", a1), task("p", a2), task("p", b1)}},
		{"named model", []*v1alpha1.CompressionPolicy{policy("p", []string{"team/b"})}, all, []compressionTask{task("p", b1)}},
		{"no matching model", []*v1alpha1.CompressionPolicy{policy("p", []string{"c", "team"})}, all, nil},
		{"done and failed are not redone", []*v1alpha1.CompressionPolicy{policy("p", []string{"a"},
			row("a", "1.0.0", v1alpha1.CompressionDone), row("a", "2.0.0", v1alpha1.CompressionFailed))}, all, nil},
		{"a new version after a failure", []*v1alpha1.CompressionPolicy{policy("p", []string{"a"},
			row("a", "1.0.0", v1alpha1.CompressionFailed))}, all, []compressionTask{task("p", a2)}},
		{"compressing when cut short is redone", []*v1alpha1.CompressionPolicy{policy("p", []string{"a"},
			row("a", "1.0.0", v1alpha1.CompressionCompressing), row("a", "2.0.0", v1alpha1.CompressionDone))}, all,
			[]compressionTask{task("p", a1)}},
		{"rows of another model do not count", []*v1alpha1.CompressionPolicy{policy("p", []string{"a"},
			row("team/b", "1.0.0", v1alpha1.CompressionDone))}, all, []compressionTask{task("p", a1), task("p", a2)}},
		{"each policy by its own rows, in name order", []*v1alpha1.CompressionPolicy{
			policy("z", []string{"a"}), policy("m", []string{"a"}, row("a", "1.0.0", v1alpha1.CompressionDone))}, all,
			[]compressionTask{task("m", a2), task("z", a1), task("z", a2)}},
		{"a policy being deleted", []*v1alpha1.CompressionPolicy{deleting}, all, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := compressionWork(tt.policies, tt.versions)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("compressionWork = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSetCompressed(t *testing.T) {
	row := func(model, version string, ph v1alpha1.CompressionPhase) v1alpha1.CompressedVersion {
		return v1alpha1.CompressedVersion{Model: model, Version: version, Phase: ph}
	}
	rows := []v1alpha1.CompressedVersion{row("a", "1.0.0", v1alpha1.CompressionDone), row("a", "2.0.0", v1alpha1.CompressionCompressing)}
	tests := []struct {
		name    string
		row     v1alpha1.CompressedVersion
		present func(model, version string) bool
		want    []v1alpha1.CompressedVersion
	}{
		{"replaces its version's row", row("a", "2.0.0", v1alpha1.CompressionFailed), nil,
			[]v1alpha1.CompressedVersion{rows[0], row("a", "2.0.0", v1alpha1.CompressionFailed)}},
		{"appends a new version", row("a", "3.0.0", v1alpha1.CompressionCompressing), nil,
			append(rows[:2:2], row("a", "3.0.0", v1alpha1.CompressionCompressing))},
		{"drops deleted versions", row("a", "3.0.0", v1alpha1.CompressionCompressing),
			func(_, v string) bool { return v != "1.0.0" },
			[]v1alpha1.CompressedVersion{rows[1], row("a", "3.0.0", v1alpha1.CompressionCompressing)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]v1alpha1.CompressedVersion(nil), rows...)
			got := setCompressed(in, tt.row, tt.present)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("setCompressed = %+v, want %+v", got, tt.want)
			}
			if !reflect.DeepEqual(in, rows) {
				t.Errorf("setCompressed changed its input: %+v", in)
			}
		})
	}
}

// fakeCompressor has versions and tells started of each compression; compress gives its outcome.
type fakeCompressor struct {
	versions []ModelVersion
	started  chan CompressionRequest
	compress func(ctx context.Context) ([]v1alpha1.CompressedVariant, error)
}

func (f *fakeCompressor) Versions(context.Context) ([]ModelVersion, error) { return f.versions, nil }

func (f *fakeCompressor) Compress(ctx context.Context, req CompressionRequest) ([]v1alpha1.CompressedVariant, error) {
	f.started <- req
	return f.compress(ctx)
}

// policyRows reads the rows of policy name's status.
func policyRows(t *testing.T, e *env, name string) []v1alpha1.CompressedVersion {
	t.Helper()
	o, err := e.db.Get(t.Context(), v1alpha1.KindCompressionPolicy, name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*v1alpha1.CompressionPolicy).Status.Versions
}

// The compression loop runs in the background: requests are served while a version is
// compressed, the row says Compressing meanwhile, a hub stopped mid-way leaves it so, and
// the hub started again compresses the version again and records the outcome.
func TestCompressionLoop(t *testing.T) {
	e := newEnv(t, nil)
	a1 := ModelVersion{Model: "a", Version: "1.0.0", Digest: "sha256:a1"}
	start := func(ctx context.Context, compress func(ctx context.Context) ([]v1alpha1.CompressedVariant, error)) (*Server, *fakeCompressor) {
		f := &fakeCompressor{versions: []ModelVersion{a1}, started: make(chan CompressionRequest, 1), compress: compress}
		cfg := e.cfg
		cfg.Compressor, cfg.CompressionInterval = f, 10*time.Millisecond
		srv, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return srv, f
	}
	await := func(f *fakeCompressor) CompressionRequest {
		t.Helper()
		select {
		case req := <-f.started:
			return req
		case <-time.After(30 * time.Second):
			t.Fatal("no compression started")
			return CompressionRequest{}
		}
	}

	ctx, stop := context.WithCancel(t.Context())
	srv, f := start(ctx, func(ctx context.Context) ([]v1alpha1.CompressedVariant, error) {
		<-ctx.Done() // until the hub stops
		return nil, ctx.Err()
	})
	e.mustPut("compressionpolicies", "p", "apiVersion: ml.outpost.dev/v1alpha1\nkind: CompressionPolicy\nmetadata: {name: p}\n"+
		"spec: {models: [a], data: {path: /data}, maxAccuracyDrop: \"0.5\"}\n")
	req := await(f)
	if req.Policy != "p" || req.Version != a1 || req.Spec.MaxAccuracyDropValue() != 0.5 {
		t.Errorf("request %+v", req)
	}
	if rows := policyRows(t, e, "p"); len(rows) != 1 || rows[0].Phase != v1alpha1.CompressionCompressing || rows[0].Digest != a1.Digest {
		t.Errorf("while compressing: %+v", rows)
	}
	// Requests do not wait for the compression.
	e.mustPut("compressionpolicies", "q", "apiVersion: ml.outpost.dev/v1alpha1\nkind: CompressionPolicy\nmetadata: {name: q}\n"+
		"spec: {models: [b], data: {path: /data}}\n")
	stop()
	srv.Wait()
	if rows := policyRows(t, e, "p"); len(rows) != 1 || rows[0].Phase != v1alpha1.CompressionCompressing {
		t.Errorf("after the hub stopped: %+v", rows)
	}

	srv, f = start(t.Context(), func(context.Context) ([]v1alpha1.CompressedVariant, error) {
		return []v1alpha1.CompressedVariant{{Name: "int8", SizeRatio: "0.254", AccuracyDrop: "0.20"}}, nil
	})
	t.Cleanup(srv.Wait)
	await(f)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows := policyRows(t, e, "p")
		if len(rows) == 1 && rows[0].Phase == v1alpha1.CompressionDone {
			if len(rows[0].Variants) != 1 || rows[0].Variants[0].Name != "int8" || rows[0].Updated == nil {
				t.Errorf("done: %+v", rows[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not done after 30s: %+v", rows)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rows := policyRows(t, e, "q"); len(rows) != 0 {
		t.Errorf("policy q of model b has rows %+v", rows)
	}
}
