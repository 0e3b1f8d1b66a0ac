package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/bundle"
	"outpost.dev/outpost/internal/durable"
	"outpost.dev/outpost/internal/outbox"
)

// Bundle state in the data directory.
const (
	// bundleKeyFile holds the cluster's ed25519 private key (PEM, 0600),
	// created at join; it signs the cluster's status bundles.
	bundleKeyFile = "bundle.key"
	// bundleStageDir holds the parts of bundles being imported.
	bundleStageDir = "bundles"

	metaHubBundleKey = "hub_bundle_key"  // the hub's public key, base64, pinned at join
	metaStatusSeq    = "status_seq"      // the last status bundle's sequence number
	metaStatusOut    = "status_exported" // JSON: sequence number -> keys of the records exported in it
)

// ErrStale is returned by ImportBundle for a bundle older than the state
// the agent applied; the refusal is counted and reported as any stale
// desired state is.
var ErrStale = errors.New("bundle is older than the applied desired state")

// bundleKey returns the cluster's bundle key, creating it on first use.
func (a *Agent) bundleKey() (ed25519.PrivateKey, error) {
	p := filepath.Join(a.cfg.Dir, bundleKeyFile)
	b, err := os.ReadFile(p)
	if err == nil {
		return artifact.ParsePrivateKeyPEM(b)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read bundle key: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	pem, err := artifact.MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(p, pem, 0o600); err != nil {
		return nil, fmt.Errorf("store bundle key: %w", err)
	}
	return key, nil
}

// BundlePublicKey is the cluster's public key for status bundles (created
// when missing), as the hub records it at join.
func (a *Agent) BundlePublicKey() (ed25519.PublicKey, error) {
	k, err := a.bundleKey()
	if err != nil {
		return nil, err
	}
	return k.Public().(ed25519.PublicKey), nil
}

// HubBundleKey returns the hub's bundle key pinned at join; nil if none is.
func (a *Agent) HubBundleKey(ctx context.Context) (ed25519.PublicKey, error) {
	s, err := a.state.meta(ctx, metaHubBundleKey)
	if err != nil || s == "" {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("agent: pinned hub bundle key is damaged")
	}
	return ed25519.PublicKey(b), nil
}

// PinHubBundleKey pins the hub's bundle key, for a cluster provisioned
// without a network join; a key pinned already is never replaced.
func (a *Agent) PinHubBundleKey(ctx context.Context, pub ed25519.PublicKey) error {
	old, err := a.HubBundleKey(ctx)
	if err != nil {
		return err
	}
	if old != nil && !old.Equal(pub) {
		return fmt.Errorf("agent: another hub bundle key (%s) is pinned already", bundle.KeyID(old))
	}
	return a.state.setMeta(ctx, metaHubBundleKey, base64.StdEncoding.EncodeToString(pub))
}

// BundleResult says what an import did.
type BundleResult struct {
	// Bundle is the bundle's id.
	Bundle string
	// Verdict is the guard's verdict on the bundle's desired state.
	Verdict Verdict
	// Revision is the bundle's desired-state revision.
	Revision int64
	// Blobs and Bytes count what was copied into the cache.
	Blobs int
	Bytes int64
	// Activated lists the deployments whose desired version became active.
	Activated []string
	// Freed counts the outbox records freed by the hub's acknowledgment.
	Freed int
}

// ImportBundle imports the outbound bundle at path: a bundle's layout
// folder, its signed list of parts, or a folder holding one. Parts are
// staged under the data directory until all have come. Everything is
// verified before anything is applied: the hub's signature with the key
// pinned at join, that the bundle is for this cluster, that it is not older
// than the applied state, and every blob's digest as it enters the cache.
// Then the desired state goes through the version guard and, when the
// agent is not running, every version whose bytes are all cached is
// activated at once. Importing the same bundle again changes nothing; an
// import killed at any point can be run again.
func (a *Agent) ImportBundle(ctx context.Context, path string) (BundleResult, error) {
	var res BundleResult
	hubKey, err := a.HubBundleKey(ctx)
	if err != nil {
		return res, err
	}
	if hubKey == nil {
		return res, errors.New("agent: no hub bundle key pinned: join the hub once (it pins its key), or pin it at provisioning")
	}
	keys := []ed25519.PublicKey{hubKey}
	dir, err := a.resolveBundle(ctx, path, keys)
	if err != nil {
		return res, err
	}
	l, err := bundle.Open(ctx, dir, keys)
	if err != nil {
		return res, fmt.Errorf("agent: %w", err)
	}
	staged := filepath.Clean(dir) != filepath.Clean(path)
	l.Private = staged
	res.Bundle = l.Contents.ID
	cs, err := l.Contents.For(a.name)
	if err != nil {
		return res, fmt.Errorf("agent: %w", err)
	}
	res.Revision = cs.Desired.Revision
	applied, err := a.state.applied(ctx)
	if err != nil {
		return res, err
	}
	d := Decide(applied, &cs.Desired, SourceBundle)
	res.Verdict = d.Verdict
	switch d.Verdict {
	case RejectInvalid:
		return res, fmt.Errorf("agent: bundle refused: %s", d.Reason)
	case RejectStale:
		// Counted and reported as any stale document; nothing else changes.
		if _, err := a.Apply(ctx, &cs.Desired, SourceBundle); err != nil {
			return res, err
		}
		return res, fmt.Errorf("agent: %w: bundle revision %d, applied %d", ErrStale, cs.Desired.Revision, applied.Revision)
	}
	// Every blob the desired versions need, verified into the cache.
	for _, want := range cs.Desired.Models {
		if err := a.importModel(ctx, l, want, &res); err != nil {
			return res, fmt.Errorf("agent: import %s@%s: %w", want.Model, want.Version, err)
		}
	}
	if d.Verdict == Apply {
		if _, err := a.Apply(ctx, &cs.Desired, SourceBundle); err != nil {
			return res, err
		}
	}
	if !a.running() {
		if res.Activated, err = a.activateCached(ctx); err != nil {
			return res, err
		}
	}
	if res.Freed, err = a.ackStatus(ctx, cs.StatusAck); err != nil {
		return res, err
	}
	if staged {
		// Its blobs are in the cache now (linked or copied): the staged
		// parts and layout go, renamed first so that a kill half way
		// leaves nothing a later import would read.
		gone := filepath.Join(filepath.Dir(filepath.Dir(dir)), "."+filepath.Base(filepath.Dir(dir))+".removing")
		if err := os.Rename(filepath.Dir(dir), gone); err != nil {
			a.log.Warn("remove a staged bundle", "err", err)
		} else if err := os.RemoveAll(gone); err != nil {
			a.log.Warn("remove a staged bundle", "err", err)
		}
	}
	return res, nil
}

// running reports whether Run's loops run (they reconcile by themselves).
func (a *Agent) running() bool {
	select {
	case <-a.ready:
		return true
	default:
		return false
	}
}

// resolveBundle returns the layout folder of the bundle at path, staging
// its parts first when path is (or holds) a list of parts.
func (a *Agent) resolveBundle(ctx context.Context, path string, keys []ed25519.PublicKey) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("agent: %w", err)
	}
	parts := path
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, ocispec.ImageLayoutFile)); err == nil {
			return path, nil
		}
		m, _ := filepath.Glob(filepath.Join(path, "*.parts.json"))
		if len(m) != 1 {
			return "", fmt.Errorf("agent: %s is neither a bundle layout nor a folder with one list of parts (*.parts.json): %d found", path, len(m))
		}
		parts = m[0]
	}
	stage := filepath.Join(a.cfg.Dir, bundleStageDir)
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return "", err
	}
	// What an import killed while removing its staged bundle left.
	if left, _ := filepath.Glob(filepath.Join(stage, ".*.removing")); len(left) > 0 {
		for _, l := range left {
			os.RemoveAll(l)
		}
	}
	dir, err := bundle.Stage(ctx, parts, stage, keys)
	if err != nil {
		return "", fmt.Errorf("agent: %w", err)
	}
	return dir, nil
}

