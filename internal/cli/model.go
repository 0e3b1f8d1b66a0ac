package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/driftref"
	"outpost.dev/outpost/internal/hubclient"
)

func newModelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Push, list, inspect, pull, sign, verify, promote and trace model versions; convert local files",
		Long: `Models live in the hub's OCI registry as repositories models/<name>, one tag
per semver version, one raw layer per file, in the CNCF ModelPack format.
Any OCI client (oras, crane, skopeo) can read and write them too.

Versions a pipeline produced at the edge live in edge/<cluster>/<name> until
they are promoted; every command here names them edge/<cluster>/<name>@<version>.`,
	}
	cmd.AddCommand(newModelPushCmd(g), newModelListCmd(g), newModelShowCmd(g),
		newModelPullCmd(g), newModelSignCmd(g), newModelVerifyCmd(g), newModelDiffCmd(g), newModelExampleCmd(g),
		newModelPromoteCmd(g), newModelLineageCmd(g), newModelCompressCmd(g), newModelConvertCmd(g))
	return cmd
}

// repository opens the repository of model name on the hub as an oras-go repository:
// models/NAME, or edge/CLUSTER/NAME for a model produced at the edge
// (v1alpha1.ModelRepository).
func repository(h *hubclient.Client, name string) (*remote.Repository, error) {
	repoName, err := v1alpha1.ModelRepository(name)
	if err != nil {
		return nil, err
	}
	repo, err := remote.NewRepository(h.Host() + "/" + repoName)
	if err != nil {
		return nil, fmt.Errorf("model name %q: %w", name, err)
	}
	repo.PlainHTTP = h.PlainHTTP()
	repo.Client = orasClient(h)
	return repo, nil
}

func orasClient(h *hubclient.Client) *orasauth.Client {
	return &orasauth.Client{
		Client:     h.HTTPClient(),
		Cache:      orasauth.NewCache(),
		Credential: orasauth.StaticCredential(h.Host(), orasauth.Credential{Username: "outpost", Password: h.Token()}),
	}
}

// resolveVersion opens models/<name> on the hub and resolves version to its manifest.
func (g *globals) resolveVersion(ctx context.Context, name, version string) (*remote.Repository, ocispec.Descriptor, error) {
	h, err := g.hub()
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	repo, err := repository(h, name)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	desc, err := repo.Resolve(ctx, version)
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("resolve %s@%s: %w", name, version, whyNotFound(ctx, h, repo, name, version, err))
	}
	return repo, desc, nil
}

// resolveVariant resolves version of model name, or its variant when variant is set, to
// its manifest, and names what it resolved ("NAME@VERSION" or "NAME@VERSION variant V").
func (g *globals) resolveVariant(ctx context.Context, name, version, variant string) (*remote.Repository, ocispec.Descriptor, string, error) {
	repo, desc, err := g.resolveVersion(ctx, name, version)
	if err != nil || variant == "" {
		return repo, desc, name + "@" + version, err
	}
	v, err := artifact.ResolveVariant(ctx, repo, desc.Digest.String(), variant)
	if err != nil {
		return nil, ocispec.Descriptor{}, "", fmt.Errorf("%s@%s variant %s: %w", name, version, variant, err)
	}
	return repo, v.Descriptor, name + "@" + version + " variant " + variant, nil
}

// whyNotFound replaces an OCI client's not-found error for version of model
// name by the registry's own message, which says why (a deleted version,
// say); other errors are returned as they are.
func whyNotFound(ctx context.Context, h *hubclient.Client, repo *remote.Repository, name, version string, err error) error {
	if !errors.Is(err, errdef.ErrNotFound) {
		return err
	}
	if cerr := h.CheckManifest(ctx, repo.Reference.Repository, version); hubclient.Code(cerr) == http.StatusNotFound {
		err = cerr
	}
	// Say what there is instead.
	switch vs, lerr := modelVersions(ctx, repo, name); {
	case lerr != nil:
		return err
	case len(vs) == 0:
		return fmt.Errorf("%w (model %q has no versions: 'outpost model list' shows the models there are)", err, name)
	default:
		return fmt.Errorf("%w (versions of %s: %s)", err, name, strings.Join(vs, ", "))
	}
}

