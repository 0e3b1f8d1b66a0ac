package cli

import (
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/serving"
)

func TestServingModels(t *testing.T) {
	port := int32(9001)
	tests := []struct {
		name   string
		active []agent.ActiveModel
		want   []serving.Model
		full   bool // every field of want[0] is set
	}{
		{name: "none", active: nil, want: []serving.Model{}},
		{
			name: "every field",
			active: []agent.ActiveModel{{
				Deployment: "fraud", Model: "fraud-mlp", Version: "2.1.0", Digest: "sha256:2",
				Files:       map[string]string{"model.onnx": "/cache/blobs/sha256/aa"},
				Serving:     v1alpha1.Serving{Runtime: v1alpha1.RuntimeONNXRuntime, Port: &port},
				Monitoring:  &v1alpha1.Monitoring{WindowSamples: 500},
				Reference:   "/cache/blobs/sha256/bb",
				ActivatedAt: time.Unix(1, 0),
			}, {Deployment: "fashion", Model: "fashion-mlp", Version: "1.0.0", Digest: "sha256:1"}},
			want: []serving.Model{{
				Deployment: "fraud", Model: "fraud-mlp", Version: "2.1.0", Digest: "sha256:2",
				Files:      map[string]string{"model.onnx": "/cache/blobs/sha256/aa"},
				Serving:    v1alpha1.Serving{Runtime: v1alpha1.RuntimeONNXRuntime, Port: &port},
				Monitoring: &v1alpha1.Monitoring{WindowSamples: 500},
				Reference:  "/cache/blobs/sha256/bb",
			}, {Deployment: "fashion", Model: "fashion-mlp", Version: "1.0.0", Digest: "sha256:1"}},
			full: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := servingModels(tt.active)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("servingModels = %+v, want %+v", got, tt.want)
			}
			if !tt.full {
				return
			}
			// A field added to serving.Model must be filled from the agent's too.
			v := reflect.ValueOf(got[0])
			for i := range v.NumField() {
				if v.Field(i).IsZero() {
					t.Errorf("serving.Model.%s is not set from the agent's active model", v.Type().Field(i).Name)
				}
			}
		})
	}
}

// TestAgentServingLimits checks that the agent refuses serving limits that
// are not sizes, or that could never serve a request of the largest size,
// before it does anything else.
func TestAgentServingLimits(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"request size", []string{"--max-request-bytes", "lots"}, `--max-request-bytes "lots": want a size such as 64MiB`},
		{"budget size", []string{"--max-inflight-bytes", "lots"}, `--max-inflight-bytes "lots": want a size such as 256MiB`},
		{"budget below the request size", []string{"--max-inflight-bytes", "1MiB"},
			"--max-inflight-bytes 1MiB is less than --max-request-bytes 64MiB"},
		{"budget below a given request size", []string{"--max-request-bytes", "2MiB", "--max-inflight-bytes", "1MiB"},
			"--max-inflight-bytes 1MiB is less than --max-request-bytes 2MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, errOut, code := runCLI(t, append([]string{"agent", "--data", dir, "--serve", "", "--hub", "https://127.0.0.1:1"}, tt.args...)...)
			if code == 0 || !strings.Contains(errOut, tt.want) {
				t.Errorf("agent %v = %d, stderr %q, want an error with %q", tt.args, code, errOut, tt.want)
			}
		})
	}
}

func TestTransferText(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	at := func(h int) *metav1.Time { return &metav1.Time{Time: now.Add(time.Duration(h) * time.Hour)} }
	tests := []struct {
		ts   v1alpha1.TransferStatus
		want string
	}{
		{v1alpha1.TransferStatus{Open: true}, "open"},
		{v1alpha1.TransferStatus{Open: true, BandwidthBps: 1 << 20, NextChange: at(2)}, "open, at most 1.0 MiB/s; closes 2026-03-02T14:00:00Z (in 2h0m0s)"},
		{v1alpha1.TransferStatus{NextChange: at(10), Waiting: []string{"a", "b"}, WaitingBytes: 3 << 20},
			"closed; opens 2026-03-02T22:00:00Z (in 10h0m0s); waiting: a, b (3.0 MiB)"},
	}
	for _, tt := range tests {
		if got := transferText(&tt.ts, now); got != tt.want {
			t.Errorf("transferText = %q, want %q", got, tt.want)
		}
	}
}
