package agent

import (
	"log/slog"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
)

// TestFacts: the facts a variant policy reads of the agent's cluster are
// the numbers its report carries, the declared memory over the measured.
func TestFacts(t *testing.T) {
	for _, tt := range []struct {
		name     string
		declared int64
	}{
		{"measured", 0},
		{"declared", 16 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(t.Context(), Config{Dir: t.TempDir(), Name: "edge-1", Logger: slog.New(slog.DiscardHandler),
				Memory: tt.declared, Accelerators: []v1alpha1.Accelerator{{Type: "nvidia.com/gpu", Count: 2}}})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			a.link.observeTransfer(4<<20, time.Second) // 4 MiB in a second
			rep, err := a.Report(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			f := a.Facts()
			capa := rep.Status.Capacity
			if capa.Memory == nil || f.MemoryBytes != capa.Memory.Value() || f.MemoryBytes <= 0 {
				t.Errorf("memory %d, the report's %v", f.MemoryBytes, capa.Memory)
			}
			if tt.declared > 0 && f.MemoryBytes != tt.declared {
				t.Errorf("memory %d, want the declared %d", f.MemoryBytes, tt.declared)
			}
			if capa.CPU == nil || f.CPUMillis != capa.CPU.MilliValue() || f.Accelerators != 2 {
				t.Errorf("cpu %d accelerators %d, the report's %v %v", f.CPUMillis, f.Accelerators, capa.CPU, capa.Accelerators)
			}
			if f.LinkBps != rep.Status.Link.BandwidthBps || f.LinkBps <= 0 {
				t.Errorf("link %d B/s, the report's %d", f.LinkBps, rep.Status.Link.BandwidthBps)
			}
		})
	}
}
