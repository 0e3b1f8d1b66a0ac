package artifact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
)

// ErrVersionExists is matched (errors.Is) by the error Push returns when the
// version tag already holds a model with different content.
var ErrVersionExists = errors.New("model version already exists with different content")

// VersionExistsError reports a version tag that already holds different
// content. It matches ErrVersionExists.
type VersionExistsError struct {
	Name, Version string
	Digest        digest.Digest // the manifest the tag holds
}

func (e *VersionExistsError) Error() string {
	return fmt.Sprintf("model %s version %s already exists with different content (digest %s)", e.Name, e.Version, e.Digest)
}

// Is makes errors.Is(err, ErrVersionExists) true.
func (e *VersionExistsError) Is(target error) bool { return target == ErrVersionExists }

// PushOptions describe the model version being pushed.
type PushOptions struct {
	// Name is the model name (lowercase letters, digits and separators, as
	// an OCI repository path component). Required.
	Name string
	// Version is a strict semantic version (1.2.3, 1.0.0-rc.1); it becomes
	// the tag. Required.
	Version string
	// Parent names the model version this one derives from (optional).
	Parent string
	// ProducedBy names what produced the model (optional).
	ProducedBy string
	// Metrics are recorded as ml.outpost.dev/metric.<key> annotations. Keys
	// use letters, digits, '.', '_' and '-'.
	Metrics map[string]string
	// Annotations are extra manifest annotations; they may not set the keys
	// Push writes itself.
	Annotations map[string]string
	// Format overrides the model format derived from file extensions
	// ("onnx", "safetensors", "gguf", "pytorch", "tensorflow", ...).
	Format string
	// ParamSize is the parameter count recorded in the config ("7b").
	ParamSize string
	// Created is the creation time; zero means now. It is recorded in the
	// manifest and config but ignored when deciding whether a re-push of a
	// version is the same content.
	Created time.Time
	// Chunking sets the chunk index parameters; zero means
	// ChunkParamsForSize of the largest file.
	Chunking ChunkParams
	// Progress, if set, is called as file bytes are uploaded; blobs the
	// target already has count as done at once.
	Progress func(done, total int64)
	// Profile, if set, is an encoded reference profile (see PushProfile),
	// attached before the version is tagged. A version pushed again with the
	// same files gets it if it has no profile yet; one with another profile
	// is refused (ErrProfileExists).
	Profile []byte
}

