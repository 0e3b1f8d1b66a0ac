package transfer

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
)

// errHashStopped ends a prefixHasher whose Fetch gave up.
var errHashStopped = errors.New("whole-file hash stopped")

// prefixHasher hashes the part file front to back as far as verified
// chunks reach, while later chunks are still on their way, so that the
// whole-file check at the end reads only what arrived last. A verified
// chunk's bytes are never written again, so what it hashes is what the
// finished file holds.
type prefixHasher struct {
	r    *fetchRun
	wake chan struct{} // a chunk was marked done
	quit chan struct{} // the Fetch is over
	out  chan hashResult
}

type hashResult struct {
	sum []byte
	err error
}

// startPrefixHasher starts hashing r's part file in the background.
func startPrefixHasher(r *fetchRun) *prefixHasher {
	ph := &prefixHasher{
		r:    r,
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		out:  make(chan hashResult, 1),
	}
	go ph.loop()
	return ph
}

// poke tells the hasher that a chunk was marked done.
func (ph *prefixHasher) poke() {
	select {
	case ph.wake <- struct{}{}:
	default:
	}
}

// sum waits until every chunk is hashed, and returns the file's digest.
// It must be called only once every chunk is done.
func (ph *prefixHasher) sum() ([]byte, error) {
	ph.poke()
	res := <-ph.out
	ph.out <- res // a later stop must not block
	return res.sum, res.err
}

// stop ends the hasher and waits for it to let go of the part file.
func (ph *prefixHasher) stop() {
	close(ph.quit)
	res := <-ph.out
	ph.out <- res
}

func (ph *prefixHasher) loop() {
	chunks := ph.r.plan.File.Chunks
	h := sha256.New()
	next := 0 // chunks before next are hashed
	for {
		end := ph.r.doneFrom(next)
		if end > next {
			if err := ph.hashRange(h, chunks[next].Offset, chunks[end-1].Offset+chunks[end-1].Length); err != nil {
				ph.out <- hashResult{err: err}
				return
			}
			next = end
		}
		if next == len(chunks) {
			ph.out <- hashResult{sum: h.Sum(nil)}
			return
		}
		if end > next {
			continue
		}
		select {
		case <-ph.wake:
		case <-ph.quit:
			ph.out <- hashResult{err: errHashStopped}
			return
		}
	}
}

// hashRange adds bytes [from, to) of the part file to h, checking for the
// end of the Fetch between reads.
func (ph *prefixHasher) hashRange(h hash.Hash, from, to int64) error {
	buf := make([]byte, min(to-from, 1<<20))
	for from < to {
		select {
		case <-ph.quit:
			return errHashStopped
		default:
		}
		k, err := ph.r.part.ReadAt(buf[:min(int64(len(buf)), to-from)], from)
		h.Write(buf[:k])
		from += int64(k)
		if err != nil && !(errors.Is(err, io.EOF) && from == to) {
			return fmt.Errorf("read part file: %w", err)
		}
	}
	return nil
}
