package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/auth"
	"outpost.dev/outpost/internal/clientconfig"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/models"
	"outpost.dev/outpost/internal/pki"
	"outpost.dev/outpost/internal/registry"
	"outpost.dev/outpost/internal/store"
)

// hubSettings is DIR/hub.yaml, written by 'hub init' and read by 'hub serve'.
type hubSettings struct {
	// Listen is the address to serve on.
	Listen string `json:"listen"`
	// URL is the address clients use to reach the hub.
	URL string `json:"url"`
	// RequireSignature refuses deployments of versions without a valid signature from a trusted key.
	RequireSignature bool `json:"requireSignature,omitempty"`
	// OfflineAfter is how long a cluster's agent may stay silent before its link is marked
	// Disconnected; zero means the hub's default.
	OfflineAfter metav1.Duration `json:"offlineAfter,omitzero"`
}

// hubLayout names the files of a hub data directory.
type hubLayout string

func (d hubLayout) path(elem ...string) string {
	return filepath.Join(append([]string{string(d)}, elem...)...)
}
func (d hubLayout) settings() string    { return d.path("hub.yaml") }
func (d hubLayout) db() string          { return d.path("hub.db") }
func (d hubLayout) oci() string         { return d.path("oci") }
func (d hubLayout) caCert() string      { return d.path("pki", "ca.crt") }
func (d hubLayout) caKey() string       { return d.path("pki", "ca.key") }
func (d hubLayout) tlsCert() string     { return d.path("pki", "tls.crt") }
func (d hubLayout) tlsKey() string      { return d.path("pki", "tls.key") }
func (d hubLayout) adminHash() string   { return d.path("admin.token.sha256") }
func (d hubLayout) trustedKeys() string { return d.path("trusted-keys") }

func newHubCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Set up and run the hub: the OCI model registry and the resource API",
	}
	cmd.AddCommand(newHubInitCmd(g), newHubServeCmd(g))
	return cmd
}

func newHubInitCmd(g *globals) *cobra.Command {
	var (
		data, listen, advertise, contextName string
		sans                                 []string
		force                                bool
	)
	cmd := &cobra.Command{
		Use:   "init --data DIR",
		Short: "Create a hub data directory: CA, TLS certificate and admin token",
		Long: `Create a hub data directory with a certificate authority, the hub's TLS
certificate, and an admin token. The token and the CA are written to the
client config as a new context, so that 'outpost' commands on this machine
reach the hub with no flags.`,
		Example: `  outpost hub init --data /var/lib/outpost
  outpost hub init --data ./hub --listen 0.0.0.0:8443 --san hub.factory.local`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" {
				return errors.New("--data is required")
			}
			d := hubLayout(data)
			if _, err := os.Stat(d.settings()); err == nil && !force {
				return fmt.Errorf("%s is already a hub data directory (use --force to start afresh)", data)
			}
			host, port, err := net.SplitHostPort(listen)
			if err != nil {
				return fmt.Errorf("--listen %q: %w", listen, err)
			}
			if advertise == "" {
				h := host
				if h == "" || h == "0.0.0.0" || h == "::" {
					h = "127.0.0.1"
				}
				advertise = "https://" + net.JoinHostPort(h, port)
			}
			hosts := []string{"localhost", "127.0.0.1", "::1"}
			if host != "" && host != "0.0.0.0" && host != "::" {
				hosts = append(hosts, host)
			}
			if hn, err := os.Hostname(); err == nil && hn != "" {
				hosts = append(hosts, hn)
			}
			hosts = append(hosts, sans...)
			token, err := initHubDir(d, hubSettings{Listen: listen, URL: advertise}, dedupe(hosts))
			if err != nil {
				return err
			}
			caPEM, err := os.ReadFile(d.caCert())
			if err != nil {
				return err
			}
			path := g.configPath
			if path == "" {
				path = clientconfig.DefaultPath()
			}
			cfg, err := clientconfig.Load(path)
			if err != nil {
				return err
			}
			cfg.SetContext(clientconfig.Context{
				Name:                     contextName,
				Hub:                      advertise,
				CertificateAuthorityData: base64.StdEncoding.EncodeToString(caPEM),
				Token:                    token,
			})
			if err := cfg.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "hub data directory %s ready\n  url:     %s\n  context: %s (in %s)\nstart it with: outpost hub serve --data %s\n",
				data, advertise, contextName, path, data)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "hub data directory to create")
	f.StringVar(&listen, "listen", "127.0.0.1:8443", "address the hub will listen on")
	f.StringVar(&advertise, "url", "", "URL clients use to reach the hub (default from --listen)")
	f.StringSliceVar(&sans, "san", nil, "extra host names or IPs for the hub's certificate")
	f.StringVar(&contextName, "context-name", "outpost", "name of the client config context to write")
	f.BoolVar(&force, "force", false, "overwrite an existing hub data directory's keys and token")
	return cmd
}