// modelVersions lists the versions (tags) of model name, lowest first; an
// unknown model has none.
func modelVersions(ctx context.Context, repo *remote.Repository, name string) ([]string, error) {
	var vs []string
	err := repo.Tags(ctx, "", func(tags []string) error { vs = append(vs, tags...); return nil })
	var resp *errcode.ErrorResponse
	if errors.Is(err, errdef.ErrNotFound) || errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list versions of %s: %w", name, err)
	}
	return sortVersions(vs), nil
}

// splitRef splits NAME@VERSION; version is "" when absent.
func splitRef(ref string) (name, version string) {
	name, version, _ = strings.Cut(ref, "@")
	return name, version
}

// progress returns a progress callback drawing a bar on stderr when it is a
// terminal, and nil otherwise.
func (g *globals) progress(desc string) (func(done, total int64), func()) {
	if !isTerminal(g.stderr) {
		return nil, func() {}
	}
	var bar *progressbar.ProgressBar
	update := func(done, total int64) {
		if bar == nil {
			bar = progressbar.NewOptions64(total,
				progressbar.OptionSetWriter(g.stderr),
				progressbar.OptionSetDescription(desc),
				progressbar.OptionShowBytes(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100_000_000),
				progressbar.OptionClearOnFinish())
		}
		bar.Set64(done)
	}
	return update, func() {
		if bar != nil {
			bar.Finish()
		}
	}
}