// importModel caches want's manifest (with its config, chunk index,
// profile and signature) and files from the bundle, each verified.
func (a *Agent) importModel(ctx context.Context, l *bundle.Layout, want v1alpha1.DesiredModel, res *BundleResult) error {
	rec, ok, err := a.state.manifest(ctx, want.Digest)
	if err != nil {
		return err
	}
	if !ok || !a.cache.has(digest.Digest(rec.Digest), rec.Size) {
		d := digest.Digest(want.Digest)
		if err := d.Validate(); err != nil {
			return err
		}
		mb, err := l.ReadSmall(d, artifact.MaxManifestBytes)
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		if rec, _, err = a.cacheManifest(ctx, l.Store, mb, want, false); err != nil {
			return err
		}
		res.Blobs++
	}
	for _, f := range rec.Files {
		d := digest.Digest(f.Digest)
		if a.cache.has(d, f.Size) {
			continue
		}
		if dl, ok := l.Contents.Delta(d); ok {
			n, err := a.applyBundleDelta(l, dl, f)
			if err != nil {
				return fmt.Errorf("file %s: %w", f.Path, err)
			}
			res.Blobs++
			res.Bytes += n
			continue
		}
		if pack, ok := l.Contents.Pack(d); ok {
			n, err := a.unpackFile(ctx, l, pack, rec, f)
			if err != nil {
				return fmt.Errorf("file %s: %w", f.Path, err)
			}
			res.Blobs++
			res.Bytes += n
			continue
		}
		if err := l.CopyTo(d, a.cache.blobPath(d)); err != nil {
			return fmt.Errorf("file %s: %w (the bundle lacks what this cluster does not hold, or is damaged)", f.Path, err)
		}
		res.Blobs++
		res.Bytes += f.Size
	}
	return nil
}

