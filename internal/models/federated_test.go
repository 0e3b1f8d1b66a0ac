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
	"outpost.dev/outpost/internal/fl"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/train"
)

// Federated reads an initial model of either arch from the registry as internal/train wrote
// it, and publishes a global model as a signed version with its lineage, once however often
// it is asked.
func TestFederated(t *testing.T) {
	mlp, err := train.NewMLP([]int{6, 4, 3}, 5).MarshalONNX("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cnn, err := train.NewCNN(5).MarshalONNX("tiny")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		arch, other string
		file        []byte
		spec        fl.ModelSpec
	}{
		{"mlp", "cnn", mlp, fl.ModelSpec{Arch: "mlp", Sizes: []int{6, 4, 3}}},
		{"cnn", "mlp", cnn, fl.ModelSpec{Arch: "cnn"}},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			reg, host := testHub(t)
			ctx := t.Context()
			pushVersion(t, host, "tiny", "1.0.0", string(tc.file))
			pub, key, err := artifact.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			f := NewFederated(reg, key)
			spec, w, res, err := f.Initial(ctx, "tiny", "1.0.0", tc.arch)
			if err != nil {
				t.Fatal(err)
			}
			_, want, err := fl.ReadONNX(tc.arch, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Arch != tc.spec.Arch || !slices.Equal(spec.Sizes, tc.spec.Sizes) || fl.Digest(w) != fl.Digest(want) ||
				!strings.HasPrefix(res.Digest, "sha256:") {
				t.Fatalf("Initial = %+v, weights %s, %+v; want %+v, weights %s", spec, fl.Digest(w), res, tc.spec, fl.Digest(want))
			}
			for _, bad := range []struct{ name, version, arch, want string }{
				{"tiny", "9.9.9", tc.arch, "not found"},
				{"tiny", "1.0.0", tc.other, "model tiny:1.0.0 (arch " + tc.other + "): train: ONNX"},
				{"tiny", "1.0.0", "rnn", `model.arch "rnn"`},
				{"Bad Name", "1.0.0", tc.arch, "Bad Name"},
			} {
				if _, _, _, err := f.Initial(ctx, bad.name, bad.version, bad.arch); err == nil || !strings.Contains(err.Error(), bad.want) {
					t.Errorf("Initial(%s, %s, %s) = %v, want an error with %q", bad.name, bad.version, bad.arch, err, bad.want)
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
			if _, back, err := fl.ReadONNX(tc.arch, ob); err != nil || fl.Digest(back) != fl.Digest(w) {
				t.Errorf("read back: %v", err)
			}
			// Weights of another shape are refused, and so are other weights under a
			// published version: a version names one digest.
			bad := p
			bad.Version, bad.Weights = "0.2.0", w[:len(w)-1]
			if _, err := f.Publish(ctx, bad); err == nil || !strings.Contains(err.Error(), "model tiny-fl:0.2.0: fl: weights of tensor lengths") {
				t.Errorf("publishing misshapen weights: %v", err)
			}
			w[0][0] += 1
			if _, err := f.Publish(ctx, p); err == nil {
				t.Error("other weights were published under 0.1.0")
			}
		})
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
