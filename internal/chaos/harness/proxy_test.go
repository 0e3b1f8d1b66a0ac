package harness

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/pki"
)

// fakeHub answers desired-state requests with a document of the revision
// in rev, and outbox batches with the outcomes in answers, one per call.
type fakeHub struct {
	mu      sync.Mutex
	rev     int64
	answers []string // outcome of the single record, per call
	calls   int
}

func (h *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, sub := route(r.URL.Path)
	switch sub {
	case "desiredstate":
		json.NewEncoder(w).Encode(v1alpha1.DesiredState{Kind: v1alpha1.KindDesiredState, Cluster: "edge-0", Revision: h.rev,
			Models: []v1alpha1.DesiredModel{{Deployment: "d0", Model: "m", Version: fmt.Sprintf("1.%d.0", h.rev), Digest: "sha256:x"}}})
	case "outbox":
		io.Copy(io.Discard, r.Body)
		outcome := h.answers[min(h.calls, len(h.answers)-1)]
		h.calls++
		json.NewEncoder(w).Encode(v1alpha1.OutboxResponse{Kind: v1alpha1.KindOutboxResponse, Results: []v1alpha1.OutboxResult{{Key: "k", Outcome: outcome}}})
	default:
		http.NotFound(w, r)
	}
}

type proxyEnv struct {
	hub    *fakeHub
	up     *httptest.Server
	p      *proxy
	client *http.Client
	docs   []int64
	bad    []string
	mu     sync.Mutex
}

func newProxyEnv(t *testing.T) *proxyEnv {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := pki.IssueServer(ca, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := pki.ClientTLS(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	e := &proxyEnv{hub: &fakeHub{rev: 1, answers: []string{"Applied", "Duplicate"}}}
	e.up = httptest.NewUnstartedServer(e.hub)
	e.up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	e.up.StartTLS()
	t.Cleanup(e.up.Close)
	if e.p, err = newProxy(e.up.URL, cert, clientTLS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.p.close)
	e.p.onDoc = func(cluster string, d v1alpha1.DesiredState) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.docs = append(e.docs, d.Revision)
	}
	e.p.onViolation = func(cluster, detail string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.bad = append(e.bad, detail)
	}
	e.client = &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}, Timeout: 10 * time.Second}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

func (e *proxyEnv) desired(t *testing.T, after int64) int64 {
	t.Helper()
	resp, err := e.client.Get(fmt.Sprintf("https://%s%s/clusters/edge-0/desiredstate?after=%d", e.p.addr(), v1alpha1.APIPath, after))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d v1alpha1.DesiredState
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d.Revision
}

func (e *proxyEnv) outbox() (string, error) {
	resp, err := e.client.Post(fmt.Sprintf("https://%s%s/clusters/edge-0/outbox", e.p.addr(), v1alpha1.APIPath), "application/json", strings.NewReader(`{}`))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var r v1alpha1.OutboxResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", err
	}
	return r.Results[0].Outcome, nil
}

func TestProxyStaleDesiredState(t *testing.T) {
	e := newProxyEnv(t)
	for rev := int64(1); rev <= 3; rev++ {
		e.hub.mu.Lock()
		e.hub.rev = rev
		e.hub.mu.Unlock()
		if got := e.desired(t, rev-1); got != rev {
			t.Fatalf("revision %d through the proxy, want %d", got, rev)
		}
	}
	if fmt.Sprint(e.docs) != "[1 2 3]" {
		t.Errorf("documents recorded %v", e.docs)
	}
	// Armed, the next request gets the newest document older than the one applied.
	e.p.armStale("edge-0")
	if got := e.desired(t, 3); got != 2 {
		t.Errorf("stale answer has revision %d, want 2", got)
	}
	if got := e.desired(t, 3); got != 3 {
		t.Errorf("the fault fired twice: revision %d", got)
	}
	served, confirmed, _, _ := e.p.counts("edge-0")
	if served != 1 || confirmed != 1 {
		t.Errorf("served %d, confirmed %d; want 1 and 1", served, confirmed)
	}
	// Nothing older than the applied revision: the fault waits.
	e.p.armStale("edge-0")
	if got := e.desired(t, 1); got != 3 {
		t.Errorf("revision %d with nothing older to give", got)
	}
	// A fault between the stale answer and the next request: not confirmed.
	if got := e.desired(t, 3); got != 2 {
		t.Errorf("stale answer has revision %d, want 2", got)
	}
	e.p.taint("edge-0", false)
	e.desired(t, 3)
	// Over a dirty link: served, never confirmed, until clean.
	e.p.taint("edge-0", true)
	e.p.armStale("edge-0")
	e.desired(t, 3)
	e.desired(t, 3)
	served, confirmed, _, _ = e.p.counts("edge-0")
	if served != 3 || confirmed != 1 {
		t.Errorf("served %d, confirmed %d; want 3 and 1", served, confirmed)
	}
	e.p.clean("edge-0")
	e.p.armStale("edge-0")
	e.desired(t, 3)
	e.p.disarm()
	e.desired(t, 3)
	if served, confirmed, _, _ = e.p.counts("edge-0"); served != 4 || confirmed != 2 {
		t.Errorf("served %d, confirmed %d; want 4 and 2", served, confirmed)
	}
}