// unpackFile rebuilds file f of rec in the cache from the chunks of pack
// and those the cache holds in other files, each chunk checked against its
// digest and the whole file against its own; it returns the bytes read
// from the pack.
func (a *Agent) unpackFile(ctx context.Context, l *bundle.Layout, pack bundle.Pack, rec manifestRecord, f fileRecord) (int64, error) {
	if rec.ChunkIndexDigest == "" {
		return 0, errors.New("the bundle carries it as chunks, but the version has no chunk index")
	}
	idx, err := a.chunkIndex(digest.Digest(rec.ChunkIndexDigest))
	if err != nil {
		return 0, err
	}
	fc := idx.File(f.Path)
	if fc == nil || fc.Digest != digest.Digest(f.Digest) {
		return 0, errors.New("the chunk index does not list the file")
	}
	have, err := a.chunkMap(ctx)
	if err != nil {
		return 0, err
	}
	inPack := make(map[digest.Digest][2]int64, len(pack.Chunks))
	var off int64
	for _, c := range pack.Chunks {
		inPack[c.Digest] = [2]int64{off, c.Size}
		off += c.Size
	}
	src, err := os.Open(bundle.BlobPath(l.Dir, pack.Blob))
	if err != nil {
		return 0, fmt.Errorf("%w: pack %s: %v", bundle.ErrIncomplete, pack.Blob, err)
	}
	defer src.Close()
	dst := a.cache.blobPath(digest.Digest(f.Digest))
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".bundle-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	w := durable.NewWriter(tmp)
	var fromPack int64
	buf := make([]byte, 0, 1<<20)
	for _, c := range fc.Chunks {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		buf = slicesGrow(buf, int(c.Length))
		if p, ok := inPack[c.Digest]; ok {
			if _, err := src.ReadAt(buf, p[0]); err != nil {
				return 0, fmt.Errorf("pack %s: %w", pack.Blob, err)
			}
			fromPack += c.Length
		} else if loc, ok := have[c.Digest]; ok {
			if err := readChunk(loc, buf); err != nil {
				return 0, err
			}
		} else {
			return 0, fmt.Errorf("%w: chunk %s is neither in the bundle nor in the cache (the bundle was made for what another cache holds)", bundle.ErrIncomplete, c.Digest)
		}
		if digest.FromBytes(buf) != c.Digest {
			return 0, fmt.Errorf("chunk %s at %d: %w", c.Digest, c.Offset, bundle.ErrDigest)
		}
		if _, err := w.Write(buf); err != nil {
			return 0, err
		}
	}
	if w.Size() != f.Size || w.Digest() != digest.Digest(f.Digest) {
		return 0, fmt.Errorf("rebuilt file: %w", bundle.ErrDigest)
	}
	if err := w.Sync(); err != nil {
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return 0, err
	}
	return fromPack, durable.SyncDir(filepath.Dir(dst))
}

