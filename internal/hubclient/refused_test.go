package hubclient

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRefusedWaitsForALateHub sends a request with a body to an address
// where the hub starts listening only later, as after 'outpost hub serve &':
// the request arrives whole once it does.
func TestRefusedWaitsForALateHub(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	got := make(chan string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Method + " " + string(b)
	})}
	t.Cleanup(func() { srv.Close() })
	go func() {
		time.Sleep(300 * time.Millisecond) // the hub starts late: what is tested, not a wait for it
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		srv.Serve(ln)
	}()

	hc := &http.Client{Transport: RetryRefused(http.DefaultTransport, nil, 10*time.Second)}
	resp, err := hc.Post("http://"+addr+"/upload", "text/plain", strings.NewReader("the whole body"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := <-got; s != "POST the whole body" {
		t.Errorf("the hub got %q", s)
	}
}

// TestRefusedGivesUp checks that an address nobody listens on fails with
// the refusal after the wait, and that a body that cannot be read again is
// not sent twice.
func TestRefusedGivesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/"
	ln.Close()
	hc := &http.Client{Transport: RetryRefused(http.DefaultTransport, nil, time.Second)}

	start := time.Now()
	_, err = hc.Get(url)
	if took := time.Since(start); !errors.Is(err, syscall.ECONNREFUSED) || took < 900*time.Millisecond {
		t.Errorf("after %v: %v; want the refusal after about a second of retries", took, err)
	}

	req, _ := http.NewRequest(http.MethodPost, url, io.NopCloser(strings.NewReader("once")))
	start = time.Now()
	_, err = hc.Do(req)
	if took := time.Since(start); !errors.Is(err, syscall.ECONNREFUSED) || took > 500*time.Millisecond {
		t.Errorf("a body without GetBody: after %v: %v; want the refusal at once", took, err)
	}
}
