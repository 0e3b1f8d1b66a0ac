package agent

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"
)

// fileLocks serialises the fetches of one file: the transfer engine
// assembles a file in its cache path's ".part" file, so two syncs that need
// the same file (two deployments of one version, or two versions sharing a
// file) must not write it at the same time. The second waits for the first
// and then finds the file whole in the cache.
type fileLocks struct {
	mu   sync.Mutex
	held map[digest.Digest]chan struct{}
}

// lock takes the lock of file d, waiting while another sync holds it, and
// returns its release; it fails only when ctx ends first.
func (l *fileLocks) lock(ctx context.Context, d digest.Digest) (func(), error) {
	for {
		l.mu.Lock()
		if l.held == nil {
			l.held = map[digest.Digest]chan struct{}{}
		}
		ch, busy := l.held[d]
		if !busy {
			ch = make(chan struct{})
			l.held[d] = ch
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.held, d)
				l.mu.Unlock()
				close(ch)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