// applyBundleDelta rebuilds file f in the cache from the weight delta dl
// the bundle carries and the file it applies to, which the cache must
// hold; the result is checked against f's digest. It returns the delta's
// size.
func (a *Agent) applyBundleDelta(l *bundle.Layout, dl bundle.Delta, f fileRecord) (int64, error) {
	if !a.cache.has(dl.Base.Digest, dl.Base.Size) {
		return 0, fmt.Errorf("%w: the bundle carries it as a weight delta against %s, which this cache does not hold (the bundle was made for what another cache holds)", bundle.ErrIncomplete, dl.Base.Digest)
	}
	size, ok := l.Listed(dl.Blob)
	if !ok {
		return 0, fmt.Errorf("%w: blob %s is not in the bundle", bundle.ErrIncomplete, dl.Blob)
	}
	delta, err := os.Open(bundle.BlobPath(l.Dir, dl.Blob))
	if err != nil {
		return 0, fmt.Errorf("%w: weight delta %s: %v", bundle.ErrIncomplete, dl.Blob, err)
	}
	defer delta.Close()
	err = a.applyDelta(artifact.FileDelta{
		Path: f.Path, Target: digest.Digest(f.Digest), TargetSize: f.Size, Base: dl.Base.Digest, BaseSize: dl.Base.Size,
		Blob: ocispec.Descriptor{Digest: dl.Blob, Size: size},
	}, io.LimitReader(delta, size))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", bundle.ErrDigest, err)
	}
	return size, nil
}

