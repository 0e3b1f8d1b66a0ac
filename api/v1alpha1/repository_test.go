package v1alpha1

import (
	"strings"
	"testing"
)

func TestModelRepository(t *testing.T) {
	tests := []struct {
		name, repo, wantErr string
		edge                bool
	}{
		{name: "fmnist", repo: "models/fmnist"},
		{name: "org/detector", repo: "models/org/detector"},
		{name: "edge", repo: "models/edge"},
		{name: "edges/x", repo: "models/edges/x"},
		{name: "edge/ship-1/fmnist", repo: "edge/ship-1/fmnist", edge: true},
		{name: "edge/ship-1.fleet/org/fmnist", repo: "edge/ship-1.fleet/org/fmnist", edge: true},
		{name: "edge/ship-1", wantErr: "edge/CLUSTER/NAME"},
		{name: "edge//m", wantErr: "edge/CLUSTER/NAME"},
		{name: "edge/ship-1/", wantErr: "edge/CLUSTER/NAME"},
		{name: "edge/Ship/m", wantErr: "not a cluster name"},
		{name: "edge/-x/m", wantErr: "not a cluster name"},
		{name: "edge/s/M", wantErr: "lowercase"},
		{name: "edge/s/../m", wantErr: "lowercase"},
		{name: "", wantErr: "lowercase"},
		{name: "Bad", wantErr: "lowercase"},
		{name: "a//b", wantErr: "lowercase"},
		{name: strings.Repeat("a", 201), wantErr: "longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, err := ModelRepository(tt.name)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ModelRepository(%q) = %q, %v; want an error saying %q", tt.name, repo, err, tt.wantErr)
				}
				return
			}
			if err != nil || repo != tt.repo {
				t.Fatalf("ModelRepository(%q) = %q, %v; want %q", tt.name, repo, err, tt.repo)
			}
			m, _ := ParseModelName(tt.name)
			if m.Edge() != tt.edge || m.String() != tt.name {
				t.Errorf("ParseModelName(%q) = %+v (edge %v, %q)", tt.name, m, m.Edge(), m.String())
			}
			back, ok := ModelNameOfRepository(repo)
			if !ok || back != m {
				t.Errorf("ModelNameOfRepository(%q) = %+v, %v; want %+v", repo, back, ok, m)
			}
		})
	}
	for _, repo := range []string{"fl/global", "models/edge/c/m", "edge/c", "models/", "chunks"} {
		if m, ok := ModelNameOfRepository(repo); ok {
			t.Errorf("ModelNameOfRepository(%q) = %+v, want none", repo, m)
		}
	}
	if got := EdgeRepositories("ship-1"); got != "edge/ship-1/" {
		t.Errorf("EdgeRepositories = %q", got)
	}
}

func FuzzParseModelName(f *testing.F) {
	for _, s := range []string{"fmnist", "edge/c/m", "edge/c", "a/b/c", "edge/c/m/n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseModelName(s)
		if err != nil {
			return
		}
		if m.String() != s {
			t.Fatalf("ParseModelName(%q).String() = %q", s, m.String())
		}
		back, ok := ModelNameOfRepository(m.Repository())
		if !ok || back != m {
			t.Fatalf("repository %q of %q reads back as %+v, %v", m.Repository(), s, back, ok)
		}
		if strings.Contains(m.Repository(), "..") || strings.Contains(m.Repository(), "//") {
			t.Fatalf("repository %q of %q", m.Repository(), s)
		}
	})
}
