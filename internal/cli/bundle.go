package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/bundle"
	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/durable"
	"outpost.dev/outpost/internal/hubclient"
)

func newBundleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Carry desired state and models to clusters with no link, and their status back",
		Long: `Air-gapped clusters are brought up to date by bundles carried on removable media
(see docs/airgap.md):

  outpost bundle create --cluster C --out DIR           at the hub
  outpost bundle import DIR --data AGENTDIR            at the edge
  outpost bundle export-status --data AGENTDIR --out F at the edge
  outpost bundle import-status F                       at the hub`,
	}
	cmd.AddCommand(newBundleCreateCmd(g), newBundleImportCmd(g), newBundleExportStatusCmd(g), newBundleImportStatusCmd(g))
	return cmd
}

// parsePartSize parses sizes such as 4GiB, 700MB or 1048576.
func parsePartSize(s string) (int64, error) {
	q, err := resource.ParseQuantity(strings.TrimSuffix(strings.TrimSpace(s), "B"))
	if err != nil {
		return 0, fmt.Errorf("part size %q: %w", s, err)
	}
	return q.Value(), nil
}

func newBundleCreateCmd(g *globals) *cobra.Command {
	var clusters []string
	var out, maxPart, have, selector string
	cmd := &cobra.Command{
		Use:   "create (--cluster C | --selector S) --out PATH",
		Short: "Write what clusters need to reach their desired state (run against the hub)",
		Long: `Writes an OCI image layout holding the hub-signed desired state of each cluster
and the artifacts it names (manifests, configs, files, chunk indexes, signatures,
reference profiles), less what each cluster is known to hold: what its last report
or imported status bundle says, and the manifest digests of --have (a status
bundle, or a file with one digest a line). With --max-part-size the layout is
written as tar parts of at most that size with a hub-signed list of parts
(PATH/bundle.parts.json), to be carried over as many trips as needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(clusters) == 0 && selector == "" || out == "" {
				return errors.New("bundle create: --out and --cluster or --selector are required")
			}
			var max int64
			if maxPart != "" {
				var err error
				if max, err = parsePartSize(maxPart); err != nil {
					return err
				}
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			held, err := readHave(have)
			if err != nil {
				return err
			}
			if selector != "" {
				var l v1alpha1.ClusterList
				if err := h.List(cmd.Context(), v1alpha1.PluralClusters, selector, &l); err != nil {
					return fmt.Errorf("clusters matching %q: %w", selector, err)
				}
				for _, c := range l.Items {
					if !slices.Contains(clusters, c.Name) {
						clusters = append(clusters, c.Name)
					}
				}
				if len(clusters) == 0 {
					return fmt.Errorf("bundle create: no cluster matches %q", selector)
				}
			}
			st, err := createBundle(cmd.Context(), h, clusters, out, max, held)
			if err != nil {
				return err
			}
			how := ""
			if st.packs+st.deltas > 0 {
				how = fmt.Sprintf(" (files as the chunks the clusters lack: %d, as weight deltas: %d)", st.packs, st.deltas)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bundle %s for %s: %d blobs, %s%s, in %s\n", st.id, strings.Join(clusters, ", "), st.blobs, bytesize.Format(st.bytes), how, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&clusters, "cluster", nil, "cluster the bundle is for; repeatable")
	f.StringVarP(&selector, "selector", "l", "", "label selector of clusters the bundle is for, such as link=none")
	f.StringVar(&out, "out", "", "folder to write (must not exist)")
	f.StringVar(&maxPart, "max-part-size", "", "write tar parts of at most this size (such as 4GiB) instead of a layout")
	f.StringVar(&have, "have", "", "inventory of what the clusters hold: a status bundle, or manifest digests one a line")
	return cmd
}

// readHave reads an inventory of manifest digests: a status bundle's, or
// one digest a line.
func readHave(path string) ([]digest.Digest, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var env struct {
		Payload []byte `json:"payload"`
	}
	if json.Unmarshal(b, &env) == nil && len(env.Payload) > 0 {
		st, err := bundle.ParseStatus(env.Payload)
		if err != nil {
			return nil, fmt.Errorf("--have %s: %w", path, err)
		}
		return st.Inventory, nil
	}
	var out []digest.Digest
	for _, l := range strings.Fields(string(b)) {
		d := digest.Digest(l)
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("--have %s: %q: %w", path, l, err)
		}
		out = append(out, d)
	}
	return out, nil
}

type createStats struct {
	id            string
	blobs         int
	packs, deltas int // files carried as chunks, as weight deltas
	bytes         int64
	created, all  []bundle.Blob
}

// modelBlobs lists the descriptors of a model version: its manifest, config
// and files, then each referrer's manifest, config and layers.
func modelBlobs(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor) ([]ocispec.Descriptor, []ocispec.Descriptor, error) {
	var manifests, blobs []ocispec.Descriptor
	add := func(d ocispec.Descriptor) error {
		b, err := fetchAll(ctx, repo, d, artifact.MaxManifestBytes)
		if err != nil {
			return err
		}
		m, err := artifact.ParseManifest(b)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		manifests = append(manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d.Digest, Size: d.Size})
		blobs = append(blobs, m.Config)
		blobs = append(blobs, m.Layers...)
		return nil
	}
	if err := add(desc); err != nil {
		return nil, nil, err
	}
	refs, err := registry.Referrers(ctx, repo, desc, "")
	if err != nil {
		return nil, nil, fmt.Errorf("referrers of %s: %w", desc.Digest, err)
	}
	for _, r := range refs {
		if r.ArtifactType == artifact.ArtifactTypeWeightDelta {
			continue // its deltas travel only where they are the smallest way (bundle.Plan)
		}
		if err := add(r); err != nil {
			return nil, nil, err
		}
	}
	return manifests, blobs, nil
}

func fetchAll(ctx context.Context, repo *remote.Repository, d ocispec.Descriptor, limit int64) ([]byte, error) {
	if d.Size > limit {
		return nil, fmt.Errorf("%s: %d bytes, above %d", d.Digest, d.Size, limit)
	}
	rc, err := repo.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != d.Size || digest.FromBytes(b) != d.Digest {
		return nil, fmt.Errorf("%s: digest mismatch", d.Digest)
	}
	return b, nil
}

// createBundle writes the bundle of clusters into out.
func createBundle(ctx context.Context, h *hubclient.Client, clusters []string, out string, maxPart int64, have []digest.Digest) (createStats, error) {
	var st createStats
	revisions := map[string]int64{}
	type model struct {
		repo      *remote.Repository
		manifests []ocispec.Descriptor
		blobs     []ocispec.Descriptor
		tag       string
		chunks    map[digest.Digest]artifact.FileChunks  // by file digest, from its chunk index
		deltas    map[digest.Digest][]artifact.FileDelta // by file digest, from its weight deltas
	}
	var models []model
	// What each cluster holds: the artifacts of its last report, and --have.
	heldBy := map[string][]digest.Digest{}
	for _, name := range clusters {
		heldBy[name] = append([]digest.Digest(nil), have...)
		var c v1alpha1.Cluster
		if _, err := h.Do(ctx, "GET", v1alpha1.PluralClusters+"/"+name, nil, nil, &c); err != nil {
			return st, fmt.Errorf("cluster %s: %w", name, err)
		}
		for _, ca := range c.Status.CachedArtifacts {
			heldBy[name] = append(heldBy[name], digest.Digest(ca.Digest))
		}
		doc, err := h.DesiredState(ctx, name, 0, time.Second)
		if err != nil {
			return st, fmt.Errorf("desired state of %s: %w", name, err)
		}
		if doc == nil {
			return st, fmt.Errorf("cluster %s has no desired state yet", name)
		}
		revisions[name] = doc.Revision
		for _, m := range doc.Models {
			repo, err := repository(h, m.Model)
			if err != nil {
				return st, err
			}
			desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(m.Digest)}
			rd, err := repo.Resolve(ctx, m.Digest)
			if err != nil {
				return st, fmt.Errorf("%s@%s: %w", m.Model, m.Version, err)
			}
			desc.Size = rd.Size
			mans, blobs, err := modelBlobs(ctx, repo, desc)
			if err != nil {
				return st, fmt.Errorf("%s@%s: %w", m.Model, m.Version, err)
			}
			mod := model{repo: repo, manifests: mans, blobs: blobs, tag: bundle.ModelTag(m.Model, m.Version), chunks: map[digest.Digest]artifact.FileChunks{}}
			if x, err := artifact.FetchChunkIndex(ctx, repo, desc); err == nil {
				for _, f := range x.Files {
					mod.chunks[f.Digest] = f
				}
			}
			mod.deltas = map[digest.Digest][]artifact.FileDelta{}
			if ds, err := artifact.FetchWeightDeltas(ctx, repo, desc); err == nil {
				for _, fd := range ds {
					mod.deltas[fd.Target] = append(mod.deltas[fd.Target], fd)
				}
			}
			models = append(models, mod)
		}
	}
	// The files of held versions are held too (their manifests name them),
	// and their chunks. A bundle leaves out only what every cluster it is
	// for holds.
	type heldSet struct{ blobs, chunks map[digest.Digest]bool }
	memo := map[digest.Digest]heldSet{}
	heldOf := func(d digest.Digest) (heldSet, error) {
		if hs, ok := memo[d]; ok {
			return hs, nil
		}
		hs := heldSet{blobs: map[digest.Digest]bool{d: true}, chunks: map[digest.Digest]bool{}}
		for _, mod := range models {
			desc, err := mod.repo.Resolve(ctx, d.String())
			if err != nil {
				continue // a version of another model
			}
			b, err := fetchAll(ctx, mod.repo, desc, artifact.MaxManifestBytes)
			if err != nil {
				return hs, fmt.Errorf("manifest %s a cluster holds: %w", d, err)
			}
			if m, err := artifact.ParseManifest(b); err == nil {
				hs.blobs[m.Config.Digest] = true
				for _, l := range m.Layers {
					hs.blobs[l.Digest] = true
				}
			}
			if x, err := artifact.FetchChunkIndex(ctx, mod.repo, desc); err == nil {
				for _, f := range x.Files {
					for _, c := range f.Chunks {
						hs.chunks[c.Digest] = true
					}
				}
			}
			break
		}
		memo[d] = hs
		return hs, nil
	}
	var heldBlobs, heldChunkSets []map[digest.Digest]bool
	for _, name := range clusters {
		blobs, chunks := map[digest.Digest]bool{}, map[digest.Digest]bool{}
		for _, d := range heldBy[name] {
			hs, err := heldOf(d)
			if err != nil {
				return st, err
			}
			maps.Copy(blobs, hs.blobs)
			maps.Copy(chunks, hs.chunks)
		}
		heldBlobs, heldChunkSets = append(heldBlobs, blobs), append(heldChunkSets, chunks)
	}
	held, heldChunks := bundle.Common(heldBlobs...), bundle.Common(heldChunkSets...)
	layout := out
	if maxPart > 0 {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return st, err
		}
		layout = filepath.Join(out, ".layout")
		os.RemoveAll(layout)
	}
	w, err := bundle.Create(ctx, layout)
	if err != nil {
		return st, err
	}
	// What to carry (bundle.Plan): each model's blobs, then its manifests.
	type source struct {
		repo *remote.Repository
		desc ocispec.Descriptor
	}
	from := map[digest.Digest]source{}
	chunksOf := map[digest.Digest]artifact.FileChunks{}
	var need []bundle.Need
	for _, mod := range models {
		if held[mod.manifests[0].Digest] {
			continue // the cluster holds the whole version
		}
		for _, d := range append(append([]ocispec.Descriptor(nil), mod.blobs...), mod.manifests...) {
			from[d.Digest] = source{mod.repo, d}
			n := bundle.Need{Blob: bundle.Blob{Digest: d.Digest, Size: d.Size}}
			if fc, ok := mod.chunks[d.Digest]; ok {
				chunksOf[d.Digest] = fc
				for _, c := range fc.Chunks {
					n.Chunks = append(n.Chunks, bundle.Blob{Digest: c.Digest, Size: c.Length})
				}
			}
			for _, fd := range mod.deltas[d.Digest] {
				from[fd.Blob.Digest] = source{mod.repo, fd.Blob}
				n.Deltas = append(n.Deltas, bundle.DeltaOption{
					Base: bundle.Blob{Digest: fd.Base, Size: fd.BaseSize},
					Blob: bundle.Blob{Digest: fd.Blob.Digest, Size: fd.Blob.Size},
				})
			}
			need = append(need, n)
		}
	}
	whole, plans, deltaPlans := bundle.Plan(need, held, heldChunks)
	var deltas []bundle.Delta
	for _, dp := range deltaPlans {
		src := from[dp.Blob.Digest]
		if !w.Has(dp.Blob.Digest) {
			if err := copyBlob(ctx, w, src.repo, src.desc); err != nil {
				return st, err
			}
			st.bytes += dp.Blob.Size
		}
		deltas = append(deltas, bundle.Delta{File: dp.File, Base: dp.Base, Blob: dp.Blob.Digest})
	}
	st.packs, st.deltas = len(plans), len(deltas)
	var packs []bundle.Pack
	for _, pp := range plans {
		src := from[pp.File.Digest]
		p, err := writePack(ctx, w, src.repo, src.desc, chunksOf[pp.File.Digest], pp.Missing, tmpDir(out))
		if err != nil {
			return st, err
		}
		packs = append(packs, p)
		for _, c := range pp.Missing {
			st.bytes += c.Size
		}
	}
	for _, b := range whole {
		src := from[b.Digest]
		if err := copyBlob(ctx, w, src.repo, src.desc); err != nil {
			return st, err
		}
		st.bytes += b.Size
	}
	for _, mod := range models {
		if d := mod.manifests[0]; w.Has(d.Digest) {
			if err := w.Tag(ctx, d, mod.tag); err != nil {
				return st, err
			}
		}
	}
	st.all = w.Blobs()
	st.blobs = len(st.all)
	env, err := h.SignBundle(ctx, map[string]any{"revisions": revisions, "blobs": st.all, "packs": packs, "deltas": deltas})
	if err != nil {
		return st, fmt.Errorf("hub signs the bundle: %w", err)
	}
	var c struct {
		ID string `json:"id"`
	}
	var e struct {
		Payload []byte `json:"payload"`
	}
	if json.Unmarshal(env, &e) == nil {
		json.Unmarshal(e.Payload, &c)
	}
	st.id = c.ID
	if err := w.Finish(ctx, env, time.Now()); err != nil {
		return st, err
	}
	if maxPart <= 0 {
		return st, nil
	}
	parts, err := bundle.WriteParts(ctx, layout, out, "bundle", c.ID, maxPart)
	if err != nil {
		return st, err
	}
	penv, err := h.SignBundleParts(ctx, parts)
	if err != nil {
		return st, fmt.Errorf("hub signs the parts: %w", err)
	}
	if err := durable.WriteFile(filepath.Join(out, bundle.PartsFile("bundle")), penv, 0o644); err != nil {
		return st, err
	}
	return st, os.RemoveAll(layout)
}

func copyBlob(ctx context.Context, w *bundle.Writer, repo *remote.Repository, d ocispec.Descriptor) error {
	rc, err := repo.Fetch(ctx, d)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", d.Digest, err)
	}
	defer rc.Close()
	return w.Push(ctx, d, rc)
}

func newBundleImportCmd(g *globals) *cobra.Command {
	var dir string
	var trusted []string
	var requireSig bool
	cmd := &cobra.Command{
		Use:   "import PATH --data DIR",
		Short: "Import an outbound bundle at the edge (a layout, its parts' list, or a folder holding it)",
		Long: `Verifies the hub's signature (pinned at join) and every digest, then applies the
bundle's desired state through the version guard: an older bundle than the one
applied is refused as stale, a second import changes nothing, a bundle for
another cluster is refused. Parts may come in any order over several trips: each
import stages what it finds and says what is still missing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return errors.New("bundle import: --data is required")
			}
			keys, err := readPublicKeys(trusted)
			if err != nil {
				return err
			}
			a, err := agent.New(cmd.Context(), agent.Config{Dir: dir, Logger: g.logger(), TrustedKeys: keys, RequireSignature: requireSig})
			if err != nil {
				return err
			}
			defer a.Close()
			res, err := a.ImportBundle(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bundle %s: desired state revision %d %s; %d blobs (%s) into the cache; activated %v; %d outbox records freed\n",
				res.Bundle, res.Revision, res.Verdict, res.Blobs, bytesize.Format(res.Bytes), res.Activated, res.Freed)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "data", "", "the agent's data directory")
	cmd.Flags().StringSliceVar(&trusted, "trusted-key", nil, "public key file (PEM) trusted for model signatures, as the agent is given; repeatable")
	cmd.Flags().BoolVar(&requireSig, "require-signature", false, "activate only model versions with a valid signature from a trusted key")
	return cmd
}