func newModelPushCmd(g *globals) *cobra.Command {
	var (
		name, version, parent, producedBy string
		reference                         string
		metrics                           []string
		variant, variantMeta              string
	)
	cmd := &cobra.Command{
		Use:   "push PATH --name NAME --version VERSION",
		Short: "Push a model file or folder as a new version",
		Long: `Push a model file, or a folder of ONNX, safetensors and other files, to the
hub as version VERSION (semver) of model NAME. Each file becomes one raw OCI
layer; a chunk index is attached so edge clusters fetch only what changed.
Pushing an existing version again with the same files does nothing; with
different files it is refused.

With --reference DATA, the model (the one .onnx file of PATH) runs on the
reference data first, with the Go runtime, and the profile of its inputs and
outputs is attached to the version before it is tagged, so agents find it
with the model and monitor drift against it. DATA is a .npy file, an IDX file
or a folder of them (see 'outpost drift profile', which attaches a profile to
an existing version, with more options).

With --variant NAME, PATH is pushed as a variant (int8, fp16, pruned, ...) of
the existing version NAME@VERSION: an artifact of its own, attached to the
version as an OCI referrer, that deployments' variant policies choose from per
cluster. --variant-meta FILE.json records what it is and costs (method,
params, accuracy, latency, peak memory, operators; see
docs/artifact-format.md). A missing version, a variant name the version
already has with other files, or bad metadata is refused and nothing is
pushed.`,
		Example: `  outpost model push ./fashion-mlp --name fashion-mlp --version 1.0.0
  outpost model push model.onnx --name detector --version 2.1.0 --parent detector@2.0.0 --metric accuracy=0.91
  outpost model push ./fashion-mlp --name fashion-mlp --version 1.1.0 --reference train-images-idx3-ubyte.gz
  outpost model push ./fashion-mlp-int8 --name fashion-mlp --version 1.1.0 --variant int8 --variant-meta int8.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" || version == "" {
				return errors.New("--name and --version are required")
			}
			if variant != "" || variantMeta != "" {
				if len(metrics) > 0 || reference != "" || parent != "" || producedBy != "" {
					return errors.New("--variant takes no --metric, --reference, --parent or --produced-by: a variant's costs go in --variant-meta")
				}
				return pushVariant(cmd.Context(), g, args[0], name, version, variant, variantMeta)
			}
			ms := map[string]string{}
			for _, m := range metrics {
				k, v, ok := strings.Cut(m, "=")
				if !ok || k == "" {
					return fmt.Errorf("--metric %q: want KEY=VALUE", m)
				}
				ms[k] = v
			}
			// The profile is computed before anything is sent: bad reference
			// data changes nothing at the hub.
			var profile *drift.Profile
			var profileBytes []byte
			if reference != "" {
				model, err := driftref.FindModel(args[0])
				if err != nil {
					return err
				}
				data, err := readReference(reference)
				if err != nil {
					return err
				}
				if profile, profileBytes, err = computeProfile(cmd.Context(), model, data, driftref.ProfileOptions{}); err != nil {
					return err
				}
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			repo, err := repository(h, name)
			if err != nil {
				return err
			}
			mn, _ := v1alpha1.ParseModelName(name) // repository checked it
			prog, done := g.progress("push " + name + "@" + version)
			desc, err := artifact.Push(cmd.Context(), repo, args[0], artifact.PushOptions{
				Name: mn.Name, Version: version, Parent: parent, ProducedBy: producedBy, Metrics: ms, Progress: prog,
				Profile: profileBytes,
			})
			done()
			if errors.Is(err, artifact.ErrProfileExists) {
				return fmt.Errorf("push %s@%s: the version already has another reference profile: replace it with 'outpost drift profile %s@%s DATA --replace'", name, version, name, version)
			}
			if err != nil {
				return fmt.Errorf("push %s@%s: %w", name, version, err)
			}
			fmt.Fprintf(g.stdout, "pushed %s@%s %s\n", name, version, desc.Digest)
			if profile != nil {
				fmt.Fprintf(g.stdout, "with its reference profile (%s)\n", describeProfile(profile))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "model name (the repository is models/NAME; edge/CLUSTER/NAME is a cluster's own)")
	f.StringVar(&version, "version", "", "semver version, such as 1.0.0")
	f.StringVar(&parent, "parent", "", "lineage: the model version this one derives from (NAME@VERSION)")
	f.StringVar(&producedBy, "produced-by", "", "lineage: what produced this version (a pipeline run, a training job)")
	f.StringSliceVar(&metrics, "metric", nil, "a metric KEY=VALUE recorded with the version; repeatable")
	f.StringVar(&reference, "reference", "", "reference data (.npy, IDX or a folder of them) to compute and attach the version's reference profile from")
	f.StringVar(&variant, "variant", "", "push PATH as this variant (int8, fp16, ...) of the existing version NAME@VERSION")
	f.StringVar(&variantMeta, "variant-meta", "", "JSON file of the variant's metadata: method, params, accuracy, latency, peak memory, operators")
	return cmd
}

// pushVariant pushes src as variant of name@version. The metadata is read and
// checked before anything is sent.
func pushVariant(ctx context.Context, g *globals, src, name, version, variant, metaFile string) error {
	var meta artifact.VariantMeta
	if metaFile != "" {
		b, err := os.ReadFile(metaFile)
		if err != nil {
			return err
		}
		if meta, err = artifact.ParseVariantMeta(b); err != nil {
			return fmt.Errorf("--variant-meta %s: %w", metaFile, err)
		}
	}
	switch {
	case variant == "" && meta.Name == "":
		return errors.New("--variant NAME is required with --variant-meta")
	case variant == "":
		variant = meta.Name
	case meta.Name != "" && meta.Name != variant:
		return fmt.Errorf("--variant %s, but --variant-meta %s names variant %s", variant, metaFile, meta.Name)
	}
	meta.Name = variant
	if err := meta.Validate(); err != nil {
		return fmt.Errorf("--variant: %w", err)
	}
	return pushVariantMeta(ctx, g, src, name, version, meta)
}

// pushVariantMeta pushes the model folder src as the variant meta.Name, described by
// meta (checked), of name@version.
func pushVariantMeta(ctx context.Context, g *globals, src, name, version string, meta artifact.VariantMeta) error {
	variant := meta.Name
	h, err := g.hub()
	if err != nil {
		return err
	}
	repo, err := repository(h, name)
	if err != nil {
		return err
	}
	mn, _ := v1alpha1.ParseModelName(name) // repository checked it
	prog, done := g.progress("push " + name + "@" + version + " variant " + variant)
	desc, err := artifact.PushVariant(ctx, repo, src, artifact.VariantPushOptions{Name: mn.Name, Version: version, Meta: meta, Progress: prog})
	done()
	if err != nil {
		if errors.Is(err, artifact.ErrNoVersion) {
			err = whyNotFound(ctx, h, repo, name, version, fmt.Errorf("%w: push the model first", errdef.ErrNotFound))
		}
		return fmt.Errorf("push %s@%s variant %s: %w", name, version, variant, err)
	}
	fmt.Fprintf(g.stdout, "pushed %s@%s variant %s %s\n", name, version, variant, desc.Digest)
	return nil
}

func newModelListCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List models and their versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "json", "yaml"); err != nil {
				return err
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			list, err := listModels(cmd.Context(), h)
			if err != nil {
				return err
			}
			if output != "" {
				return printStructured(g.stdout, output, list)
			}
			tw := newTable(g.stdout)
			fmt.Fprintln(tw, "NAME\tVERSIONS\tLATEST")
			for _, m := range list {
				latest := ""
				if n := len(m.Versions); n > 0 {
					latest = m.Versions[n-1]
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\n", m.Name, len(m.Versions), latest)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml")
	return cmd
}

// modelSummary is one row of 'model list'.
type modelSummary struct {
	Name     string   `json:"name"`
	Versions []string `json:"versions"`
}

func listModels(ctx context.Context, h *hubclient.Client) ([]modelSummary, error) {
	reg, err := remote.NewRegistry(h.Host())
	if err != nil {
		return nil, err
	}
	reg.PlainHTTP = h.PlainHTTP()
	reg.Client = orasClient(h)
	var names []string
	err = reg.Repositories(ctx, "", func(repos []string) error {
		for _, r := range repos {
			if m, ok := v1alpha1.ModelNameOfRepository(r); ok {
				names = append(names, m.String())
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	sort.Strings(names)
	var out []modelSummary
	for _, n := range names {
		repo, err := repository(h, n)
		if err != nil {
			return nil, err
		}
		vs, err := modelVersions(ctx, repo, n)
		if err != nil {
			return nil, err
		}
		if len(vs) == 0 {
			continue
		}
		out = append(out, modelSummary{Name: n, Versions: vs})
	}
	return out, nil
}

func newModelShowCmd(g *globals) *cobra.Command {
	var (
		output  string
		keyFile []string
	)
	cmd := &cobra.Command{
		Use:   "show NAME[@VERSION]",
		Short: "Show a model version: digest, size, files, format, lineage, signatures, reference profile, runtimes",
		Long: `Show a model version. Without @VERSION, the highest version is shown.

Runtimes says which runtimes can serve the version, read from the operators
of the ONNX file an agent serves (its only .onnx file, or model.onnx): "go"
when the pure-Go runtime implements every one (otherwise the ones it lacks
are named), "onnxruntime" when every operator is of a domain ONNX Runtime
implements (an agent needs its library, --onnxruntime-lib). A deployment's
runtime "auto" serves with the first of them the agent has.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "json", "yaml"); err != nil {
				return err
			}
			name, version := splitRef(args[0])
			h, err := g.hub()
			if err != nil {
				return err
			}
			repo, err := repository(h, name)
			if err != nil {
				return err
			}
			if version == "" {
				if version, err = latestVersion(cmd.Context(), repo, name); err != nil {
					return err
				}
			}
			keys, err := readPublicKeys(keyFile)
			if err != nil {
				return err
			}
			info, err := artifact.Inspect(cmd.Context(), repo, version, keys)
			if err != nil {
				return fmt.Errorf("show %s@%s: %w", name, version, whyNotFound(cmd.Context(), h, repo, name, version, err))
			}
			variants, err := artifact.Variants(cmd.Context(), repo, info.Descriptor)
			if err != nil && !errors.Is(err, errdef.ErrUnsupported) {
				return fmt.Errorf("show %s@%s: list variants: %w", name, version, err)
			}
			show := modelShow{ModelInfo: info, Profile: summarizeProfile(cmd.Context(), repo, info.Profile),
				Serving: checkRuntimes(cmd.Context(), repo, info.Files), Variants: variants}
			if output != "" {
				return printStructured(g.stdout, output, show)
			}
			return printModelInfo(g.stdout, name, version, show, len(keys) > 0)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml")
	cmd.Flags().StringSliceVar(&keyFile, "key", nil, "public key file to check signatures against; repeatable")
	return cmd
}

