package clock

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"
)

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestFakeTimersFireInOrder(t *testing.T) {
	f := NewFake(epoch)
	a, b := f.NewTimer(2*time.Second), f.NewTimer(time.Second)
	stopped := f.NewTimer(time.Second)
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop of a pending timer: want true once, then false")
	}
	f.Advance(999 * time.Millisecond)
	select {
	case <-b.C():
		t.Fatal("timer fired before its deadline")
	default:
	}
	f.Advance(time.Millisecond)
	if got := <-b.C(); !got.Equal(epoch.Add(time.Second)) {
		t.Errorf("b fired with %v, want its deadline", got)
	}
	f.Advance(5 * time.Second)
	if got := <-a.C(); !got.Equal(epoch.Add(2 * time.Second)) {
		t.Errorf("a fired with %v, want its deadline", got)
	}
	if !f.Now().Equal(epoch.Add(6 * time.Second)) {
		t.Errorf("Now = %v after advancing 6s", f.Now())
	}
	select {
	case <-stopped.C():
		t.Error("a stopped timer fired")
	default:
	}
	if f.Pending() != 0 {
		t.Errorf("%d timers pending after all fired", f.Pending())
	}
	if a.Reset(time.Second) {
		t.Error("Reset of a fired timer reports it pending")
	}
	f.Advance(time.Second)
	if got := <-a.C(); !got.Equal(epoch.Add(7 * time.Second)) {
		t.Errorf("reset timer fired with %v", got)
	}
}

func TestFakeTickerDropsUnreadTicks(t *testing.T) {
	f := NewFake(epoch)
	tk := f.NewTicker(time.Second)
	f.Advance(3500 * time.Millisecond)
	if got := <-tk.C(); !got.Equal(epoch.Add(time.Second)) {
		t.Errorf("first tick %v, want the first deadline (later ones dropped while unread)", got)
	}
	f.Advance(500 * time.Millisecond)
	if got := <-tk.C(); !got.Equal(epoch.Add(4 * time.Second)) {
		t.Errorf("tick %v, want 4s", got)
	}
	tk.Stop()
	f.Advance(time.Hour)
	select {
	case <-tk.C():
		t.Error("a stopped ticker ticked")
	default:
	}
}

func TestSleepOnFake(t *testing.T) {
	f := NewFake(epoch)
	done := make(chan bool)
	go func() { done <- Sleep(context.Background(), f, time.Minute) }()
	if err := f.WaitPending(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	f.Advance(time.Minute)
	if !<-done {
		t.Error("Sleep reported the context ended")
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- Sleep(ctx, f, time.Minute) }()
	if err := f.WaitPending(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if <-done {
		t.Error("Sleep reported d elapsed after its context ended")
	}
}

// Real inside a synctest bubble runs on the bubble's fake time.
func TestRealInBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := Real()
		start := c.Now()
		if !Sleep(t.Context(), c, time.Hour) {
			t.Fatal("Sleep failed")
		}
		if d := Since(c, start); d != time.Hour {
			t.Errorf("slept %v, want 1h", d)
		}
	})
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}
	tests := []struct {
		attempt int
		u       float64
		want    time.Duration
	}{
		{1, 0, 50 * time.Millisecond},
		{1, 0.999999, 99999950 * time.Nanosecond},
		{2, 0, 100 * time.Millisecond},
		{3, 0.5, 300 * time.Millisecond},
		{7, 0, 2500 * time.Millisecond}, // 6.4s capped at 5s
		{50, 0, 2500 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := b.Delay(tt.attempt, tt.u); got != tt.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", tt.attempt, tt.u, got, tt.want)
		}
	}
}

func TestWaitNOnFake(t *testing.T) {
	f := NewFake(epoch)
	lim := rate.NewLimiter(10, 10)
	ctx := t.Context()
	if err := WaitN(ctx, f, lim, 10); err != nil || f.Pending() != 0 {
		t.Fatalf("WaitN of the burst: %v, %d timers pending", err, f.Pending())
	}
	if err := WaitN(ctx, f, lim, 11); err == nil || !strings.Contains(err.Error(), "exceeds limiter's burst") {
		t.Errorf("WaitN above the burst = %v", err)
	}
	if err := WaitN(ctx, f, rate.NewLimiter(rate.Inf, 0), 1<<30); err != nil {
		t.Errorf("WaitN on an unlimited limiter = %v", err)
	}

	// 5 more tokens at 10/s: half a second of fake time.
	done := make(chan error, 1)
	go func() { done <- WaitN(ctx, f, lim, 5) }()
	if err := f.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.Advance(499 * time.Millisecond)
	if f.Pending() != 1 {
		t.Fatal("WaitN's timer fired before the tokens were due")
	}
	f.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A cancelled wait gives its tokens back: the next 10 take 1s, not 2s.
	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- WaitN(cctx, f, lim, 10) }()
	if err := f.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled WaitN = %v", err)
	}
	go func() { done <- WaitN(ctx, f, lim, 10) }()
	if err := f.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.Advance(999 * time.Millisecond)
	if f.Pending() != 1 {
		t.Fatal("WaitN after a cancelled wait returned early")
	}
	f.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// WaitN refuses at once a wait that would outlast ctx's deadline, as
// rate.Limiter.WaitN does, and keeps no tokens for it.
func TestWaitNDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := Real()
		lim := rate.NewLimiter(10, 10)
		if err := WaitN(t.Context(), c, lim, 10); err != nil {
			t.Fatal(err)
		}
		start := c.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if err := WaitN(ctx, c, lim, 5); err == nil || !strings.Contains(err.Error(), "would exceed context deadline") {
			t.Errorf("WaitN past the deadline = %v", err)
		}
		if err := WaitN(t.Context(), c, lim, 5); err != nil {
			t.Fatal(err)
		}
		if d := Since(c, start); d != 500*time.Millisecond {
			t.Errorf("5 tokens at 10/s after a refused wait took %v, want 500ms", d)
		}
	})
}
