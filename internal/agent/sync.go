package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/transfer"
)

// progressEvery is how often fetch progress is written to the state.
const progressEvery = 500 * time.Millisecond

// sync brings one deployment to its desired version: manifest, chunk index,
// signature and reference profile first, then the missing chunks of every file, then the
// atomic switch of the active version once every file is verified in the
// cache. The previous version keeps serving until then.
func (a *Agent) sync(ctx context.Context, want v1alpha1.DesiredModel) error {
	a.gcMu.RLock()
	defer a.gcMu.RUnlock()
	log := a.log.With("deployment", want.Deployment, "model", want.Model, "version", want.Version)
	row, ok, err := getDeployment(ctx, a.state.db, want.Deployment)
	if err != nil {
		return err
	}
	if !ok || row.Desired.Digest != want.Digest {
		return errSuperseded
	}
	fetched, total := row.BytesFetched, row.BytesTotal
	if err := a.state.setProgress(ctx, want.Deployment, want.Digest, v1alpha1.PhaseFetching, fetched, total, row.Error, a.clock.Now()); err != nil {
		return err
	}
	repo, err := a.repository(want.Model)
	if err != nil {
		return err
	}
	rec, idx, err := a.ensureManifest(ctx, repo, want)
	if err != nil {
		return err
	}
	// What is missing: files not in the cache, less the chunks held in any cached file.
	var missing []artifact.FileChunks
	for _, f := range rec.Files {
		d := digest.Digest(f.Digest)
		if a.cache.has(d, f.Size) {
			continue
		}
		missing = append(missing, fileChunks(idx, f))
	}
	if len(missing) > 0 {
		have, err := a.chunkMap(ctx)
		if err != nil {
			return err
		}
		var byDelta map[digest.Digest]artifact.FileDelta
		if remoteBytes(missing, have) > 0 {
			byDelta = chooseDeltas(missing, a.weightDeltas(ctx, repo, rec), have, a.cache.has)
		}
		remaining := transferBytes(missing, byDelta, have)
		if total == 0 || fetched > total {
			total, fetched = remaining, 0
		}
		if err := a.state.setProgress(ctx, want.Deployment, want.Digest, v1alpha1.PhaseFetching, fetched, total, row.Error, a.clock.Now()); err != nil {
			return err
		}
		log.Info("fetching", "files", len(missing), "byWeightDelta", len(byDelta), "missingBytes", remaining, "modelBytes", rec.FilesSize)
		p := &progress{a: a, want: want, fetched: fetched, total: total, errText: row.Error}
		for _, fc := range missing {
			unlock, err := a.files.lock(ctx, fc.Digest)
			if err != nil {
				p.flush(ctx, true)
				return err
			}
			err = a.fetchMissing(ctx, repo, fc, byDelta, p, log)
			unlock()
			if err != nil {
				return err
			}
		}
		p.flush(ctx, true)
	}
	// Every file of the version must be whole in the cache before it is activated.
	for _, f := range rec.Files {
		if err := a.cache.verifyFile(digest.Digest(f.Digest), f.Size, false); err != nil {
			return fmt.Errorf("verify %s: %w", f.Path, err)
		}
	}
	from, err := a.state.activate(ctx, want, a.clock.Now())
	if err != nil {
		return err
	}
	row, _, err = getDeployment(ctx, a.state.db, want.Deployment)
	if err != nil {
		return err
	}
	am, err := a.activeModel(ctx, row, false)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.active[want.Deployment] = am
	delete(a.unservable, want.Deployment)
	a.mu.Unlock()
	a.activeChanged()
	if err := a.writeIndex(ctx); err != nil {
		log.Warn("write cache index", "err", err)
	}
	if from != "" {
		log.Warn("activated a downgrade", "from", from)
	} else {
		log.Info("activated")
	}
	return nil
}