func latestVersion(ctx context.Context, repo *remote.Repository, name string) (string, error) {
	vs, err := modelVersions(ctx, repo, name)
	if err != nil {
		return "", err
	}
	if len(vs) == 0 {
		return "", fmt.Errorf("model %q has no versions: 'outpost model list' shows the models there are", name)
	}
	return vs[len(vs)-1], nil
}

// modelShow is what 'model show' prints: the version, and what its
// reference profile summarises.
type modelShow struct {
	*artifact.ModelInfo
	// Profile replaces ModelInfo's in the structured output.
	Profile *profileSummary `json:"profile,omitempty"`
	// Serving says which runtimes can serve the version.
	Serving *servingSupport `json:"serving,omitempty"`
	// Variants are the version's variants (int8, fp16, ...).
	Variants []artifact.Variant `json:"variants"`
}

// printVariants lists a version's variants, one row each.
func printVariants(w io.Writer, vs []artifact.Variant) error {
	if len(vs) == 0 {
		fmt.Fprintln(w, "Variants:	none")
		return nil
	}
	fmt.Fprintln(w, "Variants:")
	tw := newTable(w)
	fmt.Fprintln(tw, "  NAME	SIZE	ACCURACY	PEAK MEMORY	LATENCY GO b1/b32	LATENCY ORT b1/b32	METHOD	DIGEST")
	ms := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return strconv.FormatFloat(v, 'g', 4, 64) + "ms"
	}
	for _, v := range vs {
		m := v.Meta
		acc, mem := "-", "-"
		if m.Accuracy != nil {
			acc = strconv.FormatFloat(*m.Accuracy, 'f', -1, 64)
		}
		if m.PeakMemoryBytes > 0 {
			mem = bytesize.Format(m.PeakMemoryBytes)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s/%s\t%s/%s\t%s\t%s\n", m.Name, bytesize.Format(m.SizeBytes), acc, mem,
			ms(m.Latency.GoBatch1Ms), ms(m.Latency.GoBatch32Ms), ms(m.Latency.ONNXRuntimeBatch1Ms), ms(m.Latency.ONNXRuntimeBatch32Ms),
			orNone(m.Method), v.Digest.Encoded()[:12])
	}
	return tw.Flush()
}

