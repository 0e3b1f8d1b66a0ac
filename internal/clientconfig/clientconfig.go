// Package clientconfig reads and writes the CLI's client configuration: a
// kubeconfig-like file of named contexts, each a hub address, the CA that
// signed its certificate, and a token.
package clientconfig

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/internal/durable"
	"outpost.dev/outpost/internal/pki"
)

// APIVersion and Kind identify a client configuration file.
const (
	APIVersion = "outpost.dev/v1"
	Kind       = "Config"
)

// Config is the client configuration file.
type Config struct {
	APIVersion     string    `json:"apiVersion"`
	Kind           string    `json:"kind"`
	CurrentContext string    `json:"current-context,omitempty"`
	Contexts       []Context `json:"contexts,omitempty"`
}

// Context is one hub the CLI can talk to.
type Context struct {
	Name string `json:"name"`
	// Hub is the hub's base URL, such as https://127.0.0.1:8443.
	Hub string `json:"hub"`
	// CertificateAuthority is a path to the PEM CA that signed the hub's certificate.
	CertificateAuthority string `json:"certificate-authority,omitempty"`
	// CertificateAuthorityData is the same CA, base64-encoded PEM, inline.
	CertificateAuthorityData string `json:"certificate-authority-data,omitempty"`
	// Token is the bearer token sent to the hub.
	Token string `json:"token,omitempty"`
}

// DefaultPath is where the configuration lives unless OUTPOST_CONFIG names another file.
func DefaultPath() string {
	if p := os.Getenv("OUTPOST_CONFIG"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "outpost", "config.yaml")
}

// Load reads a configuration file. A missing file is an empty configuration.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Config{APIVersion: APIVersion, Kind: Kind}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read client config: %w", err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("client config %s: %w", path, err)
	}
	if c.Kind != "" && c.Kind != Kind {
		return nil, fmt.Errorf("client config %s: kind %q, want %q", path, c.Kind, Kind)
	}
	return &c, nil
}

// Save writes the configuration atomically with mode 0600: it holds tokens.
func (c *Config) Save(path string) error {
	c.APIVersion, c.Kind = APIVersion, Kind
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode client config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save client config: %w", err)
	}
	if err := durable.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("save client config: %w", err)
	}
	return nil
}

// SetContext adds or replaces the context of the same name and makes it current.
func (c *Config) SetContext(ctx Context) {
	for i := range c.Contexts {
		if c.Contexts[i].Name == ctx.Name {
			c.Contexts[i] = ctx
			c.CurrentContext = ctx.Name
			return
		}
	}
	c.Contexts = append(c.Contexts, ctx)
	c.CurrentContext = ctx.Name
}

// Context returns the named context, or the current one when name is empty.
func (c *Config) Context(name string) (Context, bool) {
	if name == "" {
		name = c.CurrentContext
	}
	for _, x := range c.Contexts {
		if x.Name == name {
			return x, true
		}
	}
	return Context{}, false
}

// Overrides are what flags and the environment say, ahead of the file.
type Overrides struct {
	Context string
	Hub     string
	Token   string
	CAFile  string
}

// OverridesFromEnv reads OUTPOST_CONTEXT, OUTPOST_HUB, OUTPOST_TOKEN and OUTPOST_CA_FILE.
func OverridesFromEnv() Overrides {
	return Overrides{
		Context: os.Getenv("OUTPOST_CONTEXT"),
		Hub:     os.Getenv("OUTPOST_HUB"),
		Token:   os.Getenv("OUTPOST_TOKEN"),
		CAFile:  os.Getenv("OUTPOST_CA_FILE"),
	}
}

// Merge returns o with empty fields filled from fallback.
func (o Overrides) Merge(fallback Overrides) Overrides {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	return Overrides{
		Context: pick(o.Context, fallback.Context),
		Hub:     pick(o.Hub, fallback.Hub),
		Token:   pick(o.Token, fallback.Token),
		CAFile:  pick(o.CAFile, fallback.CAFile),
	}
}

// Target is a resolved hub to talk to.
type Target struct {
	// URL is the hub's base URL.
	URL *url.URL
	// Token is the bearer token, possibly empty.
	Token string
	// TLS is the client TLS configuration, trusting the hub's CA when one is known.
	TLS *tls.Config
	// Source says where the hub's address came from, for messages: "--hub
	// or OUTPOST_HUB", or the context of the client config.
	Source string
}

// Resolve combines the file and the overrides into a Target.
func (c *Config) Resolve(o Overrides) (*Target, error) {
	ctx, found := c.Context(o.Context)
	if o.Context != "" && !found {
		return nil, fmt.Errorf("no context %q in client config", o.Context)
	}
	if o.Hub != "" && found && strings.TrimRight(o.Hub, "/") != strings.TrimRight(ctx.Hub, "/") {
		// A hub named on the command line borrows credentials only from a context for that hub.
		ctx, found = Context{}, false
		for _, x := range c.Contexts {
			if strings.TrimRight(x.Hub, "/") == strings.TrimRight(o.Hub, "/") {
				ctx, found = x, true
			}
		}
	}
	hub := ctx.Hub
	if o.Hub != "" {
		hub = o.Hub
	}
	if hub == "" {
		return nil, errors.New("no hub: pass --hub, set OUTPOST_HUB, or run 'outpost hub init' to write a client config")
	}
	u, err := url.Parse(hub)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("hub address %q: want https://HOST:PORT", hub)
	}
	t := &Target{URL: u, Token: ctx.Token, TLS: &tls.Config{MinVersion: tls.VersionTLS12}, Source: "--hub or OUTPOST_HUB"}
	if o.Hub == "" {
		t.Source = fmt.Sprintf("context %q of the client config", ctx.Name)
	}
	if o.Token != "" {
		t.Token = o.Token
	}
	var caPEM []byte
	switch {
	case o.CAFile != "":
		caPEM, err = os.ReadFile(o.CAFile)
	case ctx.CertificateAuthorityData != "":
		caPEM, err = base64.StdEncoding.DecodeString(ctx.CertificateAuthorityData)
	case ctx.CertificateAuthority != "":
		caPEM, err = os.ReadFile(ctx.CertificateAuthority)
	}
	if err != nil {
		return nil, fmt.Errorf("hub certificate authority: %w", err)
	}
	if caPEM != nil {
		if t.TLS, err = pki.ClientTLS(caPEM); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Host is the host:port of the hub, as OCI references name a registry.
func (t *Target) Host() string { return t.URL.Host }
