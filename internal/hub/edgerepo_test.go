package hub

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/registry"
	"outpost.dev/outpost/internal/testenv"
)

// newRegistryEnv is a hub with its real registry and authenticator, and clusters edge-1 and
// edge-2 joined; it returns their credentials.
func newRegistryEnv(t *testing.T) (*agentEnv, map[string]string) {
	t.Helper()
	e := newAgentEnv(t, func(cfg *Config) {
		reg, err := registry.New(t.Context(), registry.Options{Root: filepath.Join(t.TempDir(), "oci"), DB: cfg.DB.SQL(),
			Authorize: cfg.Authorize, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Registry = reg
	})
	tok := e.createToken(3600, "").Token
	creds := map[string]string{}
	for _, c := range []string{"edge-1", "edge-2"} {
		creds[c] = e.mustJoin(tok, c, nil)
	}
	return e, creds
}

// repo opens repository name of the hub's registry with token.
func (e *agentEnv) repo(t *testing.T, name, token string) *remote.Repository {
	t.Helper()
	host := strings.TrimPrefix(e.base, "http://")
	r, err := remote.NewRepository(host + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	r.PlainHTTP = true
	r.Client = &orasauth.Client{Client: http.DefaultClient, Cache: orasauth.NewCache(),
		Credential: orasauth.StaticCredential(host, orasauth.Credential{Username: "agent", Password: token})}
	return r
}

// modelDir writes a small model folder.
func modelDir(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// forbidden reports whether err is the registry's 403, and its message.
func forbidden(err error) (bool, string) {
	var resp *errcode.ErrorResponse
	if !errors.As(err, &resp) || resp.StatusCode != http.StatusForbidden {
		return false, ""
	}
	return true, resp.Error()
}

// A cluster's credential pushes real model artifacts into its own edge repositories, and
// nowhere else: not the fleet's models, not another cluster's, and a cross-repository mount
// does not hand it a blob it may not read.
func TestEdgeRepositoryPush(t *testing.T) {
	e, creds := newRegistryEnv(t)
	ctx := t.Context()
	src := modelDir(t, "weights trained on edge-1's data")
	opts := artifact.PushOptions{Name: "fmnist", Version: "1.0.0", Parent: "fmnist:1.0.0",
		ProducedBy: "pipeline/retrain/run/retrain-1", Annotations: map[string]string{artifact.AnnotationCluster: "edge-1"}}

	own := e.repo(t, "edge/edge-1/fmnist", creds["edge-1"])
	desc, err := artifact.Push(ctx, own, src, opts)
	if err != nil {
		t.Fatalf("push to its own edge repository: %v", err)
	}
	info, err := artifact.Inspect(ctx, own, "1.0.0", nil)
	if err != nil || info.Digest != desc.Digest || !info.HasChunkIndex || info.Lineage.ProducedBy != opts.ProducedBy {
		t.Fatalf("inspect = %+v, %v", info, err)
	}
	// Pushed again, the same version is the same: nothing to do.
	if again, err := artifact.Push(ctx, own, src, opts); err != nil || again.Digest != desc.Digest {
		t.Fatalf("push again = %s, %v", again.Digest, err)
	}

	blob := []byte("a blob")
	bdesc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	for _, tt := range []struct{ repo, want string }{
		{"models/fmnist", "writes only its own repositories, under /v2/edge/edge-1/"},
		{"edge/edge-2/fmnist", `hold cluster "edge-2"'s models; its own are under /v2/edge/edge-1/`},
		{"edge/edge-1", "writes only its own repositories, under /v2/edge/edge-1/"},
	} {
		r := e.repo(t, tt.repo, creds["edge-1"])
		if _, err := artifact.Push(ctx, r, src, opts); err == nil {
			t.Errorf("push to %s succeeded", tt.repo)
		}
		// The refusal of a write says what the credential may write.
		err := r.Push(ctx, bdesc, bytes.NewReader(blob))
		if ok, msg := forbidden(err); !ok || !strings.Contains(msg, tt.want) {
			t.Errorf("blob push to %s = %v, want 403 saying %q", tt.repo, err, tt.want)
		}
	}
	// Another cluster reads none of it; the admin reads all of it.
	if _, err := artifact.Inspect(ctx, e.repo(t, "edge/edge-1/fmnist", creds["edge-2"]), "1.0.0", nil); err == nil {
		t.Error("edge-2 read edge-1's model")
	}
	if _, err := artifact.Inspect(ctx, e.repo(t, "edge/edge-1/fmnist", e.admin), "1.0.0", nil); err != nil {
		t.Errorf("the admin reads edge-1's model: %v", err)
	}
	// Nor does a mount from edge-1's repository give edge-2 the blob.
	layer := info.Files[0]
	ldesc := ocispec.Descriptor{MediaType: layer.MediaType, Digest: layer.Digest, Size: layer.Size}
	thief := e.repo(t, "edge/edge-2/stolen", creds["edge-2"])
	err = thief.Mount(ctx, ldesc, "edge/edge-1/fmnist", nil)
	if ok, msg := forbidden(err); !ok || !strings.Contains(msg, "which it may not read") {
		t.Errorf("mount from another cluster's repository = %v", err)
	}
	if ok, err := e.repo(t, "edge/edge-2/stolen", e.admin).Exists(ctx, ldesc); ok || err != nil {
		t.Errorf("the blob reached edge-2's repository: %v, %v", ok, err)
	}
	// A mount from what it may read is fine: the fleet's model into its own repository.
	fleet := e.repo(t, "models/base", e.admin)
	base, err := artifact.Push(ctx, fleet, modelDir(t, "fleet base model"), artifact.PushOptions{Name: "base", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	binfo, err := artifact.Inspect(ctx, fleet, base.Digest.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	bl := ocispec.Descriptor{MediaType: binfo.Files[0].MediaType, Digest: binfo.Files[0].Digest, Size: binfo.Files[0].Size}
	if err := e.repo(t, "edge/edge-2/tuned", creds["edge-2"]).Mount(ctx, bl, "models/base", nil); err != nil {
		t.Errorf("mount from the fleet's models: %v", err)
	}
	// Deleting is the admin's: a cluster's version, once pushed, stays.
	if err := own.Delete(ctx, desc); err == nil {
		t.Error("edge-1 deleted its version")
	} else if _, ferr := own.Resolve(ctx, "1.0.0"); ferr != nil {
		t.Errorf("version gone after a refused delete: %v", ferr)
	}
}

// The real oras CLI pushes with a cluster credential into the cluster's own repository,
// and is refused elsewhere.
func TestEdgeRepositoryOras(t *testing.T) {
	oras := testenv.PeerEnv(t, "OUTPOST_ORAS", "the oras CLI")
	e, creds := newRegistryEnv(t)
	host := strings.TrimPrefix(e.base, "http://")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), []byte("edge weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, oras, append(args, "--plain-http", "-u", "agent", "--password-stdin")...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, ".docker"))
		cmd.Stdin = strings.NewReader(creds["edge-1"])
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	if out, err := run("push", host+"/edge/edge-1/notes:1.0.0", "model.onnx"); err != nil {
		t.Fatalf("oras push to its own repository: %v\n%s", err, out)
	}
	if out, err := run("repo", "tags", host+"/edge/edge-1/notes"); err != nil || strings.TrimSpace(out) != "1.0.0" {
		t.Errorf("oras repo tags = %q, %v", out, err)
	}
	for _, ref := range []string{host + "/models/notes:1.0.0", host + "/edge/edge-2/notes:1.0.0"} {
		out, err := run("push", ref, "model.onnx")
		if err == nil || !strings.Contains(out, "403") && !strings.Contains(strings.ToLower(out), "denied") {
			t.Errorf("oras push to %s = %v\n%s", ref, err, out)
		}
	}
}