// profileSummary describes a version's reference profile.
type profileSummary struct {
	artifact.ProfileRef
	Samples     uint64            `json:"samples"`
	InputShape  []int             `json:"inputShape,omitempty"`
	Inputs      drift.InputMode   `json:"inputs,omitempty"`
	OutputShape []int             `json:"outputShape,omitempty"`
	Outputs     drift.OutputMode  `json:"outputs,omitempty"`
	Features    []string          `json:"features,omitempty"`
	Roles       map[string]string `json:"-"`
}

// summarizeProfile fetches and decodes the profile ref names; a profile
// that cannot be read is described by its error.
func summarizeProfile(ctx context.Context, repo *remote.Repository, ref *artifact.ProfileRef) *profileSummary {
	if ref == nil {
		return nil
	}
	s := &profileSummary{ProfileRef: *ref}
	b, err := artifact.FetchProfile(ctx, repo, *ref)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	p, err := drift.DecodeProfile(b)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	spec := p.Spec()
	s.Samples = p.Samples()
	s.InputShape, s.Inputs = spec.Config.InputShape, spec.Config.Inputs
	s.OutputShape, s.Outputs = spec.Config.OutputShape, spec.Config.Outputs
	s.Roles = map[string]string{}
	for _, f := range spec.Features {
		s.Features = append(s.Features, f.Name)
		s.Roles[f.Name] = string(f.Role)
	}
	return s
}

// featureList names features briefly: all of a few, the ends of many.
func featureList(names []string) string {
	if len(names) <= 6 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, %s … %s (%d)", names[0], names[1], names[len(names)-1], len(names))
}

func printProfile(tw io.Writer, s *profileSummary) {
	if s == nil {
		fmt.Fprintln(tw, "Reference profile:\tnone")
		return
	}
	when := ""
	if !s.Created.IsZero() {
		when = ", attached " + s.Created.Format("2006-01-02 15:04:05 MST")
	}
	fmt.Fprintf(tw, "Reference profile:\t%s%s\n", s.Digest, when)
	if s.Error != "" {
		fmt.Fprintf(tw, "  Unusable:\t%s\n", s.Error)
		return
	}
	var in, out []string
	for _, n := range s.Features {
		if s.Roles[n] == string(drift.RoleInput) {
			in = append(in, n)
		} else {
			out = append(out, n)
		}
	}
	fmt.Fprintf(tw, "  Samples:\t%d\n", s.Samples)
	fmt.Fprintf(tw, "  Input:\t%v %s: %s\n", s.InputShape, s.Inputs, featureList(in))
	fmt.Fprintf(tw, "  Output:\t%v %s: %s\n", s.OutputShape, s.Outputs, featureList(out))
}

