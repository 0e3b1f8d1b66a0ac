package store

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

func TestCredentialCache(t *testing.T) {
	h := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	// step is one call: get (want names the cluster expected, "" a miss),
	// add (with the gen the last get returned), or invalidate.
	type step struct {
		op, hash, cluster string
		want              string
	}
	tests := []struct {
		name  string
		max   int
		steps []step
		size  int
	}{
		{"read through", 4, []step{
			{op: "get", hash: "1"},
			{op: "add", hash: "1", cluster: "a"},
			{op: "get", hash: "1", want: "a"},
		}, 1},
		{"rotation forgets the old credential", 4, []step{
			{op: "get", hash: "1"},
			{op: "add", hash: "1", cluster: "a"},
			{op: "invalidate", cluster: "a"},
			{op: "get", hash: "1"},
			{op: "get", hash: "2"},
			{op: "add", hash: "2", cluster: "a"},
			{op: "get", hash: "2", want: "a"},
			{op: "get", hash: "1"},
		}, 1},
		{"invalidation leaves other clusters", 4, []step{
			{op: "get", hash: "1"},
			{op: "add", hash: "1", cluster: "a"},
			{op: "get", hash: "2"},
			{op: "add", hash: "2", cluster: "b"},
			{op: "invalidate", cluster: "a"},
			{op: "get", hash: "2", want: "b"},
		}, 1},
		{"a read from before a change is not added", 4, []step{
			{op: "get", hash: "1"}, // the reader takes gen, then reads the old credential
			{op: "invalidate", cluster: "a"},
			{op: "add", hash: "1", cluster: "a"},
			{op: "get", hash: "1"},
		}, 0},
		{"a read from before another cluster's change is not added either", 4, []step{
			{op: "get", hash: "1"},
			{op: "invalidate", cluster: "b"},
			{op: "add", hash: "1", cluster: "a"},
			{op: "get", hash: "1"},
			{op: "add", hash: "1", cluster: "a"},
			{op: "get", hash: "1", want: "a"},
		}, 1},
		{"one credential per cluster", 4, []step{
			{op: "get", hash: "1"},
			{op: "add", hash: "1", cluster: "a"},
			{op: "add", hash: "2", cluster: "a"},
			{op: "get", hash: "1"},
			{op: "get", hash: "2", want: "a"},
		}, 1},
		{"least recently used goes first", 2, []step{
			{op: "get", hash: "1"},
			{op: "add", hash: "1", cluster: "a"},
			{op: "add", hash: "2", cluster: "b"},
			{op: "get", hash: "1", want: "a"},
			{op: "add", hash: "3", cluster: "c"},
			{op: "get", hash: "2"},
			{op: "get", hash: "1", want: "a"},
			{op: "get", hash: "3", want: "c"},
		}, 2},
		{"size zero remembers nothing", 0, []step{
			{op: "get", hash: "1"},
			{op: "add", hash: "1", cluster: "a"},
			{op: "get", hash: "1"},
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCredentialCache(tt.max)
			var gen uint64
			for i, s := range tt.steps {
				where := fmt.Sprintf("step %d (%s %s)", i, s.op, s.hash)
				switch s.op {
				case "get":
					got, ok, g := c.get(h(s.hash))
					gen = g
					if ok != (s.want != "") || got != s.want {
						t.Errorf("%s = %q, %v; want %q", where, got, ok, s.want)
					}
				case "add":
					c.add(h(s.hash), s.cluster, gen)
				case "invalidate":
					c.invalidate([]string{s.cluster})
				}
			}
			if n := c.len(); n != tt.size {
				t.Errorf("%d entries, want %d", n, tt.size)
			}
		})
	}
}
