package cli

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/internal/testenv"
)

// records is a slog.Handler that keeps every record at Debug and above.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) all() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]slog.Record(nil), r.recs...)
}

// TestServerErrorLog checks the level of the HTTP server's own messages: a
// failed TLS handshake (a client that went away, or never spoke TLS) is
// Debug, for a fleet reconnecting at once fails thousands a second; the
// others stay Warn.
func TestServerErrorLog(t *testing.T) {
	tests := []struct {
		msg  string
		want slog.Level
	}{
		{"http: TLS handshake error from 127.0.0.1:50312: EOF\n", slog.LevelDebug},
		{"http: TLS handshake error from 10.0.0.7:4431: read tcp 10.0.0.1:8443->10.0.0.7:4431: read: connection reset by peer\n", slog.LevelDebug},
		{"http: Accept error: accept tcp [::]:8443: accept4: too many open files; retrying in 5ms\n", slog.LevelWarn},
		{"http: superfluous response.WriteHeader call\n", slog.LevelWarn},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			rec := &records{}
			l := serverErrorLog(slog.New(rec))
			l.Print(tt.msg)
			got := rec.all()
			if len(got) != 1 || got[0].Level != tt.want || got[0].Message+"\n" != tt.msg {
				t.Fatalf("logged %+v, want one record at %v saying %q", got, tt.want, tt.msg)
			}
		})
	}

	// Through a real server: a client that closes before its handshake.
	rec := &records{}
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.Config.ErrorLog = serverErrorLog(slog.New(rec))
	ts.StartTLS()
	defer ts.Close()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	testenv.WaitFor(t, 10*time.Second, "the handshake error logged", func() bool { return len(rec.all()) > 0 })
	if r := rec.all()[0]; r.Level != slog.LevelDebug {
		t.Errorf("failed handshake logged at %v: %s", r.Level, r.Message)
	}
}