// fetchMissing brings one missing file into the cache, by its weight delta
// when byDelta has one and it applies, else by its chunks. The caller holds
// the file's lock: a sync of another deployment may have brought the file
// in while this one waited for it.
func (a *Agent) fetchMissing(ctx context.Context, repo string, fc artifact.FileChunks, byDelta map[digest.Digest]artifact.FileDelta, p *progress, log *slog.Logger) error {
	if a.cache.has(fc.Digest, fc.Size) {
		return nil
	}
	if fd, ok := byDelta[fc.Digest]; ok {
		err := a.fetchByDelta(ctx, repo, fd, p)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			p.flush(ctx, true)
			return err
		}
		log.Warn("weight delta failed: fetching the file's chunks", "path", fc.Path, "err", err)
	}
	if err := a.fetchFile(ctx, repo, fc, p); err != nil {
		p.flush(ctx, true)
		return err // it names the file
	}
	return nil
}

// fileChunks is a file's chunk list from the chunk index or, without one,
// the whole file as one chunk.
func fileChunks(idx *artifact.ChunkIndex, f fileRecord) artifact.FileChunks {
	if idx != nil {
		if fc := idx.File(f.Path); fc != nil {
			return *fc
		}
	}
	fc := artifact.FileChunks{Path: f.Path, Digest: digest.Digest(f.Digest), Size: f.Size, Chunks: []artifact.Chunk{}}
	if f.Size > 0 {
		fc.Chunks = append(fc.Chunks, artifact.Chunk{Offset: 0, Length: f.Size, Digest: digest.Digest(f.Digest)})
	}
	return fc
}

// remoteBytes is how many bytes must cross the link to assemble files in
// order, given the chunks held locally: chunks held, or fetched earlier for
// these files, do not count.
func remoteBytes(files []artifact.FileChunks, have map[digest.Digest]chunkLoc) int64 {
	seen := map[digest.Digest]bool{}
	var n int64
	for _, f := range files {
		for _, c := range f.Chunks {
			if _, ok := have[c.Digest]; ok || seen[c.Digest] {
				continue
			}
			seen[c.Digest] = true
			n += c.Length
		}
	}
	return n
}

// fetchFile assembles one file into the cache from local chunks and the hub.
func (a *Agent) fetchFile(ctx context.Context, repo string, fc artifact.FileChunks, p *progress) error {
	have, err := a.chunkMap(ctx)
	if err != nil {
		return err
	}
	plan := transfer.NewPlan(fc, func(d digest.Digest) (transfer.ChunkRef, bool) {
		l, ok := have[d]
		return transfer.ChunkRef{Path: l.Path, Offset: l.Offset, Length: l.Length}, ok
	})
	a.src.route(fc.Digest, repo)
	start := a.clock.Now()
	stats, err := a.fetcher.FetchWith(ctx, plan, a.cache.blobPath(fc.Digest), transfer.FetchOptions{
		Priority: transfer.PriorityActive,
		Progress: func(n int64) { p.add(ctx, n) },
	})
	a.link.observeTransfer(stats.RemoteBytes, clock.Since(a.clock, start))
	a.log.Debug("fetched file", "path", fc.Path, "remote", stats.RemoteBytes, "local", stats.LocalBytes,
		"similar", stats.SimilarBytes, "resumed", stats.ResumedBytes, "corrupt", stats.Corrupt, "retries", stats.Retries, "err", err)
	return err
}

// progress accumulates a sync's fetched bytes and writes them to the state
// now and then.
type progress struct {
	a       *Agent
	want    v1alpha1.DesiredModel
	errText string

	mu             sync.Mutex
	fetched, total int64
	last           time.Time
}

func (p *progress) add(ctx context.Context, n int64) {
	if p == nil {
		return // a fetch outside any deployment
	}
	p.mu.Lock()
	p.fetched += n
	p.mu.Unlock()
	p.flush(ctx, false)
}

func (p *progress) flush(ctx context.Context, force bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	now := p.a.clock.Now()
	if !force && now.Sub(p.last) < progressEvery {
		p.mu.Unlock()
		return
	}
	p.last = now
	fetched, total := min(p.fetched, p.total), p.total
	p.mu.Unlock()
	if err := p.a.state.setProgress(context.WithoutCancel(ctx), p.want.Deployment, p.want.Digest, v1alpha1.PhaseFetching, fetched, total, p.errText, now); err != nil {
		p.a.log.Warn("record progress", "err", err)
	}
	p.a.signal(p.a.reportNow)
}