var (
	nameRE      = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	metricKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// ValidateName reports whether name is a valid model name.
func ValidateName(name string) error {
	if len(name) > 128 || !nameRE.MatchString(name) {
		return fmt.Errorf("invalid model name %q: use lowercase letters, digits, '.', '_' and '-'", name)
	}
	return nil
}

// ValidateVersion reports whether v is a strict semantic version.
func ValidateVersion(v string) error {
	if _, err := semver.StrictNewVersion(v); err != nil {
		return fmt.Errorf("invalid version %q: %w", v, err)
	}
	return nil
}

func (o *PushOptions) validate() error {
	if err := ValidateName(o.Name); err != nil {
		return err
	}
	if err := ValidateVersion(o.Version); err != nil {
		return err
	}
	for k := range o.Metrics {
		if !metricKeyRE.MatchString(k) {
			return fmt.Errorf("invalid metric key %q", k)
		}
	}
	for k := range o.Annotations {
		switch {
		case k == AnnotationVersion, k == AnnotationCreated, k == AnnotationName, k == AnnotationParent,
			k == AnnotationProducedBy, strings.HasPrefix(k, AnnotationMetricPrefix):
			return fmt.Errorf("annotation %q is set by push; use the matching option", k)
		}
	}
	if o.Profile != nil && (len(o.Profile) == 0 || len(o.Profile) > MaxProfileBytes) {
		return fmt.Errorf("profile of %d bytes: want 1 to %d", len(o.Profile), MaxProfileBytes)
	}
	return o.Chunking.orDefault().Validate()
}

// localFile is a file found under the source folder.
type localFile struct {
	abs string // path to open
	rel string // slash path inside the model
}

// collectFiles lists the regular files of src (a file or a folder), sorted by
// relative path. Symlinks are followed only to regular files inside src.
func collectFiles(src string) ([]localFile, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() {
		rel := filepath.Base(src)
		if err := ValidatePath(rel); err != nil {
			return nil, err
		}
		return []localFile{{abs: src, rel: rel}}, nil
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is neither a regular file nor a folder", src)
	}
	root, err := filepath.EvalSymlinks(src)
	if err != nil {
		return nil, err
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	var files []localFile
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		r, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(r)
		switch {
		case d.IsDir():
			return nil
		case d.Type().IsRegular():
		case d.Type()&fs.ModeSymlink != 0:
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				return fmt.Errorf("symlink %q: %w", rel, err)
			}
			tr, err := filepath.Rel(root, target)
			if err != nil || tr == ".." || strings.HasPrefix(tr, ".."+string(filepath.Separator)) || filepath.IsAbs(tr) {
				return fmt.Errorf("symlink %q points outside %s", rel, src)
			}
			ti, err := os.Stat(target)
			if err != nil {
				return fmt.Errorf("symlink %q: %w", rel, err)
			}
			if !ti.Mode().IsRegular() {
				return fmt.Errorf("symlink %q does not point to a regular file", rel)
			}
			p = target
		default:
			return fmt.Errorf("%q is not a regular file", rel)
		}
		if err := ValidatePath(rel); err != nil {
			return err
		}
		files = append(files, localFile{abs: p, rel: rel})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no files", src)
	}
	if len(files) > MaxFiles {
		return nil, fmt.Errorf("%s holds %d files, above the %d limit", src, len(files), MaxFiles)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	return files, nil
}

// formats maps weight file extensions to model formats.
var formats = map[string]string{
	".onnx": "onnx", ".safetensors": "safetensors", ".gguf": "gguf", ".pt": "pytorch", ".pth": "pytorch",
	".bin": "pytorch", ".ckpt": "pytorch", ".pb": "tensorflow", ".h5": "keras", ".keras": "keras",
	".tflite": "tflite", ".mlmodel": "coreml", ".joblib": "sklearn", ".pkl": "pickle", ".npz": "numpy", ".npy": "numpy",
}

// MediaTypeForPath returns the ModelPack raw layer media type for a file path:
// weights by extension, documentation, code, datasets, and weight
// configuration (config.json, tokenizer files, YAML) for everything else.
func MediaTypeForPath(p string) string {
	base := strings.ToLower(path.Base(p))
	ext := path.Ext(base)
	switch {
	case formats[ext] != "":
		return MediaTypeModelWeightRaw
	case strings.HasPrefix(base, "readme"), strings.HasPrefix(base, "license"), strings.HasPrefix(base, "notice"),
		ext == ".md", ext == ".rst", ext == ".pdf":
		return MediaTypeModelDocRaw
	case ext == ".py", ext == ".sh", ext == ".ipynb", ext == ".js", ext == ".go", ext == ".c", ext == ".cc", ext == ".cpp", ext == ".h":
		return MediaTypeModelCodeRaw
	case ext == ".csv", ext == ".parquet", ext == ".jsonl", ext == ".tfrecord", ext == ".arrow":
		return MediaTypeModelDatasetRaw
	}
	return MediaTypeModelWeightConfigRaw
}

// formatOf returns the format of the largest weight file.
func formatOf(files []File) string {
	var best string
	var size int64 = -1
	for _, f := range files {
		if fm := formats[strings.ToLower(path.Ext(f.Path))]; fm != "" && f.Size > size {
			best, size = fm, f.Size
		}
	}
	return best
}

// Push packs src (a model file or folder) into a model artifact in dst,
// which is the model's repository, tags it with opts.Version, and attaches a
// chunk index referrer (and opts.Profile, if set) before the tag. Each
// regular file becomes one raw layer holding the file bytes; digests and
// chunks are computed by streaming each file once. Blobs dst already has
// are not uploaded again.
//
// If the version tag already holds a manifest with the same files, name,
// lineage, metrics and annotations (the creation time is ignored), Push
// changes nothing and returns that manifest. If it holds other content,
// Push returns a *VersionExistsError.
func Push(ctx context.Context, dst oras.Target, src string, opts PushOptions) (ocispec.Descriptor, error) {
	if err := opts.validate(); err != nil {
		return ocispec.Descriptor{}, err
	}
	local, files, idx, err := hashModel(ctx, src, opts.Chunking)
	if err != nil {
		return ocispec.Descriptor{}, err
	}

	created := opts.Created
	if created.IsZero() {
		created = time.Now()
	}
	created = created.UTC().Truncate(time.Second)
	format := opts.Format
	if format == "" {
		format = formatOf(files)
	}
	layers, cfgDesc, cfgBytes, err := modelLayers(files, opts.Name, opts.Version, format, opts.ParamSize, created)
	if err != nil {
		return ocispec.Descriptor{}, err
	}

	ann := maps.Clone(opts.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationName] = opts.Name
	ann[AnnotationVersion] = opts.Version
	ann[AnnotationCreated] = created.Format(time.RFC3339)
	if opts.Parent != "" {
		ann[AnnotationParent] = opts.Parent
	}
	if opts.ProducedBy != "" {
		ann[AnnotationProducedBy] = opts.ProducedBy
	}
	for k, v := range opts.Metrics {
		ann[AnnotationMetricPrefix+k] = v
	}
	m, mb, mDesc, err := modelManifest(cfgDesc, layers, ann)
	if err != nil {
		return ocispec.Descriptor{}, err
	}

	var graph oras.GraphTarget
	if opts.Profile != nil {
		var ok bool
		if graph, ok = dst.(oras.GraphTarget); !ok {
			return ocispec.Descriptor{}, errors.New("push profile: the target cannot list referrers")
		}
	}
	existing, same, err := checkExistingTag(ctx, dst, opts, m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if same {
		if opts.Progress != nil {
			total := totalSize(files)
			opts.Progress(total, total)
		}
		if _, err := pushChunkIndex(ctx, dst, existing, idx); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("push chunk index: %w", err)
		}
		if graph != nil {
			if _, err := PushProfile(ctx, graph, existing, opts.Profile, ProfilePushOptions{Created: created}); err != nil {
				return ocispec.Descriptor{}, err
			}
		}
		return existing, nil
	}

	if err := pushFiles(ctx, dst, local, layers, opts.Progress); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := pushIfAbsent(ctx, dst, cfgDesc, cfgBytes); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push config: %w", err)
	}
	if err := pushIfAbsent(ctx, dst, mDesc, mb); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push manifest: %w", err)
	}
	// The chunk index goes up before the tag: agents learn of a version from
	// its tag and must find the index there, or they would fetch whole files.
	if _, err := pushChunkIndex(ctx, dst, mDesc, idx); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push chunk index: %w", err)
	}
	// So does the reference profile: an agent activates a version without
	// one, but does not monitor it until it has one.
	if graph != nil {
		if _, err := PushProfile(ctx, graph, mDesc, opts.Profile, ProfilePushOptions{Created: created}); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	if err := dst.Tag(ctx, mDesc, opts.Version); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("tag %s: %w", opts.Version, err)
	}
	return mDesc, nil
}

