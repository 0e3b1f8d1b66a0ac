package tlsgate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"outpost.dev/outpost/internal/pki"
)

func (g *Gate) state() (busy, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.busy, len(g.waiters) - g.gone
}

// TestGate checks who gets a slot: at once while one is free and nobody
// waits; else the newest waiter first; nobody that waited past MaxWait, or
// whose context ended, and those give up without taking a slot.
func TestGate(t *testing.T) {
	const maxWait = 5 * time.Second
	type result struct {
		name string
		err  error
	}
	tests := []struct {
		name string
		// run drives a gate of one slot; wait enqueues a handshake named
		// name, accepted age ago, and returns once it waits or is decided.
		run  func(t *testing.T, g *Gate, wait func(name string, age time.Duration, ctx context.Context))
		want []result
	}{
		{"newest first", func(t *testing.T, g *Gate, wait func(string, time.Duration, context.Context)) {
			wait("old", 0, t.Context())
			wait("new", 0, t.Context())
			g.release()
			synctest.Wait()
			g.release()
		}, []result{{"new", nil}, {"old", nil}}},
		{"too old to wait", func(t *testing.T, g *Gate, wait func(string, time.Duration, context.Context)) {
			wait("stale", maxWait+time.Millisecond, t.Context())
		}, []result{{"stale", ErrTooLate}}},
		{"waited too long", func(t *testing.T, g *Gate, wait func(string, time.Duration, context.Context)) {
			wait("slow", time.Second, t.Context())
			wait("fresh", 0, t.Context())
			time.Sleep(maxWait - time.Second)
			synctest.Wait()
			g.release()
		}, []result{{"slow", ErrTooLate}, {"fresh", nil}}},
		{"context ended", func(t *testing.T, g *Gate, wait func(string, time.Duration, context.Context)) {
			ctx, cancel := context.WithCancel(t.Context())
			wait("cancelled", 0, ctx)
			wait("kept", 0, t.Context())
			cancel()
			synctest.Wait()
			g.release()
		}, []result{{"cancelled", context.Canceled}, {"kept", nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := New(Options{Slots: 1, MaxWait: maxWait})
				if err := g.acquire(t.Context(), time.Now()); err != nil {
					t.Fatalf("first acquire: %v", err)
				}
				var got []result
				var mu sync.Mutex
				wait := func(name string, age time.Duration, ctx context.Context) {
					accepted := time.Now().Add(-age)
					go func() {
						err := g.acquire(ctx, accepted)
						mu.Lock()
						got = append(got, result{name, err})
						mu.Unlock()
					}()
					synctest.Wait()
				}
				tt.run(t, g, wait)
				synctest.Wait()
				mu.Lock()
				defer mu.Unlock()
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("got %v, want %v", got, tt.want)
				}
				// The slot is held by the last one granted (or the first
				// holder), and by nobody once it gives it back: who gave up
				// took none.
				if busy, waiting := g.state(); busy != 1 || waiting != 0 {
					t.Errorf("%d slots busy, %d waiting at the end, want 1, 0", busy, waiting)
				}
				g.release()
				if busy, _ := g.state(); busy != 0 {
					t.Errorf("%d slots busy once released", busy)
				}
			})
		})
	}
}

// TestServer serves HTTPS through a gate of one slot to clients connecting
// at once: all of them are served, and no slot is left taken.
func TestServer(t *testing.T) {
	g := New(Options{Slots: 1})
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	ts.Listener = g.Listener(ts.Listener)
	ts.TLS = g.Config(&tls.Config{}) // StartTLS adds its certificate to a copy
	ts.StartTLS()
	defer ts.Close()

	const clients = 32
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := ts.Client().Transport.(*http.Transport).Clone()
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(ts.URL)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
				errs <- fmt.Errorf("answer %q", b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if busy, waiting := g.state(); busy != 0 || waiting != 0 {
		t.Errorf("%d slots busy, %d waiting after every client was served", busy, waiting)
	}
}

// TestRefusedHandshake checks that a connection that waited too long is
// refused during its handshake, and that closing a connection gives its slot
// back.
func TestRefusedHandshake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := New(Options{Slots: 1, MaxWait: time.Second})
		if err := g.acquire(t.Context(), time.Now()); err != nil { // the only slot, taken
			t.Fatal(err)
		}
		cfg := g.Config(&tls.Config{Certificates: []tls.Certificate{testCert(t)}})
		client, server := net.Pipe()
		accepted := &conn{Conn: server, g: g, accepted: time.Now()}
		done := make(chan error, 1)
		go func() { done <- tls.Server(accepted, cfg).HandshakeContext(t.Context()) }()
		go func() { _ = tls.Client(client, &tls.Config{InsecureSkipVerify: true}).Handshake() }()
		if err := <-done; !errors.Is(err, ErrTooLate) {
			t.Errorf("handshake after waiting past MaxWait: %v, want ErrTooLate", err)
		}
		client.Close()
		accepted.Close()
		g.release()
		if busy, waiting := g.state(); busy != 0 || waiting != 0 {
			t.Errorf("%d slots busy, %d waiting at the end", busy, waiting)
		}
	})
}

func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	ca, err := pki.NewCA("tlsgate test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err := pki.IssueServer(ca, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
