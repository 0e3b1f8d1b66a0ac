package pipeline

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/durable"
)

// DefaultLogLimit is how much of each step's log is kept: the newest bytes.
const DefaultLogLimit = 1 << 20

// maxLine bounds one line of a command's output; longer lines are cut.
const maxLine = 16 << 10

// stepLog appends timestamped lines to a step's log file, all attempts in
// one file. When the file grows past a quarter above its limit, it is
// rewritten to its newest limit bytes (whole lines), so it never holds
// more than 1.25 times the limit. It is safe for concurrent use.
type stepLog struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	size    int64
	limit   int64
	clock   clock.Clock
	partial []byte // an unfinished line of Write
}

// openStepLog opens (creating) the log at path.
func openStepLog(path string, limit int64, c clock.Clock) (*stepLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if limit <= 0 {
		limit = DefaultLogLimit
	}
	return &stepLog{path: path, f: f, size: fi.Size(), limit: limit, clock: c}, nil
}

// Printf writes one line.
func (l *stepLog) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.line([]byte(fmt.Sprintf(format, args...)))
}

// Write writes command output: each complete line gets a timestamp.
func (l *stepLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p...)
			if len(l.partial) >= maxLine {
				l.line(l.partial)
				l.partial = l.partial[:0]
			}
			break
		}
		if len(l.partial) > 0 {
			l.line(append(l.partial, p[:i]...))
			l.partial = l.partial[:0]
		} else {
			l.line(p[:i])
		}
		p = p[i+1:]
	}
	return n, nil
}

// line writes one timestamped line; l.mu held. Write errors are dropped:
// a full disk must not fail the step whose log it is.
func (l *stepLog) line(b []byte) {
	if len(b) > maxLine {
		b = append(b[:maxLine:maxLine], " [line cut]"...)
	}
	ts := l.clock.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	buf := make([]byte, 0, len(ts)+2+len(b)+1)
	buf = append(append(append(append(buf, ts...), ' ', ' '), b...), '\n')
	n, _ := l.f.Write(buf)
	l.size += int64(n)
	if l.size > l.limit+l.limit/4 {
		l.trim()
	}
}

// trim rewrites the log to its newest limit bytes, from a line start; l.mu held.
func (l *stepLog) trim() {
	b, err := os.ReadFile(l.path)
	if err != nil || int64(len(b)) <= l.limit {
		return
	}
	b = b[int64(len(b))-l.limit:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	b = append([]byte("[older lines dropped: the log keeps its newest bytes]\n"), b...)
	if err := durable.WriteFile(l.path, b, 0o644); err != nil {
		return
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	l.f.Close()
	l.f, l.size = f, int64(len(b))
}

// Close writes an unfinished line and closes the file.
func (l *stepLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.line(l.partial)
		l.partial = nil
	}
	return l.f.Close()
}

// tailFile returns about the last n bytes of the file at path, from a line
// start.
func tailFile(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(fi.Size()-n, 0)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, n))
	if err != nil {
		return "", err
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b), nil
}
