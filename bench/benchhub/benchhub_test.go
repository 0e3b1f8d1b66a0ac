package benchhub

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1024", 1024, false},
		{"1GiB", 1 << 30, false},
		{"64MiB", 64 << 20, false},
		{"1.5MiB", 3 << 19, false},
		{"512KiB", 512 << 10, false},
		{"10B", 10, false},
		{" 2MiB", 2 << 20, false},
		{"1e3", 1000, false},
		{"1.5", 1, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"0", 0, true},
		{"-1MiB", 0, true},
		{"0.5", 0, true},
		{"64MB", 0, true}, // not 64 bytes
		{"12abc", 0, true},
		{"1 MiB extra", 0, true},
		{"2mib", 0, true},
		{"NaN", 0, true},
		{"Inf", 0, true},
		{"1e30GiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "want a positive number") {
					t.Errorf("ParseSize(%q) = %d, %v; want an error", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

// FormatSize is the inverse of ParseSize, to one decimal.
func TestFormatSizeRoundTrip(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{512, "512 B"},
		{1 << 10, "1.0 KiB"},
		{3 << 19, "1.5 MiB"},
		{5 << 30, "5.0 GiB"},
	}
	for _, tt := range tests {
		got := FormatSize(tt.n)
		if got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
		if back, err := ParseSize(strings.ReplaceAll(got, " ", "")); err != nil || back != tt.n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", tt.n, back, err)
		}
	}
}