// initHubDir creates the data directory and returns the new admin token.
func initHubDir(d hubLayout, s hubSettings, hosts []string) (string, error) {
	for _, dir := range []string{string(d), d.path("pki"), d.trustedKeys(), d.oci()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("create %s: %w", dir, err)
		}
	}
	now := time.Now()
	ca, err := pki.NewCA("Outpost hub CA", now)
	if err != nil {
		return "", err
	}
	srv, err := pki.IssueServer(ca, hosts, now)
	if err != nil {
		return "", err
	}
	if err := ca.WriteFiles(d.caCert(), d.caKey()); err != nil {
		return "", err
	}
	if err := srv.WriteFiles(d.tlsCert(), d.tlsKey()); err != nil {
		return "", err
	}
	token, err := auth.NewToken()
	if err != nil {
		return "", err
	}
	if err := auth.WriteHashFile(d.adminHash(), token); err != nil {
		return "", err
	}
	b, err := yaml.Marshal(s)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(d.settings(), b, 0o600); err != nil {
		return "", fmt.Errorf("write hub settings: %w", err)
	}
	return token, nil
}

func newHubServeCmd(g *globals) *cobra.Command {
	var (
		data, listen string
		requireSig   bool
		trusted      []string
		ready        string
		offlineAfter time.Duration
		debugAddr    string
	)
	cmd := &cobra.Command{
		Use:   "serve --data DIR",
		Short: "Serve the OCI registry and the resource API over HTTPS",
		Long: `Serve the hub: the OCI distribution API under /v2/ (models live in
repositories models/<name>, tagged with their semver version) and the
ml.outpost.dev/v1alpha1 resource API under /apis/. Resources are kept in
DIR/hub.db (SQLite), blobs in the OCI image layout DIR/oci.

Trusted signing keys are the *.pub files in DIR/trusted-keys and those named
with --trusted-key. With --require-signature (or requireSignature in
DIR/hub.yaml) the hub refuses to deploy a version that lacks a valid signature
from a trusted key.

Agents join with a join token ('outpost cluster token create') and then use
their own cluster credential. A cluster whose agent has not reported for
--offline-after (or offlineAfter in DIR/hub.yaml) is shown Disconnected.`,
		Example: `  outpost hub serve --data /var/lib/outpost
  outpost hub serve --data ./hub --listen 0.0.0.0:8443 --require-signature`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" {
				return errors.New("--data is required")
			}
			d := hubLayout(data)
			b, err := os.ReadFile(d.settings())
			if err != nil {
				return fmt.Errorf("%s is not a hub data directory (run 'outpost hub init --data %s' first): %w", data, data, err)
			}
			var s hubSettings
			if err := yaml.UnmarshalStrict(b, &s); err != nil {
				return fmt.Errorf("%s: %w", d.settings(), err)
			}
			if listen != "" {
				s.Listen = listen
			}
			if requireSig {
				s.RequireSignature = true
			}
			if cmd.Flags().Changed("offline-after") {
				if offlineAfter <= 0 {
					return fmt.Errorf("--offline-after %s: must be positive", offlineAfter)
				}
				s.OfflineAfter = metav1.Duration{Duration: offlineAfter}
			}
			keys, err := loadTrustedKeys(d.trustedKeys(), trusted)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			debugDone, err := serveDebug(ctx, g.logger(), debugAddr)
			if err != nil {
				return err
			}
			defer func() { cancel(); <-debugDone }()
			return serveHub(ctx, g.logger(), d, s, keys, ready)
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "hub data directory (from 'outpost hub init')")
	f.StringVar(&listen, "listen", "", "address to listen on (default from DIR/hub.yaml)")
	f.BoolVar(&requireSig, "require-signature", false, "refuse to deploy model versions without a valid signature from a trusted key")
	f.StringSliceVar(&trusted, "trusted-key", nil, "public key file (PEM) trusted for model signatures; repeatable")
	f.StringVar(&ready, "ready-file", "", "write the listening address to this file once serving (for scripts)")
	f.DurationVar(&offlineAfter, "offline-after", 0,
		"mark a cluster's link Disconnected when its agent has not reported for this long (default offlineAfter in DIR/hub.yaml, else 60s)")
	addDebugListen(cmd, &debugAddr)
	return cmd
}