// hashModel lists the files of src (a model file or folder) and hashes and
// chunks each of them once, with params or, when zero, ChunkParamsForSize of
// the largest file.
func hashModel(ctx context.Context, src string, params ChunkParams) ([]localFile, []File, *ChunkIndex, error) {
	local, err := collectFiles(src)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read model files: %w", err)
	}
	if params == (ChunkParams{}) {
		var largest int64
		for _, lf := range local {
			if fi, err := os.Stat(lf.abs); err == nil && fi.Size() > largest {
				largest = fi.Size()
			}
		}
		params = ChunkParamsForSize(largest)
	}
	fh, err := newFileHasher(params)
	if err != nil {
		return nil, nil, nil, err
	}
	idx := &ChunkIndex{Version: ChunkIndexVersion, Params: params, Files: make([]FileChunks, 0, len(local))}
	files := make([]File, 0, len(local))
	for _, lf := range local {
		fc, err := fh.hashFile(ctx, lf.abs, lf.rel)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("hash %s: %w", lf.rel, err)
		}
		idx.Files = append(idx.Files, fc)
		files = append(files, File{Path: lf.rel, Size: fc.Size, Digest: fc.Digest, MediaType: MediaTypeForPath(lf.rel)})
	}
	return local, files, idx, nil
}

// modelLayers returns the raw layers of files and the model config blob
// naming model name at version, with its descriptor.
func modelLayers(files []File, name, version, format, paramSize string, created time.Time) ([]ocispec.Descriptor, ocispec.Descriptor, []byte, error) {
	cfg := ModelConfig{
		Descriptor: ModelDescriptor{Name: name, Version: version, CreatedAt: &created},
		ModelFS:    ModelFS{Type: "layers", DiffIDs: make([]digest.Digest, 0, len(files))},
		Config:     ModelExecConfig{Format: format, ParamSize: paramSize},
	}
	layers := make([]ocispec.Descriptor, 0, len(files))
	for _, f := range files {
		cfg.ModelFS.DiffIDs = append(cfg.ModelFS.DiffIDs, f.Digest)
		layers = append(layers, ocispec.Descriptor{
			MediaType:   f.MediaType,
			Digest:      f.Digest,
			Size:        f.Size,
			Annotations: map[string]string{AnnotationFilepath: f.Path, AnnotationTitle: f.Path},
		})
	}
	cfgBytes, err := json.Marshal(cfg)
	if err != nil {
		return nil, ocispec.Descriptor{}, nil, err
	}
	cfgDesc := ocispec.Descriptor{MediaType: MediaTypeModelConfig, Digest: digest.FromBytes(cfgBytes), Size: int64(len(cfgBytes))}
	return layers, cfgDesc, cfgBytes, nil
}

