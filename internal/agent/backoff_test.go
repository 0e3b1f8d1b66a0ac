package agent

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/hub/hubtest"
	"outpost.dev/outpost/internal/hubclient"
	"outpost.dev/outpost/internal/testenv"
)

// busyHub is a stand-in for a hub that answers the first request to one
// endpoint (desiredstate or report) with code and Retry-After, and every
// other request as an idle hub would: desired-state long-polls run out
// with 304, reports are acknowledged. It records when each request came.
type busyHub struct {
	endpoint   string
	code       int
	retryAfter time.Duration

	mu    sync.Mutex
	times map[string][]time.Time // by endpoint
}

func (h *busyHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	endpoint := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	h.mu.Lock()
	h.times[endpoint] = append(h.times[endpoint], time.Now())
	n := len(h.times[endpoint])
	h.mu.Unlock()
	if endpoint == h.endpoint && n == 1 {
		w.Header().Set("Retry-After", strconv.Itoa(int(h.retryAfter/time.Second)))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(h.code)
		fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"busy","code":%d}`, h.code)
		return
	}
	switch endpoint {
	case "desiredstate":
		secs, _ := strconv.Atoi(r.URL.Query().Get("timeoutSeconds"))
		select {
		case <-time.After(time.Duration(secs) * time.Second):
			w.WriteHeader(http.StatusNotModified)
		case <-r.Context().Done():
		}
	case "report":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"revision":1,"desiredStateRevision":0}`)
	default:
		http.NotFound(w, r)
	}
}

func (h *busyHub) requests(endpoint string) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.times[endpoint]...)
}

// TestBacksOffAsTheHubAsks checks that the agent's poll and report loops
// honour a busy hub's Retry-After: no request to the endpoint before the
// time the hub asked for, even when a change asks for a report meanwhile;
// and a report the hub could not take is sent again then, not only at the
// next periodic report.
func TestBacksOffAsTheHubAsks(t *testing.T) {
	const (
		retryAfter     = 5 * time.Second
		reportInterval = 30 * time.Second
	)
	tests := []struct {
		endpoint string
		code     int
	}{
		{"desiredstate", http.StatusServiceUnavailable},
		{"desiredstate", http.StatusTooManyRequests},
		{"report", http.StatusServiceUnavailable},
		{"report", http.StatusTooManyRequests},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s answered %d", tt.endpoint, tt.code), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hub := &busyHub{endpoint: tt.endpoint, code: tt.code, retryAfter: retryAfter, times: map[string][]time.Time{}}
				client := hubtest.Serve(t, hub)
				a, stop, _ := startAgent(t, Config{
					Dir: t.TempDir(), Hub: hubtest.URL, HTTPClient: client,
					Name: "edge-1", Credential: "opc_test", AgentVersion: "test",
					PollTimeout: 2 * time.Second, ReportInterval: reportInterval,
					RetryBase: 20 * time.Millisecond, RetryMax: time.Minute,
					Logger: slog.New(slog.DiscardHandler),
				})
				defer stop()
				testenv.WaitFor(t, time.Minute, "the busy answer", func() bool { return len(hub.requests(tt.endpoint)) >= 1 })
				// A change wants a report at once.
				a.signal(a.reportNow)
				testenv.WaitFor(t, time.Minute, "a second request", func() bool { return len(hub.requests(tt.endpoint)) >= 2 })
				times := hub.requests(tt.endpoint)
				if gap := times[1].Sub(times[0]); gap < retryAfter || gap >= reportInterval {
					t.Errorf("second request %v after the busy answer, want from %v (Retry-After) to less than %v (the next periodic report)",
						gap, retryAfter, reportInterval)
				}
			})
		})
	}
}

// TestRetryDelayReconnects checks the waits between attempts to reach the
// hub: while it does not answer at all they stop growing at ReconnectMax
// (the agent noticed a hub back up to RetryMax late), while a hub that
// answers with errors or busy keeps the long backoff and its Retry-After.
func TestRetryDelayReconnects(t *testing.T) {
	b := clock.Backoff{Base: time.Second, Max: 2 * time.Minute}
	unreachable := fmt.Errorf("reach hub: %w", syscall.ECONNREFUSED)
	tests := []struct {
		name     string
		err      error
		attempt  int
		min, max time.Duration
	}{
		{"unreachable, first", unreachable, 1, 500 * time.Millisecond, time.Second},
		{"unreachable, long down", unreachable, 30, 5 * time.Second, 10 * time.Second},
		{"hub error, long", &hubclient.Error{Code: http.StatusInternalServerError}, 30, time.Minute, 2 * time.Minute},
		{"busy with Retry-After", &hubclient.Error{Code: http.StatusServiceUnavailable, RetryAfter: 40 * time.Second}, 1, 40 * time.Second, 60 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, u := range []float64{0, 0.5, 0.999} {
				d := retryDelay(tt.err, b, DefaultReconnectMax, tt.attempt, u)
				if d < tt.min || d > tt.max {
					t.Errorf("u=%v: %v, want within [%v, %v]", u, d, tt.min, tt.max)
				}
			}
		})
	}
}
