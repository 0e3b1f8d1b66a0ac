package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"outpost.dev/outpost/internal/durable"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// Model is a pulled model version.
type Model struct {
	Name       string
	Version    string
	Descriptor ocispec.Descriptor // the model manifest
	Manifest   *ocispec.Manifest
	Files      []File
}

// PullOptions tune Pull.
type PullOptions struct {
	// Progress, if set, is called as file bytes are written.
	Progress func(done, total int64)
	// Paths, if set, pulls only the files at these paths (slash-separated,
	// as the model lists them); a path the model lacks is an error.
	Paths []string
}

// Pull resolves ref (a tag or digest) in src, the model's repository, and
// writes the model's files under dir, creating it if needed. Every layer is
// streamed to a staging file inside dir, checked against its size and sha256
// digest and fsynced; only when all files are verified are they renamed into
// place. File paths come from the layer annotations and must be safe relative
// paths (see ValidatePath); resolution never leaves dir. On failure nothing
// new is left in dir (a file Pull replaced before the failure stays replaced).
func Pull(ctx context.Context, src oras.ReadOnlyTarget, ref string, dir string, opts PullOptions) (*Model, error) {
	desc, m, files, err := resolveModel(ctx, src, ref)
	if err != nil {
		return nil, err
	}
	layers := m.Layers
	if opts.Paths != nil {
		if layers, files, err = selectFiles(m.Layers, files, opts.Paths); err != nil {
			return nil, err
		}
	}
	if err := writeFiles(ctx, src, layers, files, dir, opts.Progress); err != nil {
		return nil, err
	}
	return &Model{
		Name:       m.Annotations[AnnotationName],
		Version:    m.Annotations[AnnotationVersion],
		Descriptor: desc,
		Manifest:   m,
		Files:      files,
	}, nil
}

// selectFiles keeps the layers and files at paths, in the model's order.
func selectFiles(layers []ocispec.Descriptor, files []File, paths []string) ([]ocispec.Descriptor, []File, error) {
	want := make(map[string]bool, len(paths))
	for _, p := range paths {
		want[p] = true
	}
	var ls []ocispec.Descriptor
	var fs []File
	for i, f := range files {
		if want[f.Path] {
			ls, fs = append(ls, layers[i]), append(fs, f)
			delete(want, f.Path)
		}
	}
	for _, p := range paths {
		if want[p] {
			return nil, nil, fmt.Errorf("the model has no file %q", p)
		}
	}
	return ls, fs, nil
}

// writeFiles stages, verifies and then commits every file into dir.
func writeFiles(ctx context.Context, src oras.ReadOnlyTarget, layers []ocispec.Descriptor, files []File, dir string, progress func(done, total int64)) (err error) {
	if _, statErr := os.Stat(dir); errors.Is(statErr, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		defer func() {
			if err != nil {
				_ = os.Remove(dir) // only if still empty
			}
		}()
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	staging, err := os.MkdirTemp(dir, ".outpost-pull-")
	if err != nil {
		return err
	}
	stagingName := filepath.Base(staging)
	defer func() {
		if rmErr := os.RemoveAll(staging); rmErr != nil && err == nil {
			err = rmErr
		}
	}()

	var done int64
	total := totalSize(files)
	report := func(n int64) {
		done += n
		if progress != nil {
			progress(done, total)
		}
	}
	report(0)
	for i, f := range files {
		if err := fetchToFile(ctx, src, layers[i], f, filepath.Join(staging, strconv.Itoa(i)), report); err != nil {
			return fmt.Errorf("pull %s: %w", f.Path, err)
		}
	}

	// Commit: create parent folders and rename; undo on failure.
	var created []string // folders and files created, in order
	defer func() {
		if err != nil {
			for i := len(created) - 1; i >= 0; i-- {
				_ = root.Remove(created[i])
			}
		}
	}()
	for i, f := range files {
		var parents []string
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for j := len(parents) - 1; j >= 0; j-- {
			err := root.Mkdir(parents[j], 0o755)
			switch {
			case err == nil:
				created = append(created, parents[j])
			case errors.Is(err, os.ErrExist):
				fi, statErr := root.Lstat(parents[j])
				if statErr != nil || !fi.IsDir() {
					return fmt.Errorf("pull %s: %s exists and is not a folder", f.Path, parents[j])
				}
			default:
				return fmt.Errorf("pull %s: %w", f.Path, err)
			}
		}
		if fi, statErr := root.Lstat(f.Path); statErr == nil && fi.IsDir() {
			return fmt.Errorf("pull %s: a folder is in the way", f.Path)
		}
		if err := root.Rename(path.Join(stagingName, strconv.Itoa(i)), f.Path); err != nil {
			return fmt.Errorf("pull %s: %w", f.Path, err)
		}
		created = append(created, f.Path)
	}
	syncDirs(dir, files)
	return nil
}

// fetchToFile streams one layer into name, verifying size and digest, and
// fsyncs it.
func fetchToFile(ctx context.Context, src oras.ReadOnlyTarget, layer ocispec.Descriptor, f File, name string, report func(int64)) error {
	rc, err := src.Fetch(ctx, layer)
	if err != nil {
		return err
	}
	defer rc.Close()
	out, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := durable.Copy(out, &progressReader{ctx: ctx, r: rc, report: report}, f.Size, f.Digest, nil); err != nil {
		return err
	}
	return out.Close()
}

// progressReader reports bytes read and stops when ctx is done.
type progressReader struct {
	ctx    context.Context
	r      io.Reader
	report func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.r.Read(b)
	if n > 0 {
		p.report(int64(n))
	}
	return n, err
}

// syncDirs fsyncs dir and the folders holding files, so the renames are
// durable. Errors are ignored: some file systems cannot sync folders.
func syncDirs(dir string, files []File) {
	seen := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.Path); ; d = path.Dir(d) {
			if !seen[d] {
				seen[d] = true
				_ = durable.SyncDir(filepath.Join(dir, filepath.FromSlash(d)))
			}
			if d == "." {
				break
			}
		}
	}
}
