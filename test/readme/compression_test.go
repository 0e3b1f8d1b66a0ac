package readme

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCompressionDocWalkThrough runs the ```sh block of docs/compression.md as written: an
// example model and data, and a search whose variants within the budget are written.
func TestCompressionDocWalkThrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds outpost and runs a compression search")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(root, "docs", "compression.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := shBlocks(t, string(md))
	if len(blocks) != 1 || blocks[0].notRun != "" {
		t.Fatalf("docs/compression.md has %d sh blocks, want the one walk-through", len(blocks))
	}
	first, rest, _ := strings.Cut(blocks[0].code, "\n")
	if first != buildLine {
		t.Fatalf("the walk-through's first line is %q; this test stands in for %q only", first, buildLine)
	}
	dir := t.TempDir()
	text := runShell(t, root, dir, rest)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^full +none +814584 +1\.000x`),
		regexp.MustCompile(`(?m)^fp16 +float16 +407748 +0\.501x .*\*`),
		regexp.MustCompile(`(?m)^int8 +int8-static +\d+ +0\.25\dx`),
		regexp.MustCompile(`(?m)^student10 +distill `),
		regexp.MustCompile(`\d+ variants within 1 points written to \./variants`),
	} {
		if !want.MatchString(text) {
			t.Errorf("the walk-through's output lacks %s", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "variants", "int8", "model.onnx")); err != nil {
		t.Errorf("the int8 variant was not written: %v", err)
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("output:\n%s", text)
	}
}
