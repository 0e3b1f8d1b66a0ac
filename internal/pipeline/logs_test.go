package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/clock"
)

// A step's log keeps its newest bytes, whole lines, each timestamped.
func TestStepLogIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "step.log")
	l, err := openStepLog(path, 4096, clock.NewFake(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		fmt.Fprintf(l, "line %d\n", i)
	}
	l.Write([]byte("no newline at the end"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if len(b) > 4096+1024 {
		t.Errorf("log of %d bytes, limit 4096", len(b))
	}
	if !strings.HasPrefix(s, "[older lines dropped") || !strings.Contains(s, "2031-05-06T07:08:09.000Z  line 999\n") ||
		!strings.HasSuffix(s, "2031-05-06T07:08:09.000Z  no newline at the end\n") || strings.Contains(s, "line 10\n") {
		t.Errorf("log:\n%s", s)
	}
	tail, err := tailFile(path, 100)
	if err != nil || strings.Count(tail, "\n") < 2 || !strings.HasPrefix(tail, "2031-") {
		t.Errorf("tail %q, %v", tail, err)
	}
}