// chunkMap indexes the chunks of every whole file in the cache.
func (a *Agent) chunkMap(ctx context.Context) (map[digest.Digest]chunkLoc, error) {
	mans, err := a.state.manifests(ctx)
	if err != nil {
		return nil, err
	}
	var idxs []*artifact.ChunkIndex
	for _, m := range mans {
		if m.ChunkIndexDigest == "" {
			continue
		}
		x, err := a.chunkIndex(digest.Digest(m.ChunkIndexDigest))
		if err != nil {
			a.log.Warn("cached chunk index unusable", "manifest", m.Digest, "err", err)
			continue
		}
		idxs = append(idxs, x)
	}
	return chunkMap(idxs, func(d digest.Digest, size int64) (string, bool) {
		return a.cache.blobPath(d), a.cache.has(d, size)
	}), nil
}

// chunkIndex reads a cached chunk index, memoised.
func (a *Agent) chunkIndex(d digest.Digest) (*artifact.ChunkIndex, error) {
	a.mu.Lock()
	x, ok := a.indexes[d]
	a.mu.Unlock()
	if ok {
		return x, nil
	}
	b, err := a.cache.readBlob(d, artifact.MaxChunkIndexBytes)
	if err != nil {
		return nil, err
	}
	x, err = artifact.ParseChunkIndex(b)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.indexes[d] = x
	a.mu.Unlock()
	return x, nil
}

// ensureManifest returns the cached record and chunk index of want's
// manifest, fetching and checking them first when they are not cached: the
// manifest's digest must be the desired one and it must be the desired
// model and version; its signature is verified when policy requires one.
func (a *Agent) ensureManifest(ctx context.Context, repo string, want v1alpha1.DesiredModel) (manifestRecord, *artifact.ChunkIndex, error) {
	needSig := want.RequireSignature || a.cfg.RequireSignature
	rec, ok, err := a.state.manifest(ctx, want.Digest)
	if err != nil {
		return rec, nil, err
	}
	if ok && a.cache.has(digest.Digest(rec.Digest), rec.Size) {
		var idx *artifact.ChunkIndex
		if rec.ChunkIndexDigest != "" {
			if idx, err = a.chunkIndex(digest.Digest(rec.ChunkIndexDigest)); err != nil {
				idx = nil
			}
		}
		if !needSig || a.cachedSignatureValid(rec) {
			return rec, idx, nil
		}
	}
	r, err := a.remoteRepo(repo)
	if err != nil {
		return rec, nil, err
	}
	want.Digest = string(digest.Digest(want.Digest))
	_, rc, err := r.FetchReference(ctx, want.Digest)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return rec, nil, fmt.Errorf("manifest %s of %s@%s not found in the hub's registry", want.Digest, want.Model, want.Version)
		}
		return rec, nil, fmt.Errorf("fetch manifest %s: %w", want.Digest, err)
	}
	mb, err := io.ReadAll(io.LimitReader(rc, artifact.MaxManifestBytes+1))
	rc.Close()
	if err != nil {
		return rec, nil, fmt.Errorf("fetch manifest %s: %w", want.Digest, err)
	}
	if len(mb) > artifact.MaxManifestBytes {
		return rec, nil, fmt.Errorf("manifest %s is above the %d byte limit", want.Digest, artifact.MaxManifestBytes)
	}
	if got := digest.SHA256.FromBytes(mb); got.String() != want.Digest {
		return rec, nil, fmt.Errorf("manifest digest mismatch: got %s, want %s", got, want.Digest)
	}
	return a.cacheManifest(ctx, r, mb, want, true)
}