func printModelInfo(w io.Writer, name, version string, show modelShow, checked bool) error {
	m := show.ModelInfo
	tw := newTable(w)
	fmt.Fprintf(tw, "Model:\t%s\n", name)
	fmt.Fprintf(tw, "Version:\t%s\n", version)
	fmt.Fprintf(tw, "Digest:\t%s\n", m.Digest)
	fmt.Fprintf(tw, "Size:\t%s (%d bytes)\n", bytesize.Format(m.Size), m.Size)
	fmt.Fprintf(tw, "Format:\t%s\n", orNone(m.Format))
	if !m.Created.IsZero() {
		fmt.Fprintf(tw, "Created:\t%s\n", m.Created.Format("2006-01-02 15:04:05 MST"))
	}
	fmt.Fprintf(tw, "Parent:\t%s\n", orNone(m.Lineage.Parent))
	fmt.Fprintf(tw, "Produced by:\t%s\n", orNone(m.Lineage.ProducedBy))
	for _, f := range []struct{ k, v string }{{"Cluster", m.Lineage.Cluster}, {"Pipeline", m.Lineage.Pipeline},
		{"Run", m.Lineage.Run}, {"Data set", m.Lineage.Dataset}} {
		if f.v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", f.k, f.v)
		}
	}
	fmt.Fprintf(tw, "Chunk index:\t%v\n", m.HasChunkIndex)
	if len(m.Metrics) > 0 {
		keys := make([]string, 0, len(m.Metrics))
		for k := range m.Metrics {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintln(tw, "Metrics:")
		for _, k := range keys {
			fmt.Fprintf(tw, "  %s\t%s\n", k, m.Metrics[k])
		}
	}
	fmt.Fprintln(tw, "Files:")
	for _, f := range m.Files {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Path, bytesize.Format(f.Size), f.Digest)
	}
	if len(m.Signatures) == 0 {
		fmt.Fprintln(tw, "Signatures:\tnone")
	} else {
		fmt.Fprintln(tw, "Signatures:")
		for _, s := range m.Signatures {
			state := "valid"
			switch {
			case !checked:
				state = "present (pass --key to verify)"
			case !s.Valid:
				state = "not verified: " + s.Error
			}
			fmt.Fprintf(tw, "  key %s\t%s\n", s.KeyID, state)
		}
	}
	printProfile(tw, show.Profile)
	printRuntimes(tw, show.Serving)
	if err := tw.Flush(); err != nil {
		return err
	}
	return printVariants(w, show.Variants)
}

func newModelPullCmd(g *globals) *cobra.Command {
	var variant string
	cmd := &cobra.Command{
		Use:   "pull NAME@VERSION DIR [--variant NAME]",
		Short: "Download a model version into DIR, verifying every digest",
		Long: `Download every file of a model version into DIR. Each file is written to a
temporary file, checked against its sha256 digest and size, and renamed into
place; on any mismatch nothing new is left in DIR. Models pushed with 'oras
push' (files with title annotations) can be pulled too. With --variant, the
files of that variant of the version ('outpost model show' lists them) are
pulled instead.`,
		Example: `  outpost model pull fashion-mlp@1.0.0 ./models/fashion-mlp
  outpost model pull fashion-mlp@1.0.0 ./models/fashion-mlp-int8 --variant int8`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, version := splitRef(args[0])
			if version == "" {
				return fmt.Errorf("%q: want NAME@VERSION", args[0])
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			repo, err := repository(h, name)
			if err != nil {
				return err
			}
			ref, what := version, args[0]
			if variant != "" {
				v, err := artifact.ResolveVariant(cmd.Context(), repo, version, variant)
				if err != nil {
					return fmt.Errorf("pull %s variant %s: %w", args[0], variant, whyNotFound(cmd.Context(), h, repo, name, version, err))
				}
				ref, what = v.Digest.String(), args[0]+" variant "+variant
			}
			_, statErr := os.Stat(args[1])
			if err := os.MkdirAll(args[1], 0o755); err != nil {
				return err
			}
			prog, done := g.progress("pull " + what)
			m, err := artifact.Pull(cmd.Context(), repo, ref, args[1], artifact.PullOptions{Progress: prog})
			done()
			if err != nil {
				if errors.Is(statErr, os.ErrNotExist) {
					os.Remove(args[1]) // the folder this pull made, empty: a failed pull leaves nothing new
				}
				return fmt.Errorf("pull %s: %w", args[0], whyNotFound(cmd.Context(), h, repo, name, version, err))
			}
			var total int64
			for _, f := range m.Files {
				total += f.Size
			}
			fmt.Fprintf(g.stdout, "pulled %s (%s, %s) into %s, all digests verified\n", what, plural(len(m.Files), "file"), bytesize.Format(total), args[1])
			return nil
		},
	}
	cmd.Flags().StringVar(&variant, "variant", "", "pull this variant of the version (int8, fp16, ...)")
	return cmd
}

