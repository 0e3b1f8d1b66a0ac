package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// plural is n and noun, with an s unless n is 1: "1 file", "3 files".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// newTable returns the writer of the command line's tables: columns
// aligned with two spaces between them. Flush it when done.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}