// cacheManifest checks manifest bytes mb (whose digest is want's) and
// caches the manifest with its config, chunk index, reference profile and,
// when policy requires one, signature, all read from r: the hub's
// registry, or the layout of an imported bundle. waitIndex makes a
// missing chunk index an error for a while (a pusher may attach it late).
func (a *Agent) cacheManifest(ctx context.Context, r oras.ReadOnlyGraphTarget, mb []byte, want v1alpha1.DesiredModel, waitIndex bool) (manifestRecord, *artifact.ChunkIndex, error) {
	needSig := want.RequireSignature || a.cfg.RequireSignature
	var rec manifestRecord
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(want.Digest), Size: int64(len(mb))}
	m, err := artifact.ParseManifest(mb)
	if err != nil {
		return rec, nil, fmt.Errorf("manifest %s: %w", want.Digest, err)
	}
	if err := checkModelManifest(m, want); err != nil {
		return rec, nil, err
	}
	files, err := manifestFiles(m)
	if err != nil {
		return rec, nil, fmt.Errorf("manifest %s: %w", want.Digest, err)
	}
	// The config, the chunk index and the signature are independent round
	// trips: on a slow link, one after the other would each add a latency.
	var (
		cb             []byte
		cfgErr, sigErr error
		x              *artifact.ChunkIndex
		idxErr         error
		sigDigest      digest.Digest
		sigKey         string
		prof           profileResult
		wg             sync.WaitGroup
	)
	wg.Go(func() { cb, cfgErr = fetchSmall(ctx, r, m.Config, artifact.MaxManifestBytes) })
	wg.Go(func() { x, idxErr = artifact.FetchChunkIndex(ctx, r, desc) })
	wg.Go(func() { prof = a.fetchProfile(ctx, r, desc, want.Model, want.Version) })
	if needSig {
		wg.Go(func() { sigDigest, sigKey, sigErr = a.verifySignature(ctx, r, desc, want) })
	}
	wg.Wait()
	if cfgErr != nil {
		return rec, nil, fmt.Errorf("fetch config of %s: %w", want.Digest, cfgErr)
	}
	rec = manifestRecord{
		Digest: want.Digest, Model: want.Model, Version: want.Version, Size: int64(len(mb)),
		ConfigDigest: m.Config.Digest.String(), CachedAt: a.clock.Now(), Files: files,
	}
	for _, f := range files {
		rec.FilesSize += f.Size
	}
	var idx *artifact.ChunkIndex
	switch err := idxErr; {
	case err == nil:
		idx = x
		b, err := json.Marshal(x)
		if err != nil {
			return rec, nil, err
		}
		d := digest.SHA256.FromBytes(b)
		if err := a.cache.putBlob(d, b); err != nil {
			return rec, nil, err
		}
		rec.ChunkIndexDigest = d.String()
	case errors.Is(err, artifact.ErrNoChunkIndex):
		// outpost model push attaches the chunk index before the tag, but
		// other pushers may attach one later, or never: wait a little for it
		// before fetching whole files.
		if first := a.firstWithoutIndex(want.Digest); waitIndex && a.clock.Now().Sub(first) < noIndexGrace {
			return rec, nil, fmt.Errorf("chunk index of %s@%s not found yet: %w", want.Model, want.Version, err)
		}
		a.log.Warn("model has no usable chunk index: fetching whole files", "model", want.Model, "version", want.Version, "err", err)
	default:
		return rec, nil, fmt.Errorf("fetch chunk index of %s: %w", want.Digest, err)
	}
	if needSig {
		if sigErr != nil {
			return rec, nil, sigErr
		}
		rec.SignatureDigest, rec.SignatureKey = sigDigest.String(), sigKey
	}
	// A version without a usable reference profile activates all the same:
	// it is not monitored until it has one.
	switch {
	case prof.err != nil:
		a.log.Warn("reference profile unusable", "model", want.Model, "version", want.Version, "err", prof.err)
		rec.ProfileError = prof.err.Error()
	case prof.digest != "":
		if err := a.cache.putBlob(prof.digest, prof.data); err != nil {
			return rec, nil, err
		}
		rec.ProfileDigest = prof.digest.String()
	}
	// Blobs go in before the record that names them.
	if err := a.cache.putBlob(m.Config.Digest, cb); err != nil {
		return rec, nil, err
	}
	if err := a.cache.putBlob(desc.Digest, mb); err != nil {
		return rec, nil, err
	}
	if err := a.state.putManifest(ctx, rec); err != nil {
		return rec, nil, err
	}
	return rec, idx, nil
}

// noIndexGrace is how long a manifest without a chunk index is retried
// before its files are fetched whole.
const noIndexGrace = 10 * time.Second

// firstWithoutIndex returns when the agent first found manifest dg without
// a chunk index.
func (a *Agent) firstWithoutIndex(dg string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.noIndex[dg]
	if !ok {
		t = a.clock.Now()
		a.noIndex[dg] = t
	}
	return t
}

