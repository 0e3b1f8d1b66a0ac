package readme

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/testenv"
)

// shBlock is a ```sh block of a Markdown file.
type shBlock struct {
	code   string
	notRun string // the reason given in a "<!-- not run: ... -->" line just before it, if any
}

// shBlocks returns the ```sh blocks of md, in order.
func shBlocks(t *testing.T, md string) []shBlock {
	t.Helper()
	var blocks []shBlock
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		if lines[i] != "```sh" {
			continue
		}
		var b shBlock
		if i > 0 {
			if r, ok := strings.CutPrefix(lines[i-1], "<!-- not run:"); ok {
				b.notRun = strings.TrimSpace(strings.TrimSuffix(r, "-->"))
				if b.notRun == "" {
					t.Fatalf("line %d: a block not run must say why", i)
				}
			}
		}
		j := i + 1
		for ; j < len(lines) && lines[j] != "```"; j++ {
		}
		if j == len(lines) {
			t.Fatalf("line %d: a ```sh block is not closed", i+1)
		}
		b.code = strings.Join(lines[i+1:j], "\n")
		blocks = append(blocks, b)
		i = j
	}
	return blocks
}

// TestServingDocExamples runs every ```sh block of docs/serving.md, in
// order, in one shell, as written; a block marked "not run" must say why.
func TestServingDocExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds outpost and serves a model")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(root, "docs", "serving.md"))
	if err != nil {
		t.Fatal(err)
	}
	var script []string
	for _, b := range shBlocks(t, string(md)) {
		if b.notRun != "" {
			t.Logf("not run (%s):\n%s", b.notRun, b.code)
			continue
		}
		script = append(script, b.code)
	}
	if len(script) < 5 {
		t.Fatalf("only %d blocks of docs/serving.md run", len(script))
	}
	testenv.TakeFixedPorts(t)
	for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:8081"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("docs/serving.md's examples serve on 8080 and 8081, and %s is taken here: %v", addr, err)
		}
		ln.Close()
	}
	dir := t.TempDir()
	text := runShell(t, root, dir, strings.Join(script, "\n"))
	for _, want := range []string{
		`"inputs":[{"name":"input","datatype":"FP32","shape":[-1,784]}]`, // metadata
		`"model_name":"fashion","model_version":"local","id":"42"`,       // curl infer
		"argmax 9 (", // outpost infer: test image 0 is class 9
		`outpost_inference_requests_total{code="200",deployment="fashion",protocol="rest",version="local"}`, // metrics
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the examples' output lacks %q", want)
		}
	}
	// The binary request's answer: a JSON header, then the 10 float32 probabilities.
	if b, err := os.ReadFile(filepath.Join(dir, "response.bin")); err != nil || !strings.Contains(string(b), `"binary_data_size":40`) {
		t.Errorf("response.bin (err %v) holds no binary output of 40 bytes: %.200q", err, b)
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("output:\n%s", text)
	}
}
