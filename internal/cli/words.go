package cli

import "fmt"

// plural is n and noun, with an s unless n is 1: "1 file", "3 files".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
