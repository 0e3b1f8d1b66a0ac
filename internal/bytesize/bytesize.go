// Package bytesize formats byte counts for people: 512 B, 3.7 MiB, 1.0 GiB.
package bytesize

import "fmt"

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
