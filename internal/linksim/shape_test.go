package linksim

import (
	"bytes"
	"testing"
	"time"
)

func TestCorrupterApply(t *testing.T) {
	tests := []struct {
		name   string
		every  int64
		chunks []int // sizes fed in order
		want   []int // stream offsets expected to differ
	}{
		{"off", 0, []int{100}, nil},
		{"every byte", 1, []int{3, 2}, []int{0, 1, 2, 3, 4}},
		{"every 4 one chunk", 4, []int{10}, []int{3, 7}},
		{"every 4 split chunks", 4, []int{2, 3, 1, 6}, []int{3, 7, 11}},
		{"every 5 empty chunk", 5, []int{0, 5, 0, 5}, []int{4, 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := corrupter{every: tt.every}
			var got []byte
			var flipped int64
			for _, n := range tt.chunks {
				b := make([]byte, n)
				flipped += c.apply(b)
				got = append(got, b...)
			}
			var diff []int
			for i, v := range got {
				if v != 0 {
					if v&(v-1) != 0 {
						t.Errorf("byte %d = %08b, want exactly one bit flipped", i, v)
					}
					diff = append(diff, i)
				}
			}
			if !equalInts(diff, tt.want) {
				t.Errorf("corrupted offsets %v, want %v", diff, tt.want)
			}
			if flipped != int64(len(tt.want)) {
				t.Errorf("apply counted %d, want %d", flipped, len(tt.want))
			}
		})
	}
}

func TestCorrupterVariesBit(t *testing.T) {
	c := corrupter{every: 1}
	b := make([]byte, 8)
	c.apply(b)
	if !bytes.Equal(b, []byte{1, 2, 4, 8, 16, 32, 64, 128}) {
		t.Errorf("flipped bits %v, want each bit once", b)
	}
}

func TestCutterTake(t *testing.T) {
	tests := []struct {
		name     string
		left     int64
		chunks   []int
		wantKeep []int
		wantCut  int // index of the chunk after which the cut fires, -1 none
	}{
		{"disarmed", -1, []int{10, 10}, []int{10, 10}, -1},
		{"exact chunk", 10, []int{4, 6, 5}, []int{4, 6, 5}, 1},
		{"mid chunk", 7, []int{4, 6, 5}, []int{4, 3, 5}, 1},
		{"one shot", 3, []int{5, 5}, []int{3, 5}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cutter{left: tt.left}
			cutAt := -1
			for i, n := range tt.chunks {
				keep, cut := c.take(n)
				if keep != tt.wantKeep[i] {
					t.Errorf("chunk %d: keep %d, want %d", i, keep, tt.wantKeep[i])
				}
				if cut {
					if cutAt >= 0 {
						t.Errorf("cut fired again at chunk %d", i)
					}
					cutAt = i
				}
			}
			if cutAt != tt.wantCut {
				t.Errorf("cut fired after chunk %d, want %d", cutAt, tt.wantCut)
			}
		})
	}
}

func TestPacerReserve(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name string
		rate int64
		ops  []reservation
		want []time.Duration
	}{
		{"unlimited", 0, []reservation{{1 << 20, 0}}, []time.Duration{0}},
		{"one chunk", 1000, []reservation{{500, 0}}, []time.Duration{500 * time.Millisecond}},
		{"queued behind earlier", 1000, []reservation{{500, 0}, {500, 0}, {250, 100 * time.Millisecond}},
			[]time.Duration{500 * time.Millisecond, time.Second, 1150 * time.Millisecond}},
		{"a short gap is credited", 1000, []reservation{{100, 0}, {100, 130 * time.Millisecond}},
			[]time.Duration{100 * time.Millisecond, 70 * time.Millisecond}},
		{"credit covers a small chunk", 1000, []reservation{{100, 0}, {20, 150 * time.Millisecond}},
			[]time.Duration{100 * time.Millisecond, 0}},
		{"long idle earns one slack of credit", 1000, []reservation{{100, 0}, {100, 10 * time.Second}},
			[]time.Duration{100 * time.Millisecond, 100*time.Millisecond - slack}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p pacer
			p.setRate(tt.rate)
			for i, op := range tt.ops {
				if got := p.reserve(op.n, t0.Add(op.at)); got != tt.want[i] {
					t.Errorf("reserve %d: wait %v, want %v", i, got, tt.want[i])
				}
			}
		})
	}
}

func TestPacerRateChangeStartsAfresh(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var p pacer
	p.setRate(1)
	p.reserve(1000, t0) // booked until t0+1000s
	p.setRate(1000)
	if got := p.reserve(100, t0); got != 100*time.Millisecond {
		t.Errorf("after a rate change: wait %v, want 100ms", got)
	}
}

func TestPacerChunkSize(t *testing.T) {
	tests := []struct {
		rate int64
		buf  int
		want int
	}{
		{0, 32 << 10, 32 << 10},
		{1 << 20, 32 << 10, 32 << 10},
		{16 << 10, 32 << 10, 1 << 10},
		{100, 32 << 10, 256},
		{100, 100, 100},
	}
	for _, tt := range tests {
		var p pacer
		p.setRate(tt.rate)
		if got := p.chunkSize(tt.buf); got != tt.want {
			t.Errorf("rate %d buf %d: chunk %d, want %d", tt.rate, tt.buf, got, tt.want)
		}
	}
}

// reservation is one call to pacer.reserve: n bytes at t0+at.
type reservation struct {
	n  int
	at time.Duration
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
