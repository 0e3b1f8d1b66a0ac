package agent

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/durable"
)

// LocalVersion is a model version produced on this cluster (by a pipeline),
// held in an OCI store of its own, to serve here without the hub.
type LocalVersion struct {
	// Deployment is the ModelDeployment whose active version it becomes.
	Deployment string
	// Model and Version name the version; Model must be the deployment's model.
	Model, Version string
	// Manifest is the version's manifest in Store.
	Manifest ocispec.Descriptor
	// Store holds the manifest, its config, its files and its chunk index.
	Store oras.ReadOnlyGraphTarget
}

// DeployLocal makes a version produced on this cluster the active version
// of a deployment, with no hub: it copies the version's blobs into the
// cache, verifying each, and activates it through the version guard, which
// refuses a version not higher than the active one. The version stays
// active until the hub desires a higher version of the model. It returns
// the version it replaced ("" when none). Deploying the active version
// again changes nothing.
func (a *Agent) DeployLocal(ctx context.Context, v LocalVersion) (previous string, err error) {
	row, ok, err := getDeployment(ctx, a.state.db, v.Deployment)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("deploy %s@%s: deployment %q is not on this cluster", v.Model, v.Version, v.Deployment)
	}
	if row.ActiveDigest == v.Manifest.Digest.String() {
		return row.ActiveVersion, nil
	}
	if row.Desired.RequireSignature || a.cfg.RequireSignature {
		return "", fmt.Errorf("deploy %s@%s to %s: the deployment serves only versions signed by a trusted key, and a version "+
			"produced here is not signed; promote it at the hub and sign it there (outpost model promote edge/%s/%s@%s --to %s@VERSION --sign KEY)",
			v.Model, v.Version, v.Deployment, a.name, v.Model, v.Version, v.Model)
	}
	if why := PlanLocal(row.deployed(), row.Desired.Model, v.Model, v.Version); why != "" {
		return "", fmt.Errorf("deploy %s@%s to %s: %s", v.Model, v.Version, v.Deployment, why)
	}
	rec, err := a.cacheLocal(ctx, v)
	if err != nil {
		return "", fmt.Errorf("deploy %s@%s: %w", v.Model, v.Version, err)
	}
	previous, err = a.state.activateLocal(ctx, v, a.clock.Now())
	if err != nil {
		return "", err
	}
	am, err := a.activeModel(ctx, deploymentRow{Name: v.Deployment, Desired: row.Desired, ActiveModel: v.Model,
		ActiveVersion: v.Version, ActiveDigest: rec.Digest, ActiveLocal: true, ActivatedAt: a.clock.Now()}, false)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	a.active[v.Deployment] = am
	delete(a.unservable, v.Deployment)
	a.mu.Unlock()
	a.log.Info("activated a version produced on this cluster", "deployment", v.Deployment, "model", v.Model,
		"version", v.Version, "previous", previous)
	a.activeChanged()
	a.signal(a.reportNow)
	return previous, nil
}

// cacheLocal copies a local version's manifest, config, chunk index and
// files into the cache, and records the manifest.
func (a *Agent) cacheLocal(ctx context.Context, v LocalVersion) (manifestRecord, error) {
	mb, err := fetchSmall(ctx, v.Store, v.Manifest, artifact.MaxManifestBytes)
	if err != nil {
		return manifestRecord{}, fmt.Errorf("manifest: %w", err)
	}
	m, err := artifact.ParseManifest(mb)
	if err != nil {
		return manifestRecord{}, err
	}
	files, err := manifestFiles(m)
	if err != nil {
		return manifestRecord{}, err
	}
	cb, err := fetchSmall(ctx, v.Store, m.Config, artifact.MaxManifestBytes)
	if err != nil {
		return manifestRecord{}, fmt.Errorf("config: %w", err)
	}
	rec := manifestRecord{
		Digest: v.Manifest.Digest.String(), Model: v.Model, Version: v.Version, Size: int64(len(mb)),
		ConfigDigest: m.Config.Digest.String(), CachedAt: a.clock.Now(), Files: files,
	}
	for _, l := range m.Layers {
		if err := a.copyBlob(ctx, v.Store, l); err != nil {
			return rec, err
		}
		rec.FilesSize += l.Size
	}
	switch idx, err := artifact.FetchChunkIndex(ctx, v.Store, v.Manifest); {
	case err == nil:
		b, err := json.Marshal(idx)
		if err != nil {
			return rec, err
		}
		d := digest.SHA256.FromBytes(b)
		if err := a.cache.putBlob(d, b); err != nil {
			return rec, err
		}
		rec.ChunkIndexDigest = d.String()
	case errors.Is(err, artifact.ErrNoChunkIndex):
	default:
		return rec, fmt.Errorf("chunk index: %w", err)
	}
	// A version a pipeline registered with a reference profile is monitored
	// against it, as one from the hub is.
	switch prof := a.fetchProfile(ctx, v.Store, v.Manifest, v.Model, v.Version); {
	case prof.err != nil:
		rec.ProfileError = prof.err.Error()
	case prof.digest != "":
		if err := a.cache.putBlob(prof.digest, prof.data); err != nil {
			return rec, err
		}
		rec.ProfileDigest = prof.digest.String()
	}
	if err := a.cache.putBlob(m.Config.Digest, cb); err != nil {
		return rec, err
	}
	if err := a.cache.putBlob(v.Manifest.Digest, mb); err != nil {
		return rec, err
	}
	return rec, a.state.putManifest(ctx, rec)
}

// copyBlob streams blob d of src into the cache, verified, unless the
// cache has it.
func (a *Agent) copyBlob(ctx context.Context, src oras.ReadOnlyGraphTarget, d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return err
	}
	if a.cache.has(d.Digest, d.Size) {
		return nil
	}
	rc, err := src.Fetch(ctx, d)
	if err != nil {
		return fmt.Errorf("read %s: %w", d.Digest, err)
	}
	defer rc.Close()
	dst := a.cache.blobPath(d.Digest)
	f, err := os.CreateTemp(filepath.Dir(dst), ".local-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := durable.Copy(f, rc, d.Size, d.Digest, nil); err != nil {
		f.Close()
		return fmt.Errorf("copy %s: %w", d.Digest, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(dst))
}

// activateLocal makes a cached local version a deployment's active version
// in one transaction, re-applying the guard against the active version at
// that moment, and records it in the deployment's history.
func (s *stateDB) activateLocal(ctx context.Context, v LocalVersion, now time.Time) (previous string, err error) {
	err = s.update(ctx, func(tx *sql.Tx) error {
		r, ok, err := getDeployment(ctx, tx, v.Deployment)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("deployment %q is not on this cluster", v.Deployment)
		}
		if why := PlanLocal(r.deployed(), r.Desired.Model, v.Model, v.Version); why != "" {
			return errors.New(why)
		}
		previous = r.ActiveVersion
		ts := formatTime(now)
		if err := recordActivation(ctx, tx, r, v.Model, v.Version, v.Manifest.Digest.String(), ts); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE deployments SET active_model = ?, active_version = ?, active_digest = ?,
				active_variant = '', active_local = 1, activated_at = ?, downgraded_from = '', phase = ?, error = '', updated_at = ?
			WHERE name = ?`, v.Model, v.Version, v.Manifest.Digest.String(), ts, string(v1alpha1.PhaseActive), ts, r.Name)
		if err != nil {
			return fmt.Errorf("state: activate %s: %w", r.Name, err)
		}
		return nil
	})
	return previous, err
}
