package readme

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/testenv"
)

// TestFederatedDocWalkThrough runs every ```sh block of docs/federated.md, in order, in one
// shell, as written: a hub, three agents with their own data, a federated job to its end, and
// a deployment of its model.
func TestFederatedDocWalkThrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds outpost and runs a hub, three agents and a federated job")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(root, "docs", "federated.md"))
	if err != nil {
		t.Fatal(err)
	}
	var script []string
	for i, b := range shBlocks(t, string(md)) {
		if b.notRun != "" {
			t.Logf("not run (%s):\n%s", b.notRun, b.code)
			continue
		}
		code := b.code
		if i == 0 {
			first, rest, _ := strings.Cut(code, "\n")
			if first != buildLine {
				t.Fatalf("the walk-through's first line is %q; this test stands in for %q only", first, buildLine)
			}
			code = rest
		}
		script = append(script, code)
	}
	if len(script) < 3 {
		t.Fatalf("only %d blocks of docs/federated.md run", len(script))
	}
	testenv.TakeFixedPorts(t)
	ln, err := net.Listen("tcp", "127.0.0.1:8443")
	if err != nil {
		t.Skipf("the walk-through's hub listens on 127.0.0.1:8443, which is taken here: %v", err)
	}
	ln.Close()
	text := runShell(t, root, t.TempDir(), strings.Join(script, "\n"))
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`wrote shard 3 of 3 to \./site-c/data/fmnist: \d+ images`),
		regexp.MustCompile(`Phase: +Succeeded`),
		regexp.MustCompile(`Model: +fmnist-fl@0\.3\.0`),
		regexp.MustCompile(`(?m)^3 +3 +0 +0\.\d+ +0\.\d+ +.+ +0\.3\.0$`), // round 3: three participants
		regexp.MustCompile(`(?m)^site-c +3 +3 +`),
		regexp.MustCompile(`(?m)^fmnist-fl +FedProx +Succeeded +3/3 `), // outpost get federatedjobs
		regexp.MustCompile(`fmnist-fl 0\.3\.0: Active on 3 of 3 clusters`),
		regexp.MustCompile(`a FederatedJob of spec\.model\.arch cnn can start from it`),
		// The CNN job: two rounds, the second with three participants.
		regexp.MustCompile(`(?m)^Job: +fmnist-cnn-fl\nStrategy: +FedAvg.*\nPhase: +Succeeded\nRounds: +2 of 2\nModel: +fmnist-cnn-fl@0\.2\.0$`),
		regexp.MustCompile(`(?s)Job: +fmnist-cnn-fl\n.*?\n2 +3 +0 +0\.\d+ +0\.\d+ +[^\n]+ +0\.2\.0\n`),
	} {
		if !want.MatchString(text) {
			t.Errorf("the walk-through's output lacks %s", want)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("output:\n%s", text)
	}
}
