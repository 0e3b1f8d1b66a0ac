package serving

import (
	"fmt"
	"testing"
	"time"
)

func TestHealthSnapshot(t *testing.T) {
	var h health
	for i := range 1000 {
		d := 10 * time.Millisecond
		if i%100 == 0 {
			d = 300 * time.Millisecond // 1% slow: the p99 is still the fast bucket
		}
		h.observe(d, nil)
	}
	h.observe(10*time.Millisecond, fmt.Errorf("inference failed"))
	h.observe(10*time.Millisecond, &RequestError{Msg: "bad input"})
	h.observe(10*time.Millisecond, errCanceled)
	s := h.snapshot("1.0.0")
	if s.Requests != 1003 || s.Errors != 1 {
		t.Errorf("requests %d errors %d, want 1003 and 1 (input and cancelled requests are not the model's)", s.Requests, s.Errors)
	}
	if s.P99 < 10*time.Millisecond || s.P99 > 11*time.Millisecond {
		t.Errorf("p99 %v, want 10ms to within a tenth", s.P99)
	}
	var slow health
	for range 100 {
		slow.observe(40*time.Millisecond, nil)
	}
	if p := slow.snapshot("2.0.0").P99; p < 40*time.Millisecond || p > 44*time.Millisecond {
		t.Errorf("slow p99 %v, want 40ms to within a tenth", p)
	}
	if (&health{}).snapshot("x").P99 != 0 {
		t.Error("p99 of no request")
	}
}