func totalSize(files []File) int64 {
	var n int64
	for _, f := range files {
		n += f.Size
	}
	return n
}

// checkExistingTag resolves the version tag. It returns same=true with the
// existing descriptor when the tag holds the same content as m, and a
// *VersionExistsError when it holds other content.
func checkExistingTag(ctx context.Context, dst oras.Target, opts PushOptions, m *ocispec.Manifest) (ocispec.Descriptor, bool, error) {
	desc, err := dst.Resolve(ctx, opts.Version)
	if errors.Is(err, errdef.ErrNotFound) {
		return ocispec.Descriptor{}, false, nil
	}
	if err != nil {
		return ocispec.Descriptor{}, false, fmt.Errorf("resolve %s: %w", opts.Version, err)
	}
	exists := &VersionExistsError{Name: opts.Name, Version: opts.Version, Digest: desc.Digest}
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return ocispec.Descriptor{}, false, exists
	}
	b, err := fetchLimited(ctx, dst, desc, MaxManifestBytes)
	if err != nil {
		return ocispec.Descriptor{}, false, fmt.Errorf("fetch existing %s: %w", opts.Version, err)
	}
	old, err := ParseManifest(b)
	if err != nil || !sameContent(old, m) {
		return ocispec.Descriptor{}, false, exists
	}
	desc.ArtifactType = old.ArtifactType
	return desc, true, nil
}

// sameContent compares two model manifests ignoring the creation time (and
// so the config blob, which differs only by it).
func sameContent(a, b *ocispec.Manifest) bool {
	if a.ArtifactType != b.ArtifactType || a.Config.MediaType != b.Config.MediaType || len(a.Layers) != len(b.Layers) {
		return false
	}
	for i := range a.Layers {
		x, y := a.Layers[i], b.Layers[i]
		if x.Digest != y.Digest || x.Size != y.Size || x.MediaType != y.MediaType || !maps.Equal(x.Annotations, y.Annotations) {
			return false
		}
	}
	strip := func(m map[string]string) map[string]string {
		m = maps.Clone(m)
		delete(m, AnnotationCreated)
		return m
	}
	return maps.Equal(strip(a.Annotations), strip(b.Annotations))
}

// pushFiles uploads each file's layer from an *os.File unless dst has it.
func pushFiles(ctx context.Context, dst oras.Target, local []localFile, layers []ocispec.Descriptor, progress func(done, total int64)) error {
	var done, total int64
	for _, l := range layers {
		total += l.Size
	}
	report := func() {
		if progress != nil {
			progress(done, total)
		}
	}
	report()
	for i, lf := range local {
		desc := ocispec.Descriptor{MediaType: layers[i].MediaType, Digest: layers[i].Digest, Size: layers[i].Size}
		ok, err := dst.Exists(ctx, desc)
		if err != nil {
			return fmt.Errorf("check %s: %w", lf.rel, err)
		}
		if !ok {
			var onRead func(int64)
			if progress != nil {
				onRead = func(n int64) { done += n; report() }
			}
			if err := pushFile(ctx, dst, lf, desc, onRead); err != nil {
				return fmt.Errorf("push %s: %w", lf.rel, err)
			}
			continue
		}
		done += desc.Size
		report()
	}
	return nil
}

func pushFile(ctx context.Context, dst oras.Target, lf localFile, desc ocispec.Descriptor, onRead func(int64)) error {
	f, err := os.Open(lf.abs)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != desc.Size {
		return fmt.Errorf("file changed while pushing: size %d, hashed %d", fi.Size(), desc.Size)
	}
	var r io.Reader = f
	if onRead != nil {
		r = &countingReader{r: f, onRead: onRead}
	}
	err = dst.Push(ctx, desc, r)
	if errors.Is(err, errdef.ErrAlreadyExists) {
		return nil
	}
	return err
}

// countingReader reports the bytes read through it.
type countingReader struct {
	r      io.Reader
	onRead func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.onRead(int64(n))
	}
	return n, err
}

// modelManifest builds a model version's manifest of config cfg, layers and
// annotations ann, and returns it with its bytes and its descriptor.
func modelManifest(cfg ocispec.Descriptor, layers []ocispec.Descriptor, ann map[string]string) (*ocispec.Manifest, []byte, ocispec.Descriptor, error) {
	m := &ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactTypeModel,
		Config:       cfg,
		Layers:       layers,
		Annotations:  ann,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, nil, ocispec.Descriptor{}, err
	}
	return m, mb, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactTypeModel,
		Digest: digest.FromBytes(mb), Size: int64(len(mb))}, nil
}
