package connlimit

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// server is an HTTPS server behind a Limiter of max connections whose
// handler blocks requests to /block until unblock is closed.
type server struct {
	*httptest.Server
	l       *Limiter
	unblock chan struct{}
	blocked sync.WaitGroup
}

func newServer(t *testing.T, max int) *server {
	t.Helper()
	s := &server{l: New(max, Options{MinIdle: time.Nanosecond}), unblock: make(chan struct{})}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			s.blocked.Done()
			<-s.unblock
		}
		_, _ = io.WriteString(w, "ok")
	}))
	s.Listener = s.l.Listener(s.Listener)
	s.Config.ConnState = s.l.ConnState
	s.StartTLS()
	t.Cleanup(func() {
		select {
		case <-s.unblock:
		default:
			close(s.unblock)
		}
		s.Close()
	})
	return s
}

// client is a client of its own connections, kept alive between requests.
func (s *server) client() *http.Client {
	tr := s.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	return &http.Client{Transport: tr}
}

func get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && string(b) != "ok" {
		err = fmt.Errorf("answer %q", b)
	}
	return err
}

// TestIdleConnectionsMakeRoom checks that at the budget, a new connection
// is served by closing the connection idle the longest, and that the
// clients whose idle connection closed are served again on a new one.
func TestIdleConnectionsMakeRoom(t *testing.T) {
	const max = 3
	s := newServer(t, max)
	clients := make([]*http.Client, 2*max)
	for i := range clients {
		clients[i] = s.client()
		if err := get(t.Context(), clients[i], s.URL); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	for i, c := range clients {
		if err := get(t.Context(), c, s.URL); err != nil {
			t.Errorf("client %d again: %v", i, err)
		}
	}
	if p := s.l.peakOpen(); p > max {
		t.Errorf("%d connections were open at once, budget %d", p, max)
	}
}

// TestBusyConnectionsQueueNew checks that with the budget spent on requests
// in progress, a new connection waits, not refused, and is served once one
// of them ends; the budget is never exceeded.
func TestBusyConnectionsQueueNew(t *testing.T) {
	const max = 2
	s := newServer(t, max)
	s.blocked.Add(max)
	errs := make(chan error, max+1)
	for range max {
		go func() { errs <- get(t.Context(), s.client(), s.URL+"/block") }()
	}
	s.blocked.Wait() // the budget is spent on blocked requests
	go func() { errs <- get(t.Context(), s.client(), s.URL) }()
	close(s.unblock)
	for range max + 1 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if p := s.l.peakOpen(); p > max {
		t.Errorf("%d connections were open at once, budget %d", p, max)
	}
}

// TestMinIdle checks that a connection idle for less than MinIdle, likely
// between two requests of its client, is not closed to make room: the new
// connection waits until it has been idle that long.
func TestMinIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const minIdle = time.Second
		l := New(1, Options{MinIdle: minIdle})
		stop := make(chan struct{})
		defer close(stop)
		if !l.admit(stop) {
			t.Fatal("first connection not admitted")
		}
		server, client := net.Pipe()
		defer client.Close()
		c := &conn{Conn: server, l: l}
		l.ConnState(c, http.StateIdle)
		var admitted atomic.Bool
		go func() { admitted.Store(l.admit(stop)) }()
		time.Sleep(minIdle - time.Millisecond)
		synctest.Wait()
		if admitted.Load() {
			t.Fatalf("a connection idle for %v was closed to make room", minIdle-time.Millisecond)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if !admitted.Load() {
			t.Fatalf("no room made once the connection was idle for %v", minIdle)
		}
		if _, err := client.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("the idle connection was not closed: read %v", err)
		}
		if n := l.Open(); n != 1 {
			t.Errorf("%d connections open, want 1", n)
		}
	})
}
