// Package benchhub starts a real hub process for the benchmark programs:
// hub init and hub serve of the outpost binary in a scratch directory, with
// a client config of its own.
package benchhub

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clientconfig"
	"outpost.dev/outpost/internal/hubclient"
	"outpost.dev/outpost/internal/pki"
)

// Hub is a running hub process.
type Hub struct {
	// Outpost is the outpost binary.
	Outpost string
	// Dir is the hub's data directory; Config its client config.
	Dir, Config string
	// Addr is the host:port it serves on; CAFile its CA; Token the admin token.
	Addr, CAFile, Token string
	// Pid is the hub process.
	Pid int

	cmd *exec.Cmd
	log *os.File
}

// Start initialises a hub under dir and starts it; Stop ends it.
func Start(ctx context.Context, outpost, dir string) (*Hub, error) {
	if _, err := os.Stat(outpost); err != nil {
		return nil, fmt.Errorf("%s: %w (run make build)", outpost, err)
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	h := &Hub{Outpost: outpost, Dir: filepath.Join(dir, "hub"), Config: filepath.Join(dir, "client.yaml"), Addr: addr}
	h.CAFile = filepath.Join(h.Dir, "pki", "ca.crt")
	if _, err := h.Run(ctx, "hub", "init", "--data", h.Dir, "--listen", addr); err != nil {
		return nil, err
	}
	cfg, err := clientconfig.Load(h.Config)
	if err != nil {
		return nil, err
	}
	c, ok := cfg.Context("")
	if !ok || c.Token == "" {
		return nil, fmt.Errorf("no token in %s", h.Config)
	}
	h.Token = c.Token
	ready := filepath.Join(dir, "hub.ready")
	if h.log, err = os.Create(filepath.Join(dir, "hub.log")); err != nil {
		return nil, err
	}
	h.cmd = exec.CommandContext(ctx, outpost, "hub", "serve", "--data", h.Dir, "--ready-file", ready)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		h.log.Close()
		return nil, err
	}
	h.Pid = h.cmd.Process.Pid
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			return h, nil
		}
		if time.Now().After(deadline) {
			h.Stop()
			b, _ := os.ReadFile(h.log.Name())
			return nil, fmt.Errorf("hub did not start:\n%s", b)
		}
	}
}

// TLS returns the client TLS configuration that trusts the hub's CA.
func (h *Hub) TLS() (*tls.Config, error) {
	pem, err := os.ReadFile(h.CAFile)
	if err != nil {
		return nil, err
	}
	return pki.ClientTLS(pem)
}

// Client returns a client of the hub's API with the admin token.
func (h *Hub) Client() (*hubclient.Client, error) {
	tc, err := h.TLS()
	if err != nil {
		return nil, err
	}
	return hubclient.New("https://"+h.Addr, hubclient.Options{Token: h.Token, TLS: tc})
}

// Deploy applies the ModelDeployment name of model at version (an exact
// version or a range) to the clusters labelled with selector.
func Deploy(ctx context.Context, c *hubclient.Client, name, model, version string, selector map[string]string) error {
	d := &v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ModelDeploymentSpec{
			Model:            v1alpha1.ModelRef{Name: model, Version: version},
			ClusterSelectors: []metav1.LabelSelector{{MatchLabels: selector}},
		},
	}
	v1alpha1.SetTypeMeta(d)
	if err := c.Apply(ctx, d, nil); err != nil {
		return fmt.Errorf("apply deployment %s at %s: %w", name, version, err)
	}
	return nil
}

// Stop kills the hub and waits for it.
func (h *Hub) Stop() {
	h.cmd.Process.Kill()
	h.cmd.Wait()
	h.log.Close()
}

// Run runs the outpost CLI against the hub and returns its standard output.
func (h *Hub) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, h.Outpost, append([]string{"--config", h.Config}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("outpost %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out), nil
}

// FreeAddr returns a loopback address nothing listens on now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ParseSize parses a byte count such as 1GiB, 64MiB, 1.5MiB, 512KiB or 1024:
// a number, optionally followed by GiB, MiB, KiB or B and nothing else, of
// at least one byte (a fraction of a byte is dropped).
func ParseSize(s string) (int64, error) {
	orig, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = num, u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	n := v * float64(mult)
	if err != nil || math.IsNaN(n) || n < 1 || n > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with GiB, MiB or KiB", orig)
	}
	return int64(n), nil
}

// FormatSize is the inverse of ParseSize for display: n in GiB, MiB or KiB
// with one decimal, or in bytes below 1 KiB.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// AbsPath makes a binary's path, given relative to the working directory,
// absolute, so that it still names the binary from a child's directory.
func AbsPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// WriteModel writes two versions of a model of size bytes of float32
// weights (N(0, 0.05²)) in weights.bin beside a small config.json: v1, and
// v2 with the last change percent of the weights each moved by N(0, 0.01²),
// one contiguous run, as fine-tuning the last layers does (100: a full
// fine-tune, every weight moved). seed picks the weights.
func WriteModel(v1, v2 string, size int64, change int, seed uint64) error {
	n := size / 4
	rng := rand.New(rand.NewPCG(seed, 2))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	enc := func(w []float32) []byte {
		b := make([]byte, 4*len(w))
		for i, x := range w {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	}
	cfg := []byte(`{"architecture": "mlp", "hidden": [4096, 4096], "classes": 1000}` + "\n")
	for _, dir := range []string{v1, v2} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(v1, "weights.bin"), enc(w), 0o644); err != nil {
		return err
	}
	for i := n - n*int64(change)/100; i < n; i++ {
		w[i] += float32(rng.NormFloat64() * 0.01)
	}
	return os.WriteFile(filepath.Join(v2, "weights.bin"), enc(w), 0o644)
}
