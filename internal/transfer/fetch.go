package transfer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/time/rate"

	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/durable"
)

// Defaults of Options.
const (
	DefaultParallel      = 4
	DefaultMaxAttempts   = 10
	DefaultBackoffBase   = 100 * time.Millisecond
	DefaultBackoffMax    = 5 * time.Second
	DefaultCoalesceBytes = 4 << 20
	DefaultBufferSize    = 256 << 10
)

// Options configures a Fetcher. The zero value fetches with the defaults
// above and no bandwidth limit.
type Options struct {
	// Parallel is how many range requests run at once per Fetch.
	Parallel int
	// Limiter, if set, is the bandwidth of the link in bytes per second,
	// shared by every Fetch of the Fetcher and by Wait. Its burst bounds
	// the read size, so it should be at least BufferSize.
	Limiter *rate.Limiter
	// Progress, if set, is called with each count of remote bytes
	// received, wasted ones included. Calls for one Fetch never overlap.
	Progress func(remoteBytes int64)
	// Logger receives retries and corruption reports; nil discards them.
	Logger *slog.Logger
	// MaxAttempts is how many times in a row a range may fail without
	// progress before Fetch gives up. An attempt that kept some new bytes
	// starts the count again.
	MaxAttempts int
	// Backoff is the wait between attempts.
	Backoff clock.Backoff
	// CoalesceBytes caps the bytes of adjacent remote chunks fetched in
	// one request (a single larger chunk still goes alone).
	CoalesceBytes int64
	// BufferSize is the read buffer of each request, and the unit in
	// which bandwidth is taken from Limiter.
	BufferSize int
	// Clock times the backoff between attempts and the waits for
	// Limiter's bandwidth; nil means the system clock.
	Clock clock.Clock
}

// Stats says what a Fetch moved.
type Stats struct {
	// RemoteBytes counts bytes received from the source, WastedBytes
	// included.
	RemoteBytes int64
	// LocalBytes counts verified bytes copied from local chunks and from
	// identical chunks of the same file.
	LocalBytes int64
	// WastedBytes counts bytes received and discarded: corrupt chunks and
	// what came after them in the same response.
	WastedBytes int64
	// ResumedBytes counts bytes kept from an earlier, interrupted Fetch.
	ResumedBytes int64
	// SimilarBytes counts bytes of remote chunks taken from similar local
	// ranges (Plan.Similar) because their block sums matched.
	SimilarBytes int64
	// Corrupt counts chunks that failed verification and were fetched
	// again.
	Corrupt int
	// Retries counts requests repeated after a failure or a corrupt chunk.
	Retries int
	// Requests counts range requests sent.
	Requests int
}

// FetchOptions are the per-call settings of FetchWith.
type FetchOptions struct {
	// Priority orders this Fetch's use of the bandwidth against other
	// users of the Fetcher. It matters only with a Limiter.
	Priority Priority
	// Progress, if set, is called, as Options.Progress, for this Fetch
	// only.
	Progress func(remoteBytes int64)
}

// Fetcher assembles files from local chunks and a RangeSource. It is safe
// for concurrent use, but two Fetch calls must not share a destination.
type Fetcher struct {
	src  RangeSource
	opts Options
	log  *slog.Logger
	gate *gate
}

