package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/internal/auth"
	"outpost.dev/outpost/internal/clientconfig"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/connlimit"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/models"
	"outpost.dev/outpost/internal/pki"
	"outpost.dev/outpost/internal/registry"
	"outpost.dev/outpost/internal/store"
	"outpost.dev/outpost/internal/tlsgate"
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
	// AlertWebhooks are the URLs the hub sends drift alerts to, in Alertmanager's webhook format.
	AlertWebhooks []string `json:"alertWebhooks,omitempty"`
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
func (d hubLayout) bundleKey() string   { return d.path("pki", "bundle.key") }

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
			path := g.configFile()
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
		webhooks     []string
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
with --trusted-key. The hub reads them again every 2 seconds: a key copied into
DIR/trusted-keys (or removed) takes effect without a restart, and deployments
resolve again. A file there that is not a public key is logged and changes
nothing until it is fixed or removed. With --require-signature (or requireSignature in
DIR/hub.yaml) the hub refuses to deploy a version that lacks a valid signature
from a trusted key.

Agents join with a join token ('outpost cluster token create') and then use
their own cluster credential. A cluster whose agent has not reported for
--offline-after (or offlineAfter in DIR/hub.yaml) is shown Disconnected.

When the drift alarm of a deployment with spec.monitoring.alert is raised or
cleared in a cluster, the hub POSTs an Alertmanager webhook message (version
4) to every --alert-webhook (and alertWebhooks in DIR/hub.yaml), retrying
until the receiver answers 2xx; alerts wait in DIR/hub.db across restarts.
GET /metrics answers Prometheus metrics to the admin token.`,
		Example: `  outpost hub serve --data /var/lib/outpost
  outpost hub serve --data ./hub --listen 0.0.0.0:8443 --require-signature
  outpost hub serve --data ./hub --alert-webhook https://alerts.example.com/outpost`,
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
			s.AlertWebhooks = append(s.AlertWebhooks, webhooks...)
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			debugDone, err := serveDebug(ctx, g.logger(), debugAddr)
			if err != nil {
				return err
			}
			defer func() { cancel(); <-debugDone }()
			return serveHub(ctx, g.logger(), d, s, trustSource{dir: d.trustedKeys(), files: trusted}, ready)
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
	f.StringArrayVar(&webhooks, "alert-webhook", nil, "http or https URL to POST drift alerts to, in Alertmanager's webhook format; repeatable")
	addDebugListen(cmd, &debugAddr)
	return cmd
}

// serveHub composes the store, the registry, the model index and the
// resource API, and serves them until ctx ends.
func serveHub(ctx context.Context, log *slog.Logger, d hubLayout, s hubSettings, trust trustSource, readyFile string) error {
	trusted, err := trust.load()
	if err != nil {
		return err
	}
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
	var reg *registry.Registry
	reg, err = registry.New(ctx, registry.Options{
		Root:      d.oci(),
		DB:        db.SQL(),
		Authorize: authn.Authorize,
		CheckTag:  models.CheckTag,
		OnChange: func(ctx context.Context, ev registry.Event) {
			// Weight deltas first, so that agents sent to the version find them.
			if ok, err := models.WriteWeightDeltas(ctx, reg, ev); err != nil {
				log.Warn("weight deltas not attached: agents fetch the changed chunks", "repo", ev.Repo, "tag", ev.Tag, "err", err)
			} else if ok {
				log.Info("weight deltas attached", "repo", ev.Repo, "tag", ev.Tag)
			}
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
	index := models.NewIndex(reg, trusted)
	bundleKey, err := loadBundleKey(d.bundleKey())
	if err != nil {
		return err
	}
	srv, err = hub.New(ctx, hub.Config{
		BundleKey:        bundleKey,
		DB:               db,
		Registry:         reg,
		Models:           index,
		Federated:        models.NewFederated(reg, bundleKey),
		Compressor:       models.NewCompressor(reg, bundleKey),
		Authorize:        authn.Authorize,
		RequireSignature: s.RequireSignature,
		Logger:           log,
		OfflineAfter:     s.OfflineAfter.Duration,
		Clock:            clk,
		AlertWebhooks:    s.AlertWebhooks,
		ExternalURL:      s.URL,
	})
	if err != nil {
		return err
	}
	// Keys added to or removed from DIR/trusted-keys take effect without a
	// restart: deployments resolve again with the keys read.
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watching sync.WaitGroup
	defer func() { stopWatch(); watching.Wait() }()
	watching.Go(func() {
		trust.watch(watchCtx, log, clk, trustReloadInterval, trusted, func(ctx context.Context, keys []ed25519.PublicKey) {
			index.SetTrusted(keys)
			if err := srv.ModelsChanged(ctx); err != nil && ctx.Err() == nil {
				log.Error("recompute desired state after a change of trusted keys", "err", err)
			}
		})
	})
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// A fleet connecting at once must not share the CPU among all its handshakes,
	// nor hold more connections than the open-files limit leaves room for.
	gate := tlsgate.New(tlsgate.Options{Clock: clk})
	limit, err := connectionBudget()
	if err != nil {
		return err
	}
	conns := connlimit.New(limit, connlimit.Options{Clock: clk})
	log.Info("connection budget", "connections", limit)
	hs := &http.Server{
		ConnState:         conns.ConnState,
		Handler:           srv.Handler(),
		TLSConfig:         gate.Config(hubTLSConfig(cert)),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          serverErrorLog(log),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(gate.Listener(conns.Listener(ln)), "", "") }()
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
	err = hs.Shutdown(shutdownCtx)
	srv.Wait() // its loops stop with ctx; the deferred db.Close comes after
	return err
}

// connectionBudget is how many connections the hub keeps open at most: its
// open-files limit less a tenth (at least 64) for its database, the blobs it
// serves and its logs.
func connectionBudget() (int, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("open-files limit: %w", err)
	}
	n := int(min(l.Cur, 1<<30))
	return max(n-max(n/10, 64), 16), nil
}

// serverErrorLog is the error log of the hub's HTTP server: its messages go to
// log at Warn, except failed TLS handshakes (clients that went away or never
// spoke TLS), which go at Debug. A fleet reconnecting at once, after a hub
// restart say, fails thousands of handshakes a second, and the messages were
// written one at a time under the logger's lock.
func serverErrorLog(log *slog.Logger) *stdlog.Logger {
	return stdlog.New(errorLogWriter{log}, "", 0)
}

type errorLogWriter struct{ log *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
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
