package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/clock"
)

// trustReloadInterval is how often the hub reads its trusted keys again.
const trustReloadInterval = 2 * time.Second

// trustSource names the hub's trusted signing keys: the *.pub files of a
// folder, read again while the hub runs, and files named on the command line.
type trustSource struct {
	dir   string
	files []string
}

// load reads and parses every key. A file that is not a public key is an
// error naming it.
func (t trustSource) load() ([]ed25519.PublicKey, error) {
	matches, err := filepath.Glob(filepath.Join(t.dir, "*.pub"))
	if err != nil {
		return nil, err
	}
	var keys []ed25519.PublicKey
	for _, f := range append(matches, t.files...) {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("trusted key: %w", err)
		}
		k, err := artifact.ParsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("trusted key %s: %w", f, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// sameKeys reports whether a and b hold the same keys in the same order.
func sameKeys(a, b []ed25519.PublicKey) bool {
	return slices.EqualFunc(a, b, func(x, y ed25519.PublicKey) bool { return bytes.Equal(x, y) })
}

// watch reads the keys every interval until ctx ends and calls apply with
// them whenever they differ from the last keys applied, starting from
// current. A folder that cannot be read, or holds a file that is not a key,
// is logged once per distinct error and changes nothing: the keys last read
// stay trusted.
func (t trustSource) watch(ctx context.Context, log *slog.Logger, clk clock.Clock, every time.Duration,
	current []ed25519.PublicKey, apply func(context.Context, []ed25519.PublicKey)) {
	tick := clk.NewTicker(every)
	defer tick.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C():
		}
		keys, err := t.load()
		if err != nil {
			if err.Error() != lastErr {
				log.Warn("trusted keys not reloaded; the keys read before stay trusted", "dir", t.dir, "err", err)
				lastErr = err.Error()
			}
			continue
		}
		lastErr = ""
		if sameKeys(keys, current) {
			continue
		}
		log.Info("trusted keys changed", "dir", t.dir, "before", len(current), "now", len(keys))
		current = keys
		apply(ctx, keys)
	}
}
