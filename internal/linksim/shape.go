package linksim

import (
	"sync"
	"time"
)

// pacer is a rate limit shared by every connection in one direction of a
// link. It tracks the time at which the link is next free: each chunk
// reserves its transmission time after whatever is already reserved, so
// the rate holds across connections and chunks of any size.
type pacer struct {
	mu   sync.Mutex
	rate int64 // bytes per second; 0 = unlimited
	next time.Time
}

// setRate changes the rate. Waits already handed out are kept; new
// reservations start afresh at the new rate rather than queueing behind
// bytes booked at the old one.
func (p *pacer) setRate(bytesPerSec int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	bytesPerSec = max(bytesPerSec, 0)
	if bytesPerSec != p.rate {
		p.rate = bytesPerSec
		p.next = time.Time{}
	}
}

// chunkSize returns how many bytes to read at once, at most buf: about a
// sixteenth of a second's worth when limited, so that slow links stay
// smooth and a rate change takes effect quickly.
func (p *pacer) chunkSize(buf int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate == 0 {
		return buf
	}
	return int(min(max(p.rate/16, 256), int64(buf)))
}

// slack is how much idle time a pacer credits: a reader that comes back
// within it (a scheduling delay, a timer firing late, the time spent in
// Read) may send what the link could have sent meanwhile, so that such
// gaps do not lower the rate. Longer idle earns no more credit than this,
// so bursts stay under a sixteenth of a second's worth of bytes.
const slack = time.Second / 16

// reserve books n bytes at time now and returns how long the caller must
// wait until they have been transmitted.
func (p *pacer) reserve(n int, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate == 0 {
		return 0
	}
	switch floor := now.Add(-slack); {
	case p.next.IsZero():
		p.next = now // a fresh start has nothing to credit
	case p.next.Before(floor):
		p.next = floor
	}
	p.next = p.next.Add(time.Duration(int64(n) * int64(time.Second) / p.rate))
	return max(p.next.Sub(now), 0)
}

// corrupter flips one bit in every every-th byte of a stream.
type corrupter struct {
	every int64 // 0 = off
	seen  int64 // bytes of the stream seen so far
}

// apply corrupts b, the next bytes of the stream, in place and returns
// how many bytes it changed.
func (c *corrupter) apply(b []byte) int64 {
	if c.every <= 0 {
		return 0
	}
	var flipped int64
	first := c.every - 1 - c.seen%c.every // index in b of the next byte to corrupt
	for i := first; i < int64(len(b)); i += c.every {
		pos := (c.seen + i) / c.every // which corrupted byte this is, from 0
		b[i] ^= 1 << (pos % 8)
		flipped++
	}
	c.seen += int64(len(b))
	return flipped
}

// cutter counts down the bytes left before a one-shot cut.
type cutter struct {
	left int64 // < 0 = disarmed
}

// take consumes up to n bytes and returns how many may pass and whether
// the cut fires after them (which disarms it).
func (c *cutter) take(n int) (keep int, cut bool) {
	if c.left < 0 {
		return n, false
	}
	keep = int(min(int64(n), c.left))
	c.left -= int64(keep)
	if c.left == 0 {
		c.left = -1
		return keep, true
	}
	return keep, false
}