// NewFetcher returns a Fetcher reading remote chunks from src.
func NewFetcher(src RangeSource, opts Options) *Fetcher {
	if opts.Parallel <= 0 {
		opts.Parallel = DefaultParallel
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.Backoff.Base <= 0 {
		opts.Backoff.Base = DefaultBackoffBase
	}
	if opts.Backoff.Max < opts.Backoff.Base {
		opts.Backoff.Max = max(DefaultBackoffMax, opts.Backoff.Base)
	}
	if opts.CoalesceBytes <= 0 {
		opts.CoalesceBytes = DefaultCoalesceBytes
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = DefaultBufferSize
	}
	opts.Clock = clock.OrReal(opts.Clock)
	f := &Fetcher{src: src, opts: opts, log: opts.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if lim := opts.Limiter; lim != nil {
		f.gate = &gate{take: func(ctx context.Context, n int) error { return clock.WaitN(ctx, opts.Clock, lim, n) }}
	}
	return f
}

// Wait takes n bytes of the link's bandwidth at priority prio, waiting
// behind higher priorities. Other traffic on the link (reports, telemetry,
// logs) uses it to share the Fetcher's limit. Without a Limiter it returns
// at once.
func (f *Fetcher) Wait(ctx context.Context, prio Priority, n int) error {
	for n > 0 {
		k := f.readSize(n)
		if k < 1 {
			return errors.New("bandwidth limiter has a burst of 0")
		}
		if f.gate != nil {
			if err := f.gate.wait(ctx, prio, k); err != nil {
				return err
			}
		}
		n -= k
	}
	return ctx.Err()
}

// readSize is how many bytes to read next of n wanted: at most one buffer
// and at most the limiter's burst.
func (f *Fetcher) readSize(n int) int {
	n = min(n, f.opts.BufferSize)
	if lim := f.opts.Limiter; lim != nil && lim.Limit() != rate.Inf {
		n = min(n, lim.Burst())
	}
	return n
}

// Fetch assembles p.File at dst with priority prio; see FetchWith.
func (f *Fetcher) Fetch(ctx context.Context, p Plan, dst string, prio Priority) (Stats, error) {
	return f.FetchWith(ctx, p, dst, FetchOptions{Priority: prio})
}

// FetchWith assembles p.File at dst. It writes into dst+".part", recording
// verified chunks in dst+".part.state" so that a later call, in this
// process or another, resumes after re-verifying them. Local chunks are
// copied and verified, falling back to the source when a local copy no
// longer matches; remote chunks are fetched in parallel, adjacent ones
// coalesced, each verified as it completes; a cut resumes from the byte
// reached and a corrupt chunk is fetched again, with backoff between
// attempts. Once every chunk is in, the whole file is hashed, fsynced and
// renamed to dst, and dst's directory is fsynced: dst never holds anything
// but the whole, verified file. dst's directory must exist.
//
// On failure the part and state files are kept for a later resume (see
// RemovePartial), except when the file as a whole does not match its
// digest, or the source's blob is not the size the plan says (an error
// wrapping ErrSizeMismatch). Errors that retrying cannot fix are marked
// Permanent.
func (f *Fetcher) FetchWith(ctx context.Context, p Plan, dst string, o FetchOptions) (Stats, error) {
	if err := p.Validate(); err != nil {
		return Stats{}, Permanent(err)
	}
	if lim := f.opts.Limiter; lim != nil && lim.Limit() != rate.Inf && lim.Burst() < 1 {
		return Stats{}, Permanent(errors.New("bandwidth limiter has a burst of 0"))
	}
	r := &fetchRun{
		f:        f,
		plan:     p,
		prio:     o.Priority,
		progress: o.Progress,
		partPath: dst + ".part",
		log:      f.log.With("file", p.File.Path, "digest", p.File.Digest),
		done:     make([]bool, len(p.File.Chunks)),
	}
	err := r.open()
	if err == nil {
		err = r.run(ctx)
	}
	if err == nil {
		err = r.finish(dst)
	}
	r.close()
	if errors.Is(err, ErrSizeMismatch) {
		// Nothing of it can ever be used: the part file (of the size the
		// plan said, sparse) would only take disk.
		if rerr := RemovePartial(dst); rerr != nil {
			r.log.Warn("could not remove the partial transfer", "err", rerr)
		}
	}
	if err != nil {
		name := p.File.Path
		if name == "" {
			name = filepath.Base(dst)
		}
		return r.snapshot(), fmt.Errorf("fetch %s: %w", name, err)
	}
	return r.snapshot(), nil
}

// RemovePartial removes what an unfinished Fetch to dst left behind.
func RemovePartial(dst string) error {
	return errors.Join(removeIfExists(dst+".part"), removeIfExists(dst+".part.state"))
}

func removeIfExists(name string) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// fetchRun is one Fetch.
type fetchRun struct {
	f        *Fetcher
	plan     Plan
	prio     Priority
	progress func(int64)
	partPath string
	log      *slog.Logger

	part    *os.File
	state   *stateWriter
	hasher  *prefixHasher // nil until open has resumed what it could
	partial map[int]int64 // resumed chunk prefixes, read-only after open

	mu    sync.Mutex
	done  []bool
	stats Stats

	progressMu sync.Mutex
}

func (r *fetchRun) statePath() string { return r.partPath + ".state" }

// open opens the part file, resuming from the state file when it describes
// the same file, and starts the state writer.
func (r *fetchRun) open() error {
	file := r.plan.File
	st, resume := r.readState()
	part, err := os.OpenFile(r.partPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open part file: %w", err)
	}
	r.part = part
	if !resume {
		st = transferState{Done: map[int]bool{}, Partial: map[int]int64{}}
		if err := part.Truncate(0); err != nil {
			return fmt.Errorf("truncate part file: %w", err)
		}
	}
	if err := part.Truncate(file.Size); err != nil {
		return fmt.Errorf("size part file: %w", err)
	}
	// Keep only what still verifies.
	kept := transferState{Digest: file.Digest, Size: file.Size, Done: map[int]bool{}, Partial: map[int]int64{}}
	h := sha256.New()
	for i := range st.Done {
		if i >= len(file.Chunks) {
			continue
		}
		c := file.Chunks[i]
		h.Reset()
		if _, err := io.Copy(h, io.NewSectionReader(part, c.Offset, c.Length)); err == nil && digestOf(h) == c.Digest {
			kept.Done[i] = true
			r.done[i] = true
			r.stats.ResumedBytes += c.Length
		} else {
			r.log.Info("resumed chunk no longer verifies, fetching it again", "chunk", i)
		}
	}
	for i, k := range st.Partial {
		if i < len(file.Chunks) && !kept.Done[i] && k < file.Chunks[i].Length {
			kept.Partial[i] = k
		}
	}
	r.partial = kept.Partial
	if resume {
		r.log.Info("resuming transfer", "chunks", len(kept.Done), "bytes", r.stats.ResumedBytes)
	}
	// Rewrite the state compactly, atomically, then append to it.
	if err := durable.WriteFile(r.statePath(), kept.encode(), 0o644); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	sf, err := os.OpenFile(r.statePath(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open state file: %w", err)
	}
	r.state = newStateWriter(sf, r.log)
	r.hasher = startPrefixHasher(r)
	return nil
}

// readState returns the state file's content and whether it describes the
// plan's file, with a part file to go with it.
func (r *fetchRun) readState() (transferState, bool) {
	if _, err := os.Stat(r.partPath); err != nil {
		return transferState{}, false
	}
	b, err := os.ReadFile(r.statePath())
	if err != nil {
		return transferState{}, false
	}
	st, err := parseState(b)
	if err != nil {
		r.log.Warn("ignoring unreadable transfer state", "err", err)
		return transferState{}, false
	}
	if st.Digest != r.plan.File.Digest || st.Size != r.plan.File.Size {
		return transferState{}, false
	}
	return st, true
}

func (r *fetchRun) close() {
	if r.hasher != nil {
		r.hasher.stop()
		r.hasher = nil
	}
	if r.state != nil {
		r.state.close()
		r.state = nil
	}
	if r.part != nil {
		r.part.Close()
		r.part = nil
	}
}

func (r *fetchRun) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

func (r *fetchRun) isDone(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done[i]
}

// markDone records chunk i as verified in the part file.
func (r *fetchRun) markDone(i int) {
	r.mu.Lock()
	r.done[i] = true
	r.mu.Unlock()
	r.state.add(appendDone(nil, i))
	r.hasher.poke()
}

// doneFrom returns the end of the run of done chunks that starts at i.
func (r *fetchRun) doneFrom(i int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i < len(r.done) && r.done[i] {
		i++
	}
	return i
}

func (r *fetchRun) addStats(fn func(s *Stats)) {
	r.mu.Lock()
	fn(&r.stats)
	r.mu.Unlock()
}

func (r *fetchRun) reportProgress(n int64) {
	if r.f.opts.Progress == nil && r.progress == nil {
		return
	}
	r.progressMu.Lock()
	defer r.progressMu.Unlock()
	if r.f.opts.Progress != nil {
		r.f.opts.Progress(n)
	}
	if r.progress != nil {
		r.progress(n)
	}
}

// run brings every chunk into the part file. Remote chunks start crossing
// the link at once, while local chunks are copied beside them: the link is
// the scarce resource, and the local copies then cost no time of their own.
func (r *fetchRun) run(ctx context.Context) error {
	p := r.plan
	var remote, similar []int
	for _, i := range p.Remote {
		switch _, ok := p.Similar[i]; {
		case r.isDone(i):
		case ok && r.partial[i] == 0:
			similar = append(similar, i)
		default:
			remote = append(remote, i)
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	remoteDone := make(chan error, 1)
	go func() {
		err := r.fetchRemote(ctx, remote)
		if err != nil {
			cancel(err)
		}
		remoteDone <- err
	}()
	similarLeft := make(chan []int, 1)
	go func() { similarLeft <- r.fetchSimilar(ctx, similar) }()
	again, localErr := r.copyLocals(ctx)
	if localErr != nil {
		cancel(localErr)
	}
	again = append(again, <-similarLeft...)
	if err := <-remoteDone; err != nil {
		return err
	}
	if localErr != nil {
		return localErr
	}
	// A failed copy overwrote any resumed prefix of its chunk. Nothing
	// reads partial any more once the first remote pass is over.
	for _, i := range again {
		delete(r.partial, i)
	}
	for _, i := range sortedKeys(p.Copies) {
		if r.isDone(i) {
			continue
		}
		ok, err := r.copyWithin(i, p.Copies[i])
		if err != nil {
			return err
		}
		if !ok {
			delete(r.partial, i)
			again = append(again, i)
		}
	}
	slices.Sort(again)
	if err := r.fetchRemote(ctx, again); err != nil {
		return err
	}
	for i := range r.done {
		if !r.isDone(i) {
			return fmt.Errorf("chunk %d missing after transfer", i)
		}
	}
	return nil
}

// copyLocals copies every local chunk not yet done into the part file and
// returns those whose local copy failed, to be fetched instead. Once done,
// it starts writing the copies back to disk, so that the final fsync has
// only the fetched bytes left to wait for.
func (r *fetchRun) copyLocals(ctx context.Context) ([]int, error) {
	var failed []int
	for _, i := range sortedKeys(r.plan.Local) {
		if r.isDone(i) {
			continue
		}
		ok, err := r.copyLocal(i, r.plan.Local[i])
		if err != nil {
			return nil, err
		}
		if !ok {
			failed = append(failed, i)
		}
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
	}
	if len(r.plan.Local) > 0 {
		if err := r.part.Sync(); err != nil {
			return nil, fmt.Errorf("sync part file: %w", err)
		}
	}
	return failed, nil
}

// copyLocal copies chunk i from ref into the part file and verifies it. It
// reports false when the local copy is unreadable or does not match, and
// an error only when the part file cannot be written.
func (r *fetchRun) copyLocal(i int, ref ChunkRef) (bool, error) {
	src, err := os.Open(ref.Path)
	if err != nil {
		r.log.Warn("local chunk unreadable, fetching it", "chunk", i, "path", ref.Path, "err", err)
		return false, nil
	}
	defer src.Close()
	ok, err := r.copyVerified(i, io.NewSectionReader(src, ref.Offset, ref.Length))
	if err == nil && !ok {
		r.log.Warn("local chunk does not verify, fetching it", "chunk", i, "path", ref.Path, "offset", ref.Offset)
	}
	return ok, err
}

// copyWithin copies chunk j of the part file, already verified, to chunk i
// of the same content.
func (r *fetchRun) copyWithin(i, j int) (bool, error) {
	if !r.isDone(j) {
		return false, nil
	}
	cj := r.plan.File.Chunks[j]
	return r.copyVerified(i, io.NewSectionReader(r.part, cj.Offset, cj.Length))
}

// copyVerified writes chunk i from src, which should hold exactly its bytes,
// and marks it done when they verify.
func (r *fetchRun) copyVerified(i int, src io.Reader) (bool, error) {
	c := r.plan.File.Chunks[i]
	h := sha256.New()
	buf := make([]byte, min(c.Length, 1<<20))
	var n int64
	for n < c.Length {
		k, err := io.ReadFull(src, buf[:min(int64(len(buf)), c.Length-n)])
		if k > 0 {
			h.Write(buf[:k])
			if _, werr := r.part.WriteAt(buf[:k], c.Offset+n); werr != nil {
				return false, Permanent(fmt.Errorf("write part file: %w", werr))
			}
			n += int64(k)
		}
		if err != nil {
			return false, nil
		}
	}
	if digestOf(h) != c.Digest {
		return false, nil
	}
	r.markDone(i)
	r.addStats(func(s *Stats) { s.LocalBytes += c.Length })
	return true, nil
}

// span is a run of adjacent remote chunks fetched with one request; first
// bytes of its first chunk may already be in the part file.
type span struct {
	chunks []int
	first  int64
}

// spans groups remote chunks into requests of at most limit bytes, each
// chunk with its neighbours in the file. A chunk with resumed bytes starts
// a span.
func spans(chunks []int, length func(int) int64, partial map[int]int64, limit int64) []span {
	var out []span
	var cur span
	var curBytes int64
	for _, i := range chunks {
		n := length(i)
		k := partial[i]
		if len(cur.chunks) > 0 && (i != cur.chunks[len(cur.chunks)-1]+1 || k > 0 || curBytes+n > limit) {
			out = append(out, cur)
			cur, curBytes = span{}, 0
		}
		if len(cur.chunks) == 0 {
			cur.first = k
			curBytes = -k
		}
		cur.chunks = append(cur.chunks, i)
		curBytes += n
	}
	if len(cur.chunks) > 0 {
		out = append(out, cur)
	}
	return out
}

// fetchRemote fetches the given chunks (ascending) from the source.
func (r *fetchRun) fetchRemote(ctx context.Context, chunks []int) error {
	if len(chunks) == 0 {
		return nil
	}
	file := r.plan.File
	length := func(i int) int64 { return file.Chunks[i].Length }
	var total int64
	for _, i := range chunks {
		total += length(i)
	}
	par := r.f.opts.Parallel
	// Enough spans to keep every worker busy, none above the cap.
	limit := min(r.f.opts.CoalesceBytes, max(1, (total+int64(par)-1)/int64(par)))
	todo := spans(chunks, length, r.partial, limit)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan span, len(todo))
	for _, s := range todo {
		work <- s
	}
	close(work)
	var wg sync.WaitGroup
	errs := make([]error, min(par, len(todo)))
	for w := range errs {
		wg.Go(func() {
			buf := make([]byte, r.f.opts.BufferSize)
			for s := range work {
				if err := r.fetchSpan(ctx, s, buf); err != nil {
					errs[w] = err
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// corruptError reports a chunk that failed verification.
type corruptError struct {
	chunk int
	got   digest.Digest
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("chunk %d failed verification (got %s)", e.chunk, e.got)
}

// spanCursor is how far a span has come: chunk k of the span, of which got
// bytes are in the part file and in h.
type spanCursor struct {
	k   int
	got int64
	h   hash.Hash
}

// fetchSpan fetches one span, resuming after cuts and re-fetching corrupt
// chunks until it is done, the error is permanent, attempts run out or ctx
// ends.
func (r *fetchRun) fetchSpan(ctx context.Context, s span, buf []byte) error {
	file := r.plan.File
	cur := spanCursor{h: sha256.New()}
	if s.first > 0 {
		c := file.Chunks[s.chunks[0]]
		if _, err := io.Copy(cur.h, io.NewSectionReader(r.part, c.Offset, s.first)); err == nil {
			cur.got = s.first
			r.addStats(func(st *Stats) { st.ResumedBytes += s.first })
		} else {
			cur.h.Reset()
		}
	}
	last := file.Chunks[s.chunks[len(s.chunks)-1]]
	end := last.Offset + last.Length
	pos := func() int64 { return file.Chunks[s.chunks[cur.k]].Offset + cur.got }
	attempt := 0
	for {
		start := pos()
		err := r.stream(ctx, s, &cur, start, end-start, buf)
		if err == nil {
			return nil
		}
		if cur.k == len(s.chunks) {
			return nil
		}
		if ctx.Err() != nil || IsPermanent(err) {
			if cur.got > 0 {
				r.state.add(appendPartial(nil, s.chunks[cur.k], cur.got))
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("bytes %d-%d: %w", start, end-1, err)
		}
		if pos() > start {
			attempt = 1
		} else {
			attempt++
		}
		if attempt >= r.f.opts.MaxAttempts {
			if cur.got > 0 {
				r.state.add(appendPartial(nil, s.chunks[cur.k], cur.got))
			}
			return fmt.Errorf("bytes %d-%d: giving up after %d attempts without progress: %w", pos(), end-1, attempt, err)
		}
		d := r.f.opts.Backoff.Delay(attempt, rand.Float64())
		r.log.Info("range request failed, retrying", "from", pos(), "to", end-1, "attempt", attempt, "in", d, "err", err)
		r.addStats(func(st *Stats) { st.Retries++ })
		t := r.f.opts.Clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			if cur.got > 0 {
				r.state.add(appendPartial(nil, s.chunks[cur.k], cur.got))
			}
			return context.Cause(ctx)
		case <-t.C():
		}
	}
}

// stream requests n bytes at off and consumes them into the span's chunks.
// It returns nil once the span is complete.
func (r *fetchRun) stream(ctx context.Context, s span, cur *spanCursor, off, n int64, buf []byte) error {
	r.addStats(func(st *Stats) { st.Requests++ })
	file := r.plan.File
	rc, err := r.f.src.OpenRange(ctx, file.Digest, off, n)
	if err != nil {
		if se := (*BlobSizeError)(nil); errors.As(err, &se) {
			return r.sizeMismatch(se.Size)
		}
		return err
	}
	defer rc.Close()
	if bs, ok := rc.(BlobSizer); ok {
		if size := bs.BlobSize(); size >= 0 && size != file.Size {
			return r.sizeMismatch(size)
		}
	}
	for n > 0 {
		want := int64(r.f.readSize(int(min(n, int64(len(buf))))))
		if r.f.gate != nil {
			if err := r.f.gate.wait(ctx, r.prio, int(want)); err != nil {
				return err
			}
		}
		k, err := io.ReadFull(rc, buf[:want])
		if k > 0 {
			r.addStats(func(st *Stats) { st.RemoteBytes += int64(k) })
			r.reportProgress(int64(k))
			if cerr := r.consume(s, cur, buf[:k]); cerr != nil {
				return cerr
			}
			n -= int64(k)
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("response ended %d bytes short", n)
			}
			return err
		}
	}
	return nil
}

// sizeMismatch is the permanent error for a blob of size bytes at the
// source where the plan says another size.
func (r *fetchRun) sizeMismatch(size int64) error {
	f := r.plan.File
	return Permanent(fmt.Errorf("%w: blob %s is %d bytes, want %d (the size its manifest gives)", ErrSizeMismatch, f.Digest, size, f.Size))
}

// consume writes received bytes into the part file, hashing and verifying
// each chunk as it completes. On a corrupt chunk it discards that chunk and
// the rest of b, leaving the cursor at the chunk's start.
func (r *fetchRun) consume(s span, cur *spanCursor, b []byte) error {
	file := r.plan.File
	for len(b) > 0 {
		i := s.chunks[cur.k]
		c := file.Chunks[i]
		take := min(int64(len(b)), c.Length-cur.got)
		if _, err := r.part.WriteAt(b[:take], c.Offset+cur.got); err != nil {
			return Permanent(fmt.Errorf("write part file: %w", err))
		}
		cur.h.Write(b[:take])
		cur.got += take
		b = b[take:]
		if cur.got < c.Length {
			continue
		}
		got := digestOf(cur.h)
		cur.h.Reset()
		cur.got = 0
		if got != c.Digest {
			wasted := c.Length + int64(len(b))
			r.addStats(func(st *Stats) { st.Corrupt++; st.WastedBytes += wasted })
			r.log.Warn("chunk failed verification, fetching it again", "chunk", i, "offset", c.Offset, "length", c.Length, "got", got)
			return &corruptError{chunk: i, got: got}
		}
		r.markDone(i)
		cur.k++
		if cur.k == len(s.chunks) {
			return nil
		}
	}
	return nil
}

// finish checks the whole file's digest (hashed as chunks arrived), makes
// the part file durable and renames it to dst.
func (r *fetchRun) finish(dst string) error {
	file := r.plan.File
	sum, err := r.hasher.sum()
	if err != nil {
		return err
	}
	if got := digest.NewDigestFromBytes(digest.SHA256, sum); got != file.Digest {
		r.close()
		_ = RemovePartial(dst)
		return Permanent(fmt.Errorf("every chunk verified but the file's digest is %s, want %s: the chunk index does not describe this file", got, file.Digest))
	}
	if err := r.part.Sync(); err != nil {
		return fmt.Errorf("sync part file: %w", err)
	}
	if err := r.part.Close(); err != nil {
		r.part = nil
		return fmt.Errorf("close part file: %w", err)
	}
	r.part = nil
	if err := os.Rename(r.partPath, dst); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	r.state.close()
	r.state = nil
	if err := removeIfExists(r.statePath()); err != nil {
		r.log.Warn("could not remove transfer state", "err", err)
	}
	return nil
}

// stateWriter appends records to the state file from one goroutine,
// writing and fsyncing whatever has queued up as one batch.
type stateWriter struct {
	f    *os.File
	log  *slog.Logger
	recs chan []byte
	done chan struct{}
}

func newStateWriter(f *os.File, log *slog.Logger) *stateWriter {
	w := &stateWriter{f: f, log: log, recs: make(chan []byte, 64), done: make(chan struct{})}
	go w.loop()
	return w
}

func (w *stateWriter) add(rec []byte) { w.recs <- rec }

func (w *stateWriter) loop() {
	defer close(w.done)
	failed := false
	for rec := range w.recs {
		batch := rec
	drain:
		for {
			select {
			case more, ok := <-w.recs:
				if !ok {
					break drain
				}
				batch = append(batch, more...)
			default:
				break drain
			}
		}
		if failed {
			continue
		}
		if _, err := w.f.Write(batch); err == nil {
			err = w.f.Sync()
		} else {
			// The state is a hint: a transfer goes on without it.
			w.log.Warn("cannot record transfer state; a restart will fetch again", "err", err)
			failed = true
		}
	}
}

// close flushes the queued records and closes the file.
func (w *stateWriter) close() {
	close(w.recs)
	<-w.done
	w.f.Close()
}

func digestOf(h hash.Hash) digest.Digest {
	var sum [sha256.Size]byte
	return digest.NewDigestFromBytes(digest.SHA256, h.Sum(sum[:0]))
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