func TestProxyOutboxFaults(t *testing.T) {
	e := newProxyEnv(t)
	e.p.armOutbox("edge-0", outboxDuplicate)
	if got, err := e.outbox(); err != nil || got != "Applied" {
		t.Fatalf("duplicated batch answered %q, %v; want the first answer", got, err)
	}
	if e.hub.calls != 2 || len(e.bad) != 0 {
		t.Errorf("hub called %d times, violations %v", e.hub.calls, e.bad)
	}
	// A hub that applies a batch twice is caught.
	e.hub.answers, e.hub.calls = []string{"Applied"}, 0
	e.p.armOutbox("edge-0", outboxDuplicate)
	e.outbox()
	if len(e.bad) != 1 || !strings.Contains(e.bad[0], "Applied, then k Applied, want Duplicate") {
		t.Errorf("violations %v", e.bad)
	}
	// A lost answer: the hub got the batch, the agent no answer.
	e.hub.calls = 0
	e.p.armOutbox("edge-0", outboxLose)
	if _, err := e.outbox(); err == nil {
		t.Error("the answer came through")
	}
	if _, err := e.outbox(); err != nil {
		t.Errorf("the fault fired twice: %v", err)
	}
	if _, _, dup, lost := e.p.counts("edge-0"); e.hub.calls != 2 || dup != 2 || lost != 1 {
		t.Errorf("hub calls %d, duplicated %d, lost %d", e.hub.calls, dup, lost)
	}
	// With the hub gone, the client's connection drops.
	e.up.Close()
	e.client.CloseIdleConnections()
	if _, err := e.client.Get(fmt.Sprintf("https://%s/healthz", e.p.addr())); err == nil {
		t.Error("an answer with the hub gone")
	}
}

func TestDisksFsize(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	d, err := newDisks(DiskFsize, []string{filepath.Join(t.TempDir(), "a")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	limit := func() string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", cmd.Process.Pid))
		if err != nil {
			t.Skip("no /proc:", err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Max file size") {
				return strings.Fields(strings.TrimPrefix(l, "Max file size"))[0]
			}
		}
		return ""
	}
	if err := d.fill(0, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != "0" || !d.isFull(0) {
		t.Errorf("full: limit %s", got)
	}
	if err := d.free(0, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != "unlimited" || d.isFull(0) {
		t.Errorf("freed: limit %s", got)
	}
}

func TestDisksTmpfs(t *testing.T) {
	if !canMount(t.TempDir()) {
		t.Skip("cannot mount a tmpfs here")
	}
	root := filepath.Join(t.TempDir(), "a")
	d, err := newDisks(DiskAuto, []string{root})
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	if d.mode != DiskTmpfs {
		t.Fatalf("mode %s", d.mode)
	}
	if err := d.fill(0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "x"), make([]byte, 8192), 0o600); err == nil {
		t.Error("a write to a full disk succeeded")
	}
	if err := d.free(0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "x"), make([]byte, 8192), 0o600); err != nil {
		t.Errorf("a write after freeing: %v", err)
	}
	d.close()
	if _, err := os.Stat(filepath.Join(root, "x")); err == nil {
		t.Error("the tmpfs is still mounted")
	}
}
