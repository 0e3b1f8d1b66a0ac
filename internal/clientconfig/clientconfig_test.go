package clientconfig

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/pki"
)

func TestSaveLoadResolve(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "config.yaml")
	ca, err := pki.NewCA("ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("missing file: %v", err)
	}
	c.SetContext(Context{Name: "a", Hub: "https://127.0.0.1:8443", Token: "ta",
		CertificateAuthorityData: base64.StdEncoding.EncodeToString(ca.CertPEM)})
	c.SetContext(Context{Name: "b", Hub: "https://10.0.0.1:8443", Token: "tb"})
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	c, err = Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		o         Overrides
		wantHost  string
		wantToken string
		wantCA    bool
		wantErr   string
	}{
		{"current context", Overrides{}, "10.0.0.1:8443", "tb", false, ""},
		{"named context", Overrides{Context: "a"}, "127.0.0.1:8443", "ta", true, ""},
		{"hub flag borrows matching context", Overrides{Hub: "https://127.0.0.1:8443/"}, "127.0.0.1:8443", "ta", true, ""},
		{"token flag wins", Overrides{Context: "a", Token: "x"}, "127.0.0.1:8443", "x", true, ""},
		{"unknown hub has no token", Overrides{Hub: "https://h:1"}, "h:1", "", false, ""},
		{"unknown context", Overrides{Context: "zz"}, "", "", false, `no context "zz"`},
		{"bad hub", Overrides{Hub: "ftp://x"}, "", "", false, "want https://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := c.Resolve(tt.o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tg.Host() != tt.wantHost || tg.Token != tt.wantToken || (tg.TLS.RootCAs != nil) != tt.wantCA {
				t.Errorf("got host %s token %q ca %v", tg.Host(), tg.Token, tg.TLS.RootCAs != nil)
			}
		})
	}
}

func TestLoadRejectsUnknownFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("kind: Config\nbogus: 1\n"), 0o600)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("err = %v, want one naming the field", err)
	}
}

func TestNoHub(t *testing.T) {
	c := &Config{}
	if _, err := c.Resolve(Overrides{}); err == nil || !strings.Contains(err.Error(), "hub init") {
		t.Fatalf("err = %v", err)
	}
}

// TestOverridesFromEnvAndMerge: the environment fills what flags leave
// empty, field by field, and a flag always wins.
func TestOverridesFromEnvAndMerge(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		flags Overrides
		want  Overrides
	}{
		{"nothing set", nil, Overrides{}, Overrides{}},
		{"environment only",
			map[string]string{"OUTPOST_CONTEXT": "edge", "OUTPOST_HUB": "https://h:1", "OUTPOST_TOKEN": "t", "OUTPOST_CA_FILE": "/ca.crt"},
			Overrides{},
			Overrides{Context: "edge", Hub: "https://h:1", Token: "t", CAFile: "/ca.crt"}},
		{"flags win",
			map[string]string{"OUTPOST_CONTEXT": "edge", "OUTPOST_HUB": "https://h:1", "OUTPOST_TOKEN": "t", "OUTPOST_CA_FILE": "/ca.crt"},
			Overrides{Context: "lab", Hub: "https://f:2", Token: "ft", CAFile: "/f.crt"},
			Overrides{Context: "lab", Hub: "https://f:2", Token: "ft", CAFile: "/f.crt"}},
		{"field by field",
			map[string]string{"OUTPOST_HUB": "https://h:1", "OUTPOST_TOKEN": "t"},
			Overrides{Token: "ft", CAFile: "/f.crt"},
			Overrides{Hub: "https://h:1", Token: "ft", CAFile: "/f.crt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"OUTPOST_CONTEXT", "OUTPOST_HUB", "OUTPOST_TOKEN", "OUTPOST_CA_FILE"} {
				t.Setenv(k, tt.env[k])
			}
			if got := tt.flags.Merge(OverridesFromEnv()); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