// cachedSignatureValid re-verifies the cached signature envelope of rec
// against the trusted keys.
func (a *Agent) cachedSignatureValid(rec manifestRecord) bool {
	if rec.SignatureDigest == "" {
		return false
	}
	env, err := a.cache.readBlob(digest.Digest(rec.SignatureDigest), artifact.MaxEnvelopeBytes)
	if err != nil {
		return false
	}
	_, err = artifact.VerifyEnvelope(env, digest.Digest(rec.Digest), a.cfg.TrustedKeys)
	return err == nil
}

// verifySignature looks for a signature referrer of desc whose envelope
// verifies with a trusted key, and caches the envelope.
func (a *Agent) verifySignature(ctx context.Context, r oras.ReadOnlyGraphTarget, desc ocispec.Descriptor, want v1alpha1.DesiredModel) (digest.Digest, string, error) {
	if len(a.cfg.TrustedKeys) == 0 {
		return "", "", fmt.Errorf("signature required for %s@%s but the agent trusts no key (--trusted-key)", want.Model, want.Version)
	}
	refs, err := registry.Referrers(ctx, r, desc, artifact.ArtifactTypeSignature)
	if err != nil {
		return "", "", fmt.Errorf("signature: list signatures of %s@%s: %w", want.Model, want.Version, err)
	}
	var lastErr error
	checked := 0
	for _, ref := range refs {
		if ref.ArtifactType != "" && ref.ArtifactType != artifact.ArtifactTypeSignature {
			continue
		}
		checked++
		env, err := fetchEnvelope(ctx, r, ref)
		if err == nil {
			var keyID string
			keyID, err = artifact.VerifyEnvelope(env, desc.Digest, a.cfg.TrustedKeys)
			if err == nil {
				d := digest.SHA256.FromBytes(env)
				if err := a.cache.putBlob(d, env); err != nil {
					return "", "", err
				}
				return d, keyID, nil
			}
		}
		lastErr = err
	}
	if checked == 0 {
		return "", "", fmt.Errorf("signature required for %s@%s: the model is not signed", want.Model, want.Version)
	}
	return "", "", fmt.Errorf("signature of %s@%s invalid: %d checked, none verifies with a trusted key: %w", want.Model, want.Version, checked, lastErr)
}

// fetchEnvelope fetches the DSSE envelope of a signature referrer.
func fetchEnvelope(ctx context.Context, r content.Fetcher, ref ocispec.Descriptor) ([]byte, error) {
	mb, err := fetchSmall(ctx, r, ref, artifact.MaxManifestBytes)
	if err != nil {
		return nil, err
	}
	m, err := artifact.ParseManifest(mb)
	if err != nil {
		return nil, err
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != artifact.MediaTypeDSSEEnvelope {
		return nil, fmt.Errorf("signature manifest %s: want one %s layer", ref.Digest, artifact.MediaTypeDSSEEnvelope)
	}
	return fetchSmall(ctx, r, m.Layers[0], artifact.MaxEnvelopeBytes)
}

// fetchSmall fetches a blob of at most limit bytes and verifies it.
func fetchSmall(ctx context.Context, r content.Fetcher, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size < 0 || desc.Size > limit {
		return nil, fmt.Errorf("blob %s is %d bytes, above the %d byte limit", desc.Digest, desc.Size, limit)
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("invalid digest %q: %w", desc.Digest, err)
	}
	rc, err := r.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != desc.Size {
		return nil, fmt.Errorf("blob %s: got %d bytes, want %d", desc.Digest, len(b), desc.Size)
	}
	if digest.SHA256.FromBytes(b) != desc.Digest {
		return nil, fmt.Errorf("blob %s: digest mismatch", desc.Digest)
	}
	return b, nil
}

// checkModelManifest checks that m is the desired model and version.
func checkModelManifest(m *ocispec.Manifest, want v1alpha1.DesiredModel) error {
	if n, ok := m.Annotations[artifact.AnnotationName]; ok && n != want.Model {
		return fmt.Errorf("manifest %s is model %q, desired state says %q", want.Digest, n, want.Model)
	}
	if v, ok := m.Annotations[artifact.AnnotationVersion]; ok && v != want.Version {
		return fmt.Errorf("manifest %s is version %s, desired state says %s", want.Digest, v, want.Version)
	}
	return nil
}

// manifestFiles lists the files of a model manifest (one per layer).
func manifestFiles(m *ocispec.Manifest) ([]fileRecord, error) {
	if len(m.Layers) > artifact.MaxFiles {
		return nil, fmt.Errorf("%d layers, above the %d limit", len(m.Layers), artifact.MaxFiles)
	}
	seen := map[string]bool{}
	out := make([]fileRecord, 0, len(m.Layers))
	for _, l := range m.Layers {
		p := l.Annotations[artifact.AnnotationFilepath]
		if p == "" {
			p = l.Annotations[artifact.AnnotationTitle]
		}
		if p == "" {
			return nil, fmt.Errorf("layer %s names no file", l.Digest)
		}
		if err := artifact.ValidatePath(p); err != nil {
			return nil, err
		}
		if seen[p] {
			return nil, fmt.Errorf("file %q listed twice", p)
		}
		seen[p] = true
		if err := l.Digest.Validate(); err != nil || l.Digest.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("file %q: digest %q is not sha256", p, l.Digest)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("file %q: negative size", p)
		}
		out = append(out, fileRecord{Path: p, Digest: l.Digest.String(), Size: l.Size})
	}
	return out, nil
}