func newBundleExportStatusCmd(g *globals) *cobra.Command {
	var dir, out string
	cmd := &cobra.Command{
		Use:   "export-status --data DIR --out FILE",
		Short: "Write the cluster's report and unacknowledged outbox records, signed, for the hub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || out == "" {
				return errors.New("bundle export-status: --data and --out are required")
			}
			a, err := agent.New(cmd.Context(), agent.Config{Dir: dir, Logger: g.logger()})
			if err != nil {
				return err
			}
			defer a.Close()
			env, st, err := a.ExportStatus(cmd.Context())
			if err != nil {
				return err
			}
			if err := durable.WriteFile(out, env, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "status bundle %d of %s: %d records, %d versions held, in %s\n", st.Seq, st.Cluster, len(st.Records), len(st.Inventory), out)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "data", "", "the agent's data directory")
	cmd.Flags().StringVar(&out, "out", "", "file to write")
	return cmd
}

func newBundleImportStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import-status FILE",
		Short: "Apply a cluster's status bundle at the hub, each record once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			var res struct {
				Cluster string                  `json:"cluster"`
				Seq     int64                   `json:"seq"`
				Outbox  v1alpha1.OutboxResponse `json:"outbox"`
			}
			if err := h.ImportStatusBundle(cmd.Context(), env, &res); err != nil {
				return err
			}
			counts := map[string]int{}
			for _, r := range res.Outbox.Results {
				counts[r.Outcome]++
			}
			fmt.Fprintf(cmd.OutOrStdout(), "status bundle %d of %s imported: %d records applied, %d already applied, %d refused\n",
				res.Seq, res.Cluster, counts[v1alpha1.OutboxApplied], counts[v1alpha1.OutboxDuplicate], counts[v1alpha1.OutboxRefused])
			return nil
		},
	}
}

