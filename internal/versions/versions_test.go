package versions

import (
	"errors"
	"slices"
	"testing"
)

func TestResolve(t *testing.T) {
	avail := []string{"1.0.0", "1.2.0", "1.2.5", "1.3.0-rc.1", "1.10.0", "2.0.0", "2.1.0-beta.1", "latest", "v3.0.0", "1.4"}
	tests := []struct {
		constraint string
		want       string
		wantErr    error
	}{
		{"1.2.0", "1.2.0", nil},
		{"=1.2.5", "1.2.5", nil},
		{"1.3.0-rc.1", "1.3.0-rc.1", nil},
		{">=1.2 <2", "1.10.0", nil},
		{"^1.2", "1.10.0", nil},
		{"~1.2.3", "1.2.5", nil},
		{"~1.2", "1.2.5", nil},
		{"1.x", "1.10.0", nil},
		{"*", "2.0.0", nil},
		{">=2.1.0-0", "2.1.0-beta.1", nil},
		{">=1.3.0-rc.0 <1.4", "1.3.0-rc.1", nil},
		{">1.10.0 <2", "", ErrNoMatch},
		{"1.2.1", "", ErrNoMatch},
		{"3.x", "", ErrNoMatch},
		{"4.0.0", "", ErrNoMatch},
		{">=1.0 || >=2.0", "2.0.0", nil},
	}
	for _, tt := range tests {
		t.Run(tt.constraint, func(t *testing.T) {
			got, err := Resolve(tt.constraint, avail)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Resolve(%q) error = %v, want %v", tt.constraint, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Resolve(%q) = %q, %v; want %q", tt.constraint, got, err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		constraint string
		ok         bool
	}{
		{"1.2.3", true},
		{"=1.2.3", true},
		{"1.2.3-rc.1", true},
		{">=1.2 <2", true},
		{"^1.2", true},
		{"~1.2.3", true},
		{"1.x", true},
		{">=1.0, <2.0", true},
		{"", false},
		{"   ", false},
		{"1.x.y", false},
		{"banana", false},
		{">>1", false},
		{string(make([]byte, 300)), false},
	}
	for _, tt := range tests {
		err := Validate(tt.constraint)
		if (err == nil) != tt.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tt.constraint, err, tt.ok)
		}
	}
}

func TestIsExact(t *testing.T) {
	tests := map[string]bool{
		"1.2.3": true, "=1.2.3": true, "1.2.3-rc.1": true,
		"1.2": false, "^1.2.3": false, ">=1.2.3": false, "1.x": false, "v1.2.3": false, "": false,
	}
	for c, want := range tests {
		if got := IsExact(c); got != want {
			t.Errorf("IsExact(%q) = %v, want %v", c, got, want)
		}
	}
}

func TestParseAndCompare(t *testing.T) {
	for _, bad := range []string{"1.2", "v1.2.3", "01.2.3", "1.2.3.4", ""} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", bad)
		}
	}
	tests := []struct {
		a, b string
		want int
	}{
		{"1.2.3", "1.2.3", 0},
		{"1.2.3", "1.10.0", -1},
		{"2.0.0", "1.99.99", 1},
		{"1.0.0-rc.1", "1.0.0", -1},
		{"1.0.0-alpha", "1.0.0-beta", -1},
	}
	for _, tt := range tests {
		got, err := Compare(tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("Compare(%q, %q) = %d, %v; want %d", tt.a, tt.b, got, err, tt.want)
		}
	}
	if _, err := Compare("1.2", "1.2.3"); err == nil {
		t.Error("Compare with an invalid version succeeded")
	}
	got := Sort([]string{"1.10.0", "latest", "1.2.0", "1.2.0-rc.1", "0.9.0"})
	want := []string{"0.9.0", "1.2.0-rc.1", "1.2.0", "1.10.0"}
	if !slices.Equal(got, want) {
		t.Errorf("Sort = %v, want %v", got, want)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		c, v string
		want bool
	}{
		{"^1.2", "1.5.0", true},
		{"^1.2", "2.0.0", false},
		{"^1.2", "1.5.0-rc.1", false},
		{"1.5.0-rc.1", "1.5.0-rc.1", true},
	}
	for _, tt := range tests {
		got, err := Match(tt.c, tt.v)
		if err != nil || got != tt.want {
			t.Errorf("Match(%q, %q) = %v, %v; want %v", tt.c, tt.v, got, err, tt.want)
		}
	}
}

func FuzzResolve(f *testing.F) {
	for _, s := range []string{"1.2.3", ">=1.2 <2", "^1.2", "~1.2.3", "1.x", "1.x.y", "||", ">=1.0.0-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, c string) {
		got, err := Resolve(c, []string{"1.0.0", "1.2.3", "2.0.0-rc.1", "2.0.0"})
		if err != nil {
			return
		}
		if Validate(c) != nil {
			t.Fatalf("Resolve(%q) = %q but Validate fails", c, got)
		}
		if _, err := Parse(got); err != nil {
			t.Fatalf("Resolve(%q) returned invalid version %q", c, got)
		}
	})
}