// slicesGrow returns b resized to n bytes.
func slicesGrow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// readChunk reads a chunk held in a cached file into buf.
func readChunk(loc chunkLoc, buf []byte) error {
	f, err := os.Open(loc.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(buf, loc.Offset)
	return err
}

// activateCached activates every desired version whose files are all in
// the cache, as the reconcile loop would, and returns their deployments.
func (a *Agent) activateCached(ctx context.Context) ([]string, error) {
	rows, err := a.state.deployments(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rows {
		want := r.Desired
		if want.Digest == "" || want.Digest == r.ActiveDigest || r.Phase == v1alpha1.PhaseFailed {
			continue
		}
		rec, ok, err := a.state.manifest(ctx, want.Digest)
		if err != nil {
			return out, err
		}
		whole := ok
		for _, f := range rec.Files {
			whole = whole && a.cache.has(digest.Digest(f.Digest), f.Size)
		}
		if !whole {
			continue
		}
		if err := a.sync(ctx, want); err != nil {
			return out, fmt.Errorf("activate %s: %w", r.Name, err)
		}
		out = append(out, r.Name)
	}
	return out, nil
}

// ExportStatus returns a status bundle: the cluster's report, the manifest
// digests it holds and every outbox record the hub has not acknowledged,
// signed with the cluster's key. Each call takes the next sequence number;
// the records stay in the outbox until an outbound bundle acknowledges the
// status bundle that carried them (or they are delivered online).
func (a *Agent) ExportStatus(ctx context.Context) ([]byte, *bundle.Status, error) {
	key, err := a.bundleKey()
	if err != nil {
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	rep, err := a.Report(ctx)
	if err != nil {
		return nil, nil, err
	}
	recs, err := a.outbox.Next(ctx, 0, 1<<20, bundle.MaxDocBytes/2)
	if err != nil {
		return nil, nil, err
	}
	seq, err := a.state.meta(ctx, metaStatusSeq)
	if err != nil {
		return nil, nil, err
	}
	n, _ := strconv.ParseInt(seq, 10, 64)
	st := &bundle.Status{Cluster: a.name, Seq: n + 1, Created: a.clock.Now().UTC(), Report: rep}
	for _, ca := range rep.Status.CachedArtifacts {
		st.Inventory = append(st.Inventory, digest.Digest(ca.Digest))
	}
	keys := make([]string, 0, len(recs))
	for _, r := range recs {
		st.Records = append(st.Records, v1alpha1.OutboxRecord{Key: r.Key, Kind: r.Kind, Priority: int(r.Priority),
			Created: metav1.NewTime(r.Created), Payload: r.Payload})
		keys = append(keys, r.Key)
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, nil, err
	}
	env, err := bundle.Sign(bundle.PayloadStatus, payload, key)
	if err != nil {
		return nil, nil, err
	}
	exported, err := a.statusExported(ctx)
	if err != nil {
		return nil, nil, err
	}
	exported[st.Seq] = keys
	if err := a.setStatusExported(ctx, exported); err != nil {
		return nil, nil, err
	}
	if err := a.state.setMeta(ctx, metaStatusSeq, strconv.FormatInt(st.Seq, 10)); err != nil {
		return nil, nil, err
	}
	return env, st, nil
}

func (a *Agent) statusExported(ctx context.Context) (map[int64][]string, error) {
	s, err := a.state.meta(ctx, metaStatusOut)
	if err != nil {
		return nil, err
	}
	m := map[int64][]string{}
	if s != "" {
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			return nil, fmt.Errorf("agent: exported status bundles: %w", err)
		}
	}
	return m, nil
}

func (a *Agent) setStatusExported(ctx context.Context, m map[int64][]string) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return a.state.setMeta(ctx, metaStatusOut, string(b))
}

// ackStatus frees the outbox records of the status bundles up to ack,
// which the hub imported, and returns how many it freed.
func (a *Agent) ackStatus(ctx context.Context, ack int64) (int, error) {
	if ack <= 0 {
		return 0, nil
	}
	exported, err := a.statusExported(ctx)
	if err != nil {
		return 0, err
	}
	keys, seqs := bundle.Acked(exported, ack)
	if len(seqs) == 0 {
		return 0, nil
	}
	outcomes := make([]outbox.Outcome, 0, len(keys))
	freed := 0
	for _, k := range keys {
		has, err := a.outbox.Has(ctx, k)
		if err != nil {
			return 0, err
		}
		if has {
			freed++
			outcomes = append(outcomes, outbox.Outcome{Key: k, Done: true})
		}
	}
	if err := a.outbox.Ack(ctx, outcomes); err != nil {
		return 0, err
	}
	for _, s := range seqs {
		delete(exported, s)
	}
	if err := a.setStatusExported(ctx, exported); err != nil {
		return 0, err
	}
	a.log.Info("hub acknowledged status bundles", "upTo", ack, "freed", freed)
	return freed, nil
}

// DefaultImportWatchInterval is how often a running agent looks for what
// 'outpost bundle import', another process, changed in its data directory.
const DefaultImportWatchInterval = 2 * time.Second

// importWatchLoop picks up, while the agent runs, a desired state applied
// and versions activated by a bundle import run in another process: it
// reconciles anew after a revision it did not apply, and serves the active
// versions the state now names.
func (a *Agent) importWatchLoop(ctx context.Context) {
	applied, err := a.state.applied(ctx)
	if err != nil {
		a.log.Warn("read state", "err", err)
	}
	last := applied.Revision
	t := a.clock.NewTicker(a.cfg.ImportWatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		applied, err := a.state.applied(ctx)
		if err != nil {
			continue
		}
		if applied.Revision != last {
			last = applied.Revision
			a.signal(a.wake)
			if a.cfg.OnApplied != nil {
				a.cfg.OnApplied()
			}
		}
		a.reloadActive(ctx)
	}
}

// reloadActive serves the active version the state names for each
// deployment whose in-memory active version differs.
func (a *Agent) reloadActive(ctx context.Context) {
	rows, err := a.state.deployments(ctx)
	if err != nil {
		return
	}
	changed := false
	for _, r := range rows {
		if r.ActiveDigest == "" {
			continue
		}
		a.mu.Lock()
		cur, ok := a.active[r.Name]
		a.mu.Unlock()
		if ok && cur.Digest == r.ActiveDigest {
			continue
		}
		am, err := a.activeModel(ctx, r, false)
		if err != nil {
			continue
		}
		a.mu.Lock()
		a.active[r.Name] = am
		delete(a.unservable, r.Name)
		a.mu.Unlock()
		a.log.Info("serving a version activated by a bundle import", "deployment", r.Name, "version", am.Version)
		changed = true
	}
	if changed {
		a.activeChanged()
		a.signal(a.reportNow)
	}
}