// repository is the registry repository of a model.
func (a *Agent) repository(model string) (string, error) {
	if err := artifact.ValidateName(model); err != nil {
		return "", err
	}
	return v1alpha1.ModelRepository(model)
}

// remoteRepo opens repo on the hub's registry with the cluster credential.
func (a *Agent) remoteRepo(repo string) (*remote.Repository, error) {
	host := a.hub.Host()
	r, err := remote.NewRepository(host + "/" + repo)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", repo, err)
	}
	r.PlainHTTP = a.hub.PlainHTTP()
	a.mu.Lock()
	cred := a.credential
	a.mu.Unlock()
	r.Client = &orasauth.Client{
		Client:     a.hub.HTTPClient(),
		Cache:      orasauth.NewCache(),
		Credential: orasauth.StaticCredential(host, orasauth.Credential{Username: "outpost", Password: cred}),
	}
	return r, nil
}

// routingSource reads blobs from the repository each was routed to.
type routingSource struct {
	mu    sync.Mutex
	base  transfer.HTTPSource
	repos map[digest.Digest]string
}

func (s *routingSource) route(d digest.Digest, repo string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[d] = repo
}

func (s *routingSource) setToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.base.Token = tok
}

// source returns the HTTP source of the repository blob was routed to.
func (s *routingSource) source(blob digest.Digest) (*transfer.HTTPSource, error) {
	s.mu.Lock()
	src := s.base
	repo, ok := s.repos[blob]
	s.mu.Unlock()
	if !ok {
		return nil, transfer.Permanent(fmt.Errorf("blob %s: no repository known", blob))
	}
	src.Repo = repo
	return &src, nil
}

// OpenRange implements transfer.RangeSource.
func (s *routingSource) OpenRange(ctx context.Context, blob digest.Digest, off, n int64) (io.ReadCloser, error) {
	src, err := s.source(blob)
	if err != nil {
		return nil, err
	}
	return src.OpenRange(ctx, blob, off, n)
}

// BlockSums implements transfer.BlockSummer.
func (s *routingSource) BlockSums(ctx context.Context, blob digest.Digest, off, n int64, block int) ([]byte, error) {
	src, err := s.source(blob)
	if err != nil {
		return nil, err
	}
	return src.BlockSums(ctx, blob, off, n, block)
}

// linkEstimator estimates the link's bandwidth from transfers and its
// round-trip time from short requests, as moving averages.
type linkEstimator struct {
	mu  sync.Mutex
	bps float64
	rtt time.Duration
}

func (l *linkEstimator) observeTransfer(n int64, d time.Duration) {
	if n < 256<<10 || d <= 0 {
		return
	}
	bps := float64(n) / d.Seconds()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bps == 0 {
		l.bps = bps
	} else {
		l.bps = 0.7*l.bps + 0.3*bps
	}
}

func (l *linkEstimator) observeRTT(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rtt == 0 {
		l.rtt = d
	} else {
		l.rtt = (7*l.rtt + 3*d) / 10
	}
}

func (l *linkEstimator) estimate() (bps int64, rtt time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(l.bps), l.rtt
}