// loadBundleKey reads the hub's bundle key (PEM) at path, creating it on
// first use (hub data directories made before bundles have none), with its
// public key beside it (path less .key, plus .pub).
func loadBundleKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return artifact.ParsePrivateKeyPEM(b)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("hub bundle key: %w", err)
	}
	pub, key, err := artifact.GenerateKey()
	if err != nil {
		return nil, err
	}
	pem, err := artifact.MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(path, pem, 0o600); err != nil {
		return nil, fmt.Errorf("hub bundle key: %w", err)
	}
	pubPEM, err := artifact.MarshalPublicKeyPEM(pub)
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(strings.TrimSuffix(path, ".key")+".pub", pubPEM, 0o644); err != nil {
		return nil, fmt.Errorf("hub bundle key: %w", err)
	}
	return key, nil
}

// tmpDir is where create keeps its scratch files: beside the bundle.
func tmpDir(out string) string { return filepath.Dir(filepath.Clean(out)) }

// writePack adds to w a blob of the chunks of file d that the clusters
// lack (missing, in file order), read from the registry in one pass.
func writePack(ctx context.Context, w *bundle.Writer, repo *remote.Repository, d ocispec.Descriptor, fc artifact.FileChunks, missing []bundle.Blob, scratch string) (bundle.Pack, error) {
	want := make(map[digest.Digest]bool, len(missing))
	for _, m := range missing {
		want[m.Digest] = true
	}
	rc, err := repo.Fetch(ctx, d)
	if err != nil {
		return bundle.Pack{}, fmt.Errorf("fetch %s: %w", d.Digest, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(scratch, ".pack-*")
	if err != nil {
		return bundle.Pack{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	dw := durable.NewWriter(f)
	var off int64
	for _, c := range fc.Chunks {
		if c.Offset != off {
			return bundle.Pack{}, fmt.Errorf("chunk index of %s: chunk at %d, expected %d", d.Digest, c.Offset, off)
		}
		dst := io.Discard
		if want[c.Digest] {
			dst = dw
			delete(want, c.Digest)
		}
		if _, err := io.CopyN(dst, rc, c.Length); err != nil {
			return bundle.Pack{}, fmt.Errorf("read %s: %w", d.Digest, err)
		}
		off += c.Length
	}
	if err := dw.Sync(); err != nil {
		return bundle.Pack{}, err
	}
	pd := ocispec.Descriptor{MediaType: "application/vnd.outpost.bundle.chunks.v1", Digest: dw.Digest(), Size: dw.Size()}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return bundle.Pack{}, err
	}
	if err := w.Push(ctx, pd, f); err != nil {
		return bundle.Pack{}, err
	}
	return bundle.Pack{File: bundle.Blob{Digest: d.Digest, Size: d.Size}, Blob: pd.Digest, Chunks: missing}, nil
}