func newModelSignCmd(g *globals) *cobra.Command {
	var keyFile, variant string
	cmd := &cobra.Command{
		Use:   "sign NAME@VERSION --key PRIVATE_KEY [--variant NAME]",
		Short: "Sign a model version (or one of its variants) with an ed25519 key (DSSE envelope, stored as an OCI referrer)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, version := splitRef(args[0])
			if version == "" {
				return fmt.Errorf("%q: want NAME@VERSION", args[0])
			}
			if keyFile == "" {
				return errors.New("--key is required (create one with 'outpost keygen')")
			}
			b, err := os.ReadFile(keyFile)
			if err != nil {
				return err
			}
			key, err := artifact.ParsePrivateKeyPEM(b)
			if err != nil {
				return fmt.Errorf("%s: %w", keyFile, err)
			}
			repo, desc, what, err := g.resolveVariant(cmd.Context(), name, version, variant)
			if err != nil {
				return err
			}
			subject := repo.Reference.Repository + ":" + version
			if variant != "" {
				subject += " variant " + variant
			}
			if _, err := artifact.Sign(cmd.Context(), repo, desc, subject, key); err != nil {
				return fmt.Errorf("sign %s: %w", what, err)
			}
			fmt.Fprintf(g.stdout, "signed %s %s with key %s\n", what, desc.Digest, artifact.KeyID(key.Public().(ed25519.PublicKey)))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "ed25519 private key file (PEM, from 'outpost keygen')")
	cmd.Flags().StringVar(&variant, "variant", "", "sign this variant of the version (int8, fp16, ...)")
	return cmd
}

func newModelVerifyCmd(g *globals) *cobra.Command {
	var (
		keyFiles []string
		variant  string
	)
	cmd := &cobra.Command{
		Use:   "verify NAME@VERSION --key PUBLIC_KEY [--variant NAME]",
		Short: "Check that a model version carries a valid signature from a trusted key",
		Long:  "Exit 0 when at least one signature of the version verifies against one of the keys, 1 otherwise.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, version := splitRef(args[0])
			if version == "" {
				return fmt.Errorf("%q: want NAME@VERSION", args[0])
			}
			if len(keyFiles) == 0 {
				return errors.New("--key is required: the public key(s) to trust")
			}
			keys, err := readPublicKeys(keyFiles)
			if err != nil {
				return err
			}
			repo, desc, what, err := g.resolveVariant(cmd.Context(), name, version, variant)
			if err != nil {
				return err
			}
			sigs, err := artifact.Signatures(cmd.Context(), repo, desc, keys)
			if err != nil {
				return fmt.Errorf("verify %s: %w", what, err)
			}
			for _, s := range sigs {
				if s.Valid {
					fmt.Fprintf(g.stdout, "verified %s %s: signed by key %s\n", what, desc.Digest, s.KeyID)
					return nil
				}
			}
			return fmt.Errorf("%s %s: no valid signature from a trusted key (%d signature(s) found)", what, desc.Digest, len(sigs))
		},
	}
	cmd.Flags().StringSliceVar(&keyFiles, "key", nil, "trusted ed25519 public key file (PEM); repeatable")
	cmd.Flags().StringVar(&variant, "variant", "", "verify this variant of the version (int8, fp16, ...)")
	return cmd
}

func newModelDiffCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diff NAME@FROM NAME@TO",
		Short: "Show how much of version TO a cluster holding FROM must fetch",
		Long: `Compare the chunk indexes of two model versions (of the same model or of
two models) and print how many chunks and bytes of TO are not in FROM: what
crosses the link when an edge cluster that caches FROM is moved to TO. Where
TO has a weight delta against a file of FROM (it was pushed with --parent)
smaller than the file's missing chunks, the delta is what crosses.`,
		Example: "  outpost model diff fashion-mlp@1.0.0 fashion-mlp@1.1.0",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var idx [2]*artifact.ChunkIndex
			var deltas []artifact.FileDelta
			for i, ref := range args {
				name, version := splitRef(ref)
				if version == "" {
					return fmt.Errorf("%q: want NAME@VERSION", ref)
				}
				repo, desc, err := g.resolveVersion(cmd.Context(), name, version)
				if err != nil {
					return err
				}
				if idx[i], err = artifact.FetchChunkIndex(cmd.Context(), repo, desc); err != nil {
					return fmt.Errorf("chunk index of %s: %w", ref, err)
				}
				if i == 1 {
					deltas, _ = artifact.FetchWeightDeltas(cmd.Context(), repo, desc) // none is fine
				}
			}
			d := artifact.ComputeDelta(idx[1], idx[0])
			pct := 0.0
			if d.TotalBytes > 0 {
				pct = 100 * float64(d.MissingBytes) / float64(d.TotalBytes)
			}
			fmt.Fprintf(g.stdout, "%s holds all but %d of the %d chunks of %s: %s of %s to fetch (%.1f%%)\n",
				args[0], d.MissingChunks, d.Chunks, args[1], bytesize.Format(d.MissingBytes), bytesize.Format(d.TotalBytes), pct)
			held := map[digest.Digest]bool{}
			for _, f := range idx[0].Files {
				held[f.Digest] = true
			}
			best, usedDelta := int64(0), false
			for _, f := range d.Missing {
				var n int64
				for _, c := range f.Chunks {
					n += c.Length
				}
				line, cost := fmt.Sprintf("  %s: %d chunk(s), %s", f.Path, len(f.Chunks), bytesize.Format(n)), n
				for _, fd := range deltas {
					if fd.Target == f.Digest && held[fd.Base] && fd.Blob.Size < cost {
						line, cost, usedDelta = fmt.Sprintf("%s, or a weight delta of %s (fetched instead)", line, bytesize.Format(fd.Blob.Size)), fd.Blob.Size, true
					}
				}
				best += cost
				fmt.Fprintln(g.stdout, line)
			}
			if usedDelta && d.TotalBytes > 0 {
				fmt.Fprintf(g.stdout, "with weight deltas: %s to fetch (%.1f%%)\n", bytesize.Format(best), 100*float64(best)/float64(d.TotalBytes))
			}
			return nil
		},
	}
	return cmd
}

func readPublicKeys(files []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		k, err := artifact.ParsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func newKeygenCmd(g *globals) *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:     "keygen --out PREFIX",
		Short:   "Create an ed25519 signing key pair: PREFIX.key (private) and PREFIX.pub",
		Example: "  outpost keygen --out release\n  outpost model sign fashion-mlp@1.0.0 --key release.key",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			for _, p := range []string{out + ".key", out + ".pub"} {
				if _, err := os.Stat(p); err == nil && !force {
					return fmt.Errorf("%s exists (use --force to overwrite)", p)
				}
			}
			pub, priv, err := artifact.GenerateKey()
			if err != nil {
				return err
			}
			privPEM, err := artifact.MarshalPrivateKeyPEM(priv)
			if err != nil {
				return err
			}
			pubPEM, err := artifact.MarshalPublicKeyPEM(pub)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out+".key", privPEM, 0o600); err != nil {
				return err
			}
			if err := os.WriteFile(out+".pub", pubPEM, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "wrote %s.key and %s.pub (key id %s)\n", out, out, artifact.KeyID(pub))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "path prefix of the key files")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing key files")
	return cmd
}

// checkOutput refuses an -o value other than "" (the default table) and
// the given formats, before a command does any work.
func checkOutput(output string, formats ...string) error {
	if output == "" || slices.Contains(formats, output) {
		return nil
	}
	want := formats[len(formats)-1]
	if len(formats) > 1 {
		want = strings.Join(formats[:len(formats)-1], ", ") + " or " + want
	}
	return fmt.Errorf("-o %q: want %s", output, want)
}

func printStructured(w io.Writer, format string, v any) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	default:
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
