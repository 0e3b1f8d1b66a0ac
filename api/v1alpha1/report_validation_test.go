package v1alpha1

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestJoinTokenRequestValidate(t *testing.T) {
	tests := []struct {
		name    string
		ttl     int64
		wantErr string
	}{
		{"default", 0, ""},
		{"an hour", 3600, ""},
		{"the longest duration", MaxJoinTokenTTLSeconds, ""},
		{"negative", -1, "must be non-negative"},
		{"a second past the longest duration", MaxJoinTokenTTLSeconds + 1, "must be at most 9223372036"},
		{"the largest integer", math.MaxInt64, "must be at most 9223372036"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&JoinTokenRequest{TTLSeconds: tt.ttl}).Validate()
			if (err != nil) != (tt.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzJoinTokenRequest: whatever a valid request asks for is a TTL the hub
// can turn into a duration without wrapping around.
func FuzzJoinTokenRequest(f *testing.F) {
	f.Add([]byte(`{"kind":"JoinTokenRequest","ttlSeconds":3600,"description":"north"}`))
	f.Add([]byte(`{"ttlSeconds":9223372036854775807}`))
	f.Add([]byte(`{"ttlSeconds":9223372037}`))
	f.Add([]byte(`{"ttlSeconds":-1}`))
	f.Add([]byte(`{"ttlSeconds":1e3}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var r JoinTokenRequest
		if json.Unmarshal(body, &r) != nil || r.Validate() != nil {
			return
		}
		if d := time.Duration(r.TTLSeconds) * time.Second; r.TTLSeconds < 0 || d < 0 || d/time.Second != time.Duration(r.TTLSeconds) {
			t.Fatalf("accepted ttlSeconds %d, which is no duration", r.TTLSeconds)
		}
	})
}

// TestReportEndpoints checks the serving endpoints an agent may report:
// an http(s) URL and a host:port, or nothing.
func TestReportEndpoints(t *testing.T) {
	tests := []struct {
		name      string
		endpoints *ServingEndpoints
		wantErr   string
	}{
		{"none", nil, ""},
		{"both", &ServingEndpoints{REST: "http://10.0.0.7:8080", GRPC: "10.0.0.7:8081"}, ""},
		{"https and IPv6", &ServingEndpoints{REST: "https://[fd00::7]:8443", GRPC: "[fd00::7]:8081"}, ""},
		{"REST only", &ServingEndpoints{REST: "http://edge-1:8080"}, ""},
		{"no scheme", &ServingEndpoints{REST: "10.0.0.7:8080"}, "status.endpoints.rest: Invalid value"},
		{"another scheme", &ServingEndpoints{REST: "ftp://10.0.0.7"}, "must be an http or https URL"},
		{"query", &ServingEndpoints{REST: "http://10.0.0.7:8080?x=1"}, "must be an http or https URL"},
		{"gRPC without port", &ServingEndpoints{GRPC: "10.0.0.7"}, "status.endpoints.grpc: Invalid value"},
		{"gRPC as a URL", &ServingEndpoints{GRPC: "grpc://10.0.0.7:8081"}, "must be host:port"},
		{"too long", &ServingEndpoints{REST: "http://" + strings.Repeat("a", 2048)}, "status.endpoints.rest: Too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &AgentReport{Cluster: "edge-1", Status: ClusterStatus{Endpoints: tt.endpoints}}
			err := r.Validate()
			if (err != nil) != (tt.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