func loadTrustedKeys(dir string, files []string) ([]ed25519.PublicKey, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*.pub"))
	if err != nil {
		return nil, err
	}
	var keys []ed25519.PublicKey
	for _, f := range append(matches, files...) {
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

// serveHub composes the store, the registry, the model index and the
// resource API, and serves them until ctx ends.
func serveHub(ctx context.Context, log *slog.Logger, d hubLayout, s hubSettings, trusted []ed25519.PublicKey, readyFile string) error {
	adminHash, err := auth.ReadHashFile(d.adminHash())
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(d.tlsCert(), d.tlsKey())
	if err != nil {
		return fmt.Errorf("hub TLS certificate: %w", err)
	}
	// One clock for the store, the registry and the resource API.
	clk := clock.Real()
	db, err := store.Open(ctx, d.db(), store.WithClock(clk))
	if err != nil {
		return err
	}
	defer db.Close()
	// The admin token may do everything; a cluster credential only what its agent needs.
	authn := auth.NewAuthenticator(adminHash, auth.WithClusterCredentials(db))

	// The registry reports model changes to the hub, which is built after it.
	var srv *hub.Server
	reg, err := registry.New(ctx, registry.Options{
		Root:      d.oci(),
		DB:        db.SQL(),
		Authorize: authn.Authorize,
		CheckTag:  models.CheckTag,
		OnChange: func(ctx context.Context, ev registry.Event) {
			if srv == nil || !models.Affects(ev) {
				return
			}
			if err := srv.ModelsChanged(ctx); err != nil {
				log.Error("recompute desired state after model change", "repo", ev.Repo, "err", err)
			}
		},
		Logger: log,
		Clock:  clk,
	})
	if err != nil {
		return err
	}
	srv, err = hub.New(ctx, hub.Config{
		DB:               db,
		Registry:         reg,
		Models:           models.NewIndex(reg, trusted),
		Authorize:        authn.Authorize,
		RequireSignature: s.RequireSignature,
		Logger:           log,
		OfflineAfter:     s.OfflineAfter.Duration,
		Clock:            clk,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		TLSConfig:         hubTLSConfig(cert),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	log.Info("hub serving", "addr", ln.Addr().String(), "url", s.URL, "requireSignature", s.RequireSignature, "trustedKeys", len(trusted))
	if readyFile != "" {
		if err := os.WriteFile(readyFile, []byte(ln.Addr().String()), 0o600); err != nil {
			return fmt.Errorf("ready file: %w", err)
		}
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log.Info("hub shutting down")
	return hs.Shutdown(shutdownCtx)
}

// hubTLSConfig is the hub's TLS: 1.3, or 1.2 with ECDHE key exchange and an AEAD cipher only
// (no CBC, no SHA-1 MACs, no RSA key exchange). TLS 1.3's suites are not configurable and are
// all AEAD.
func hubTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if x != "" && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
