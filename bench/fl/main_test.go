package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestSmall runs every comparison at a small size: each must print its
// table and reach the target.
func TestSmall(t *testing.T) {
	var out bytes.Buffer
	cfg := config{only: []string{"secagg", "fedbuff", "adaptive"}, target: 0.6, clients: 4, per: 200,
		sizes: []int{784, 16, 10}, secagg: []int{6}, lr: 0.05}
	if err := run(&out, cfg); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	for _, want := range []string{"secagg: one round", "vs int8", "16-bit ring (", "fedbuff against sync", "adaptive against fixed", "local steps, "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
