package bundle

import (
	"archive/tar"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"outpost.dev/outpost/internal/durable"
)

// PartsFile is the file name of a bundle's signed list of parts, for the
// parts named prefix.NNNN.tar.
func PartsFile(prefix string) string { return prefix + ".parts.json" }

// layoutFiles lists the files of the layout in dir in the order a tar of it
// holds them: oci-layout, index.json, then the blobs by name.
func layoutFiles(dir string) ([]string, error) {
	names := []string{ocispec.ImageLayoutFile, ocispec.ImageIndexFile}
	var blobs []string
	err := filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		blobs = append(blobs, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(blobs)
	return append(names, blobs...), nil
}

// partWriter cuts what is written to it into files of at most max bytes.
type partWriter struct {
	dir, prefix string
	max         int64
	parts       []Part
	f           *os.File
	h           hash.Hash
	n, off      int64
}

// Write writes p across as many parts as it takes.
func (w *partWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if w.f == nil {
			name := fmt.Sprintf("%s.%04d.tar", w.prefix, len(w.parts)+1)
			f, err := os.Create(filepath.Join(w.dir, name+".partial"))
			if err != nil {
				return written, err
			}
			w.f, w.h, w.n = f, sha256.New(), 0
			w.parts = append(w.parts, Part{Name: name, Offset: w.off})
		}
		k := min(int64(len(p)), w.max-w.n)
		if _, err := w.f.Write(p[:k]); err != nil {
			return written, err
		}
		w.h.Write(p[:k])
		w.n += k
		w.off += k
		written += int(k)
		p = p[k:]
		if w.n == w.max {
			if err := w.close(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// close finishes the current part: fsync, then its final name.
func (w *partWriter) close() error {
	if w.f == nil {
		return nil
	}
	pt := &w.parts[len(w.parts)-1]
	pt.Size, pt.Digest = w.n, digest.NewDigest(digest.SHA256, w.h)
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err != nil {
		return err
	}
	final := filepath.Join(w.dir, pt.Name)
	return os.Rename(final+".partial", final)
}

// WriteParts writes the layout in layoutDir as a tar stream cut into parts
// of at most max bytes, named prefix.0001.tar... in outDir, and returns
// their list, for the hub to sign (PayloadParts) and for the caller to write
// as PartsFile(prefix) beside them.
func WriteParts(ctx context.Context, layoutDir, outDir, prefix, bundleID string, max int64) (*Parts, error) {
	if max < 1024 {
		return nil, fmt.Errorf("bundle: part size %d is below 1024 bytes", max)
	}
	if !plainName(prefix) {
		return nil, fmt.Errorf("bundle: part prefix %q is not a plain file name", prefix)
	}
	files, err := layoutFiles(layoutDir)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	pw := &partWriter{dir: outDir, prefix: prefix, max: max}
	tw := tar.NewWriter(pw)
	for _, name := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := addFile(tw, layoutDir, name); err != nil {
			return nil, fmt.Errorf("bundle: tar %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("bundle: tar: %w", err)
	}
	if err := pw.close(); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if err := durable.SyncDir(outDir); err != nil {
		return nil, err
	}
	p := &Parts{Bundle: bundleID, Size: pw.off, Parts: pw.parts}
	return p, p.Validate()
}

func addFile(tw *tar.Writer, dir, name string) error {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: st.Size(), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// Stage reads the signed list of parts in partsFile, verifies it with
// trusted, and copies each part found beside it into stageRoot, verified
// against its sha256 (a part that does not match is refused: damaged, or
// of another bundle). Parts may come in any order, over several calls.
// Once every part is staged it unpacks them into a layout and returns its
// folder; until then it returns an error wrapping ErrIncomplete naming the
// parts still missing.
func Stage(ctx context.Context, partsFile, stageRoot string, trusted []ed25519.PublicKey) (string, error) {
	env, err := os.ReadFile(partsFile)
	if err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	payload, _, err := Verify(env, PayloadParts, trusted)
	if err != nil {
		return "", fmt.Errorf("bundle parts %s: %w", filepath.Base(partsFile), err)
	}
	p, err := ParseParts(payload)
	if err != nil {
		return "", err
	}
	stage := filepath.Join(stageRoot, digest.FromString(p.Bundle).Encoded()[:32])
	layout := filepath.Join(stage, "layout")
	if _, err := os.Stat(filepath.Join(layout, ocispec.ImageIndexFile)); err == nil {
		return layout, nil
	}
	src := filepath.Dir(partsFile)
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	// Every part at hand and none staged yet: unpack straight from them,
	// each checked as it is read, with no copy of the parts between.
	if allAt(src, p) && noneAt(stage, p) {
		if err := unpackFrom(ctx, src, stage, layout, p); err != nil {
			return "", err
		}
		return layout, nil
	}
	have := map[string]bool{}
	for _, pt := range p.Parts {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		dst := filepath.Join(stage, pt.Name)
		if st, err := os.Stat(dst); err == nil && st.Size() == pt.Size {
			have[pt.Name] = true
			continue
		}
		in, err := os.Open(filepath.Join(src, pt.Name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("bundle: part %s: %w", pt.Name, err)
		}
		err = stagePart(in, dst, pt)
		in.Close()
		if err != nil {
			return "", err
		}
		have[pt.Name] = true
	}
	if missing := p.Missing(have); len(missing) > 0 {
		return "", fmt.Errorf("%w: %d of %d parts staged, missing %s", ErrIncomplete, len(p.Parts)-len(missing), len(p.Parts), strings.Join(missing, ", "))
	}
	// Staged parts are checked again as they are unpacked: a part that
	// rotted on disk between two trips is refused, not unpacked, and
	// dropped so that the next trip stages it afresh.
	if err := unpackFrom(ctx, stage, stage, layout, p); err != nil {
		if errors.Is(err, ErrDigest) {
			dropDamaged(stage, p)
		}
		return "", err
	}
	return layout, nil
}

// stagePart copies one part to dst, verified.
func stagePart(in io.Reader, dst string, pt Part) error {
	f, err := os.CreateTemp(filepath.Dir(dst), ".part-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := durable.Copy(f, in, pt.Size, pt.Digest, nil); err != nil {
		f.Close()
		return fmt.Errorf("bundle: part %s refused (damaged, or a part of another bundle): %w: %v", pt.Name, ErrDigest, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(dst))
}

// allAt reports whether every part of p is in dir, with its size.
func allAt(dir string, p *Parts) bool {
	for _, pt := range p.Parts {
		st, err := os.Stat(filepath.Join(dir, pt.Name))
		if err != nil || st.Size() != pt.Size {
			return false
		}
	}
	return true
}

// noneAt reports whether no part of p is in dir.
func noneAt(dir string, p *Parts) bool {
	for _, pt := range p.Parts {
		if _, err := os.Stat(filepath.Join(dir, pt.Name)); err == nil {
			return false
		}
	}
	return true
}

// checkedPart reads one part, and at its end checks its size and sha256.
type checkedPart struct {
	r  io.Reader
	h  hash.Hash
	n  int64
	pt Part
}

// Read reads the part, failing at its end if it is not the listed one.
func (c *checkedPart) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.h.Write(b[:n])
	c.n += int64(n)
	if err == io.EOF && (c.n != c.pt.Size || digest.NewDigest(digest.SHA256, c.h) != c.pt.Digest) {
		return n, fmt.Errorf("bundle: part %s refused (damaged, or a part of another bundle): %w", c.pt.Name, ErrDigest)
	}
	return n, err
}

// unpackFrom extracts the parts of p in src into layout, while another
// goroutine checks each part's digest: a part that does not match fails
// the whole, and no layout appears. The parts' sha256, signed in the parts
// list, cover every byte of the tar stream, so the blobs in it need no
// hash of their own: one hash pass, beside the writing, which copies each
// blob's bytes from the parts inside the kernel (copy_file_range) where
// the file system can.
func unpackFrom(ctx context.Context, src, stage, layout string, p *Parts) error {
	tmp := layout + ".partial"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	checked := make(chan error, 1)
	go func() { checked <- checkParts(src, p) }()
	r := &partsReader{}
	defer r.close()
	for _, pt := range p.Parts {
		f, err := os.Open(filepath.Join(src, pt.Name))
		if err != nil {
			<-checked
			return fmt.Errorf("bundle: %w", err)
		}
		r.add(f, pt.Size)
	}
	err := Untar(ctx, r, tmp)
	// A damaged part may break the tar before its own end: name it.
	if perr := <-checked; perr != nil {
		err = perr
	}
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	return finishLayout(tmp, layout, stage)
}

// partsReader reads a bundle's parts as the one tar stream they split, and
// seeks in it, so that Untar can copy an entry's data straight from the
// parts and the tar reader skips over it.
type partsReader struct {
	files []*os.File
	ends  []int64 // each part's end in the stream
	off   int64
}

func (r *partsReader) add(f *os.File, size int64) {
	var start int64
	if n := len(r.ends); n > 0 {
		start = r.ends[n-1]
	}
	r.files = append(r.files, f)
	r.ends = append(r.ends, start+size)
}

func (r *partsReader) close() {
	for _, f := range r.files {
		f.Close()
	}
}

func (r *partsReader) size() int64 {
	if len(r.ends) == 0 {
		return 0
	}
	return r.ends[len(r.ends)-1]
}

// part returns the index of the part holding stream offset off, and the
// offset of that part's start.
func (r *partsReader) part(off int64) (int, int64) {
	i, _ := slices.BinarySearch(r.ends, off+1)
	if i == 0 {
		return 0, 0
	}
	return i, r.ends[i-1]
}

// Read reads the stream at its offset, by pread, leaving the files' own
// offsets to copyRange.
func (r *partsReader) Read(b []byte) (int, error) {
	if r.off >= r.size() {
		return 0, io.EOF
	}
	i, start := r.part(r.off)
	b = b[:min(int64(len(b)), r.ends[i]-r.off)]
	n, err := r.files[i].ReadAt(b, r.off-start)
	r.off += int64(n)
	if err == io.EOF {
		if n < len(b) {
			return n, io.ErrUnexpectedEOF // a part shorter than listed
		}
		err = nil
	}
	return n, err
}

// Seek moves the stream's offset.
func (r *partsReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += r.off
	case io.SeekEnd:
		off += r.size()
	}
	if off < 0 {
		return 0, errors.New("bundle: seek before the start of the parts")
	}
	r.off = off
	return off, nil
}

// copyRange appends the stream's n bytes from offset off to w, part by
// part, copied inside the kernel where the file system can.
func (r *partsReader) copyRange(w *durable.Writer, off, n int64) error {
	if off < 0 || n < 0 || off+n > r.size() {
		return fmt.Errorf("%w: tar entry past the end of the parts", ErrMalformed)
	}
	for n > 0 {
		i, start := r.part(off)
		m := min(n, r.ends[i]-off)
		if err := w.CopyFrom(r.files[i], off-start, m); err != nil {
			return err
		}
		off += m
		n -= m
	}
	return nil
}

// finishLayout gives the unpacked layout tmp its name, replacing what a
// killed run may have left there (a layout without its index.json, which
// Stage never takes for whole).
func finishLayout(tmp, layout, stage string) error {
	if err := syncTree(tmp); err != nil {
		return err
	}
	if err := os.RemoveAll(layout); err != nil {
		return err
	}
	if err := os.Rename(tmp, layout); err != nil {
		return err
	}
	return durable.SyncDir(stage)
}

// dropDamaged removes from dir each part of p that does not match its
// size and sha256.
func dropDamaged(dir string, p *Parts) {
	for _, pt := range p.Parts {
		one := &Parts{Bundle: p.Bundle, Parts: []Part{pt}}
		if err := checkParts(dir, one); err != nil {
			os.Remove(filepath.Join(dir, pt.Name))
		}
	}
}

// checkParts returns the errors of the parts of p in dir whose size or
// sha256 does not match, in the parts' order. Parts are hashed on every
// core at once: each part is its own stream.
func checkParts(dir string, p *Parts) error {
	errs := make([]error, len(p.Parts))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(p.Parts)) {
		wg.Go(func() {
			for i := range next {
				errs[i] = checkPart(dir, p.Parts[i])
			}
		})
	}
	for i := range p.Parts {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(slices.DeleteFunc(errs, func(err error) bool { return err == nil })...)
}

// checkPart checks one part's size and sha256.
func checkPart(dir string, pt Part) error {
	f, err := os.Open(filepath.Join(dir, pt.Name))
	if err != nil {
		return fmt.Errorf("%w: part %s: %v", ErrIncomplete, pt.Name, err)
	}
	defer f.Close()
	c := &checkedPart{r: io.LimitReader(f, pt.Size+1), h: sha256.New(), pt: pt}
	_, err = io.Copy(io.Discard, c)
	return err
}

// Untar extracts a bundle's tar stream into dir, refusing any entry that
// is not a regular file of an OCI image layout (oci-layout, index.json,
// blobs/sha256/HEX). It does not check the blobs against their names: the
// caller checks the stream (Stage, against the parts' signed sha256) and
// keeps dir out of use until it did.
func Untar(ctx context.Context, r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: tar: %w", ErrMalformed, err)
		}
		if err := LayoutPath(hdr.Name); err != nil || hdr.Typeflag != tar.TypeReg || hdr.Size < 0 {
			return fmt.Errorf("%w: tar entry %q is not a file of an OCI image layout", ErrMalformed, hdr.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("%w: tar entry %q: %v", ErrMalformed, hdr.Name, err)
		}
		// Written as it comes; the caller checks the stream and fsyncs
		// the tree.
		if pr, ok := r.(*partsReader); ok {
			err = pr.copyRange(durable.NewRawWriter(f), pr.off, hdr.Size)
		} else {
			_, err = io.CopyBuffer(durable.NewRawWriter(f), tr, buf)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("bundle: unpack %s: %w", hdr.Name, err)
		}
	}
}

// LayoutPath checks that name is the path of a file of an OCI image
// layout a bundle may hold.
func LayoutPath(name string) error {
	switch name {
	case ocispec.ImageLayoutFile, ocispec.ImageIndexFile:
		return nil
	}
	dir, file := path.Split(name)
	if dir != "blobs/sha256/" || len(file) != 64 {
		return fmt.Errorf("%w: %q", ErrMalformed, name)
	}
	if err := digest.Digest("sha256:" + file).Validate(); err != nil {
		return fmt.Errorf("%w: %q", ErrMalformed, name)
	}
	return nil
}
