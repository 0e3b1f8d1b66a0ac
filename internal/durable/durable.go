// Package durable writes files that survive a crash whole or not at all:
// bytes go to a temporary file that is verified and fsynced before it is
// renamed into place. While writing, it starts the kernel's writeback of
// what is already written, so the final fsync has little left to do and a
// large download costs about what the network and the disk cost, not both
// one after the other.
package durable

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// writebackEvery is how many bytes are written between two requests to start writeback.
const writebackEvery = 16 << 20

// bufSize is the copy buffer: large reads and writes keep system calls few.
const bufSize = 1 << 20

// Writer writes to a file, hashes what it writes, and starts writeback of
// the written bytes every few megabytes.
type Writer struct {
	f       *os.File
	h       hash.Hash
	n       int64
	flushed int64
}

// NewWriter returns a Writer appending to f, which should be empty.
func NewWriter(f *os.File) *Writer {
	return &Writer{f: f, h: sha256.New()}
}

// NewRawWriter returns a Writer appending to f that does not hash what it
// writes (its Digest must not be called): for callers that check the bytes
// another way.
func NewRawWriter(f *os.File) *Writer {
	return &Writer{f: f}
}

// Write writes b to the file and the hash.
func (w *Writer) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	if w.h != nil {
		w.h.Write(b[:n])
	}
	w.n += int64(n)
	if w.n-w.flushed >= writebackEvery {
		startWriteback(w.f, w.flushed, w.n-w.flushed)
		w.flushed = w.n
	}
	return n, err
}

// CopyFrom appends the n bytes of src from its offset off, inside the
// kernel where the file systems allow it (copy_file_range), starting
// writeback as Write does. It moves src's own offset. A raw Writer's only:
// the bytes do not pass through the hash.
func (w *Writer) CopyFrom(src *os.File, off, n int64) error {
	if w.h != nil {
		return errors.New("durable: CopyFrom on a Writer that hashes")
	}
	if _, err := src.Seek(off, io.SeekStart); err != nil {
		return err
	}
	for n > 0 {
		m := min(n, writebackEvery-(w.n-w.flushed))
		got, err := w.f.ReadFrom(io.LimitReader(src, m))
		w.n += got
		if err != nil {
			return err
		}
		if got != m {
			return fmt.Errorf("durable: %s: %w", src.Name(), io.ErrUnexpectedEOF)
		}
		n -= m
		if w.n-w.flushed >= writebackEvery {
			startWriteback(w.f, w.flushed, w.n-w.flushed)
			w.flushed = w.n
		}
	}
	return nil
}

// Size is the number of bytes written.
func (w *Writer) Size() int64 { return w.n }

// Digest is the sha256 digest of the bytes written.
func (w *Writer) Digest() digest.Digest { return digest.NewDigest(digest.SHA256, w.h) }

// Sync waits until every written byte is on stable storage.
func (w *Writer) Sync() error { return w.f.Sync() }

// ErrMismatch is what Copy's error wraps when the bytes are not the ones
// wanted (their size or digest).
var ErrMismatch = errors.New("content mismatch")

// Copy streams src into f through a Writer, checks that exactly size bytes
// came and that they match want, and fsyncs f. report, if set, is called
// with each count of bytes written. The bytes are hashed beside the writing
// (another goroutine, one buffer behind), so a verified copy costs about
// what the copy costs.
//
// When src is a file, the bytes move inside the kernel (copy_file_range)
// and the hasher reads them back from f, a chunk behind: what is verified
// is what f holds, and the copy and the hash each take one core.
func Copy(f *os.File, src io.Reader, size int64, want digest.Digest, report func(int64)) error {
	if s, ok := src.(*os.File); ok {
		if off, err := s.Seek(0, io.SeekCurrent); err == nil {
			return copyFile(f, s, off, size, want, report)
		}
	}
	h := sha256.New()
	w := NewRawWriter(f) // the hasher below hashes
	toHash, hashed := make(chan []byte), make(chan struct{})
	go func() {
		for b := range toHash {
			h.Write(b)
			hashed <- struct{}{}
		}
	}()
	inflight := false
	defer func() {
		if inflight {
			<-hashed
		}
		close(toHash)
	}()
	bufs := [2][]byte{make([]byte, bufSize), make([]byte, bufSize)}
	lim := io.LimitReader(src, size+1)
	for i := 0; ; i ^= 1 {
		n, err := io.ReadFull(lim, bufs[i])
		if n > 0 {
			if inflight {
				<-hashed // done with the other buffer
			}
			toHash <- bufs[i][:n]
			inflight = true
			if _, werr := w.Write(bufs[i][:n]); werr != nil {
				return werr
			}
			if report != nil {
				report(int64(n))
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if inflight {
		<-hashed
		inflight = false
	}
	if w.Size() != size {
		return fmt.Errorf("%w: size mismatch: got %d bytes, want %d", ErrMismatch, w.Size(), size)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != want {
		return fmt.Errorf("%w: digest mismatch: got %s, want %s", ErrMismatch, got, want)
	}
	return w.Sync()
}

// copyChunk is how much copyFile copies before handing the range to the hasher.
const copyChunk = 8 << 20

// copyFile is Copy from the file src, starting at its offset off.
func copyFile(f, src *os.File, off, size int64, want digest.Digest, report func(int64)) error {
	base, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	w := NewRawWriter(f) // the hasher below hashes
	h := sha256.New()
	ranges := make(chan [2]int64, 1) // offset and length in f
	hashed := make(chan error, 1)
	go func() {
		buf := make([]byte, bufSize)
		var err error
		for r := range ranges {
			if err == nil {
				_, err = io.CopyBuffer(h, io.NewSectionReader(f, r[0], r[1]), buf)
			}
		}
		hashed <- err
	}()
	for done := int64(0); done < size && err == nil; {
		m := min(size-done, copyChunk)
		if err = w.CopyFrom(src, off+done, m); err == nil {
			ranges <- [2]int64{base + done, m}
			done += m
			if report != nil {
				report(m)
			}
		}
	}
	close(ranges)
	herr := <-hashed
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: size mismatch: got %d bytes, want %d", ErrMismatch, w.Size(), size)
	}
	if err != nil {
		return err
	}
	if herr != nil {
		return fmt.Errorf("read back: %w", herr)
	}
	if n, _ := src.ReadAt(make([]byte, 1), off+size); n > 0 {
		return fmt.Errorf("%w: size mismatch: more than %d bytes", ErrMismatch, size)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != want {
		return fmt.Errorf("%w: digest mismatch: got %s, want %s", ErrMismatch, got, want)
	}
	return w.Sync()
}

// WriteFile writes b to path whole or not at all: into a temporary file
// beside it with permissions perm, fsynced, renamed over path, and then the
// folder fsynced so that the rename survives a crash too.
func WriteFile(path string, b []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a folder, making the renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync folder: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return nil
}
