// Package bytesize formats byte counts for people: 512 B, 3.7 MiB, 1.0 GiB.
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// Format renders n bytes in binary units with one decimal, or in bytes
// below 1 KiB.
func Format(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ParseRate parses a byte rate such as "10MiB", "500KB", "1.5MB/s" or
// "1000" (bytes). "" means unlimited and gives 0.
func ParseRate(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	if t == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || !(v > 0) || v*mult > 1<<50 || v*mult < 1 {
		return 0, fmt.Errorf("bandwidth %q: want a positive rate such as 10MiB or 500KB", s)
	}
	return int64(v * mult), nil
}
