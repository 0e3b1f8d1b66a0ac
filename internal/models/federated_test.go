package models

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"oras.land/oras-go/v2/registry/remote"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/train"
)

// Federated reads an initial MLP from the registry as internal/train wrote it, and publishes a
// global model as a signed version with its lineage, once however often it is asked.
func TestFederated(t *testing.T) {
	reg, host := testHub(t)
	ctx := t.Context()
	mlp := train.NewMLP([]int{6, 4, 3}, 5)
	b, err := mlp.MarshalONNX("tiny")
	if err != nil {
		t.Fatal(err)
	}
	pushVersion(t, host, "tiny", "1.0.0", string(b))
	pub, key, err := artifact.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f := NewFederated(reg, key)
	spec, w, res, err := f.Initial(ctx, "tiny", "1.0.0", "mlp")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Arch != "mlp" || !slices.Equal(spec.Sizes, []int{6, 4, 3}) || len(w) != 4 || !slices.Equal(w[0], mlp.Layers[0].W) ||
		!slices.Equal(w[3], mlp.Layers[1].B) || !strings.HasPrefix(res.Digest, "sha256:") {
		t.Fatalf("Initial = %+v, %d tensors, %+v", spec, len(w), res)
	}
	for _, tc := range []struct{ name, version, arch, want string }{
		{"tiny", "9.9.9", "mlp", "not found"},
		{"tiny", "1.0.0", "cnn", `arch "cnn"`},
		{"Bad Name", "1.0.0", "mlp", "Bad Name"},
	} {
		if _, _, _, err := f.Initial(ctx, tc.name, tc.version, tc.arch); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Initial(%s, %s, %s) = %v, want an error with %q", tc.name, tc.version, tc.arch, err, tc.want)
		}
	}
	w[0][0] += 1
	p := hub.FederatedPublication{Name: "tiny-fl", Version: "0.1.0", Parent: "tiny@1.0.0", Model: spec, Weights: w,
		Job: "tiny-fl", Round: 1, Participants: 3, Accuracy: 0.5}
	first, err := f.Publish(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.Publish(ctx, p)
	if err != nil || again.Digest != first.Digest {
		t.Fatalf("publishing again: %+v, %v; first %+v", again, err, first)
	}
	repo := pushTarget(t, host, "tiny-fl")
	info, err := artifact.Inspect(ctx, repo, "0.1.0", []ed25519.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest.String() != first.Digest || info.Lineage.Parent != "tiny@1.0.0" || info.Lineage.FederatedJob != "tiny-fl" ||
		info.Lineage.FederatedRound != "1" || info.Metrics["participants"] != "3" {
		t.Errorf("version 0.1.0: %+v", info)
	}
	valid := 0
	for _, s := range info.Signatures {
		if s.Valid {
			valid++
		}
	}
	if valid != 1 || len(info.Signatures) != 1 {
		t.Errorf("signatures %+v, want one, valid", info.Signatures)
	}
	// The published file is the weights: read back, they are what was published.
	dir := t.TempDir()
	if _, err := artifact.Pull(ctx, repo, "0.1.0", dir, artifact.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	ob, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := train.ImportONNX(ob)
	if err != nil || !slices.Equal(back.Layers[0].W, w[0]) {
		t.Errorf("read back: %v", err)
	}
	// Other weights under a published version are refused: a version names one digest.
	w[0][0] += 1
	if _, err := f.Publish(ctx, p); err == nil {
		t.Error("other weights were published under 0.1.0")
	}
}

// pushTarget opens models/<name> of the registry at host.
func pushTarget(t *testing.T, host, name string) *remote.Repository {
	t.Helper()
	repo, err := remote.NewRepository(host + "/" + RepoPrefix + name)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	return repo
}
