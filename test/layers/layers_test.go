// Package layers checks that imports point down (docs/design.md, "Layers"):
// runtimes need nothing of serving or the agent, serving nothing of the
// agent, bottom packages nothing above them.
package layers

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "outpost.dev/outpost/"

// deps returns each package of the module with the module's packages it
// depends on, directly or not.
func deps(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		var ours []string
		for _, d := range f[1:] {
			if strings.HasPrefix(d, module) {
				ours = append(ours, strings.TrimPrefix(d, module))
			}
		}
		m[strings.TrimPrefix(f[0], module)] = ours
	}
	return m
}

func TestImportsPointDown(t *testing.T) {
	all := deps(t)
	// only: the package may depend on these of ours and nothing else.
	only := map[string][]string{
		"internal/clock":         nil,
		"internal/tlsgate":       {"internal/clock"},
		"internal/connlimit":     {"internal/clock"},
		"internal/bytesize":      nil,
		"internal/window":        {"internal/bytesize"},
		"internal/durable":       nil,
		"internal/versions":      nil,
		"internal/onnx/onnxpb":   nil,
		"internal/onnx/interp":   {"internal/onnx/onnxpb"},
		"internal/onnx/engine":   {"internal/onnx/interp", "internal/onnx/onnxpb"},
		"internal/onnx/ort":      {"internal/onnx/engine", "internal/onnx/interp", "internal/onnx/onnxpb"},
		"internal/compress":      {"internal/onnx", "internal/onnx/interp", "internal/onnx/onnxpb", "internal/train"},
		"internal/pipeline/cond": nil,
		"internal/schedule":      nil,
		"internal/sqlfile":       nil,
		"api/v1alpha1":           {"internal/bytesize", "internal/versions", "internal/pipeline/cond", "internal/window"},
		"internal/hubclient":     {"api/v1alpha1", "internal/clock", "internal/bytesize", "internal/versions", "internal/pipeline/cond", "internal/window"},
		"internal/variant":       {"internal/bytesize"},
		"internal/placement":     {"api/v1alpha1", "internal/bytesize", "internal/versions", "internal/pipeline/cond", "internal/window", "internal/variant"},
		"internal/serving/oippb": nil,
		"internal/outbox":        {"internal/clock"},
		"internal/drift":         nil,
		"internal/rollout":       {"api/v1alpha1", "internal/bytesize", "internal/versions", "internal/pipeline/cond", "internal/window"},
		"internal/chaos":         nil,
	}
	for pkg, allowed := range only {
		got, ok := all[pkg]
		if !ok {
			t.Errorf("%s: no such package", pkg)
			continue
		}
		for _, d := range got {
			if !slices.Contains(allowed, d) {
				t.Errorf("%s depends on %s; it may depend only on %v", pkg, d, allowed)
			}
		}
	}
	// never: the package must not depend on these (nor anything under them).
	never := map[string][]string{
		"internal/serving":          {"internal/agent", "internal/hub", "internal/store", "internal/registry", "internal/hubclient", "internal/cli"},
		"internal/serving/endpoint": {"internal/agent", "internal/hub", "internal/store", "internal/registry", "internal/hubclient", "internal/cli"},
		// The agent trains for federated learning (internal/fl, internal/train), and training reads
		// and writes ONNX through internal/onnx; it never links ONNX Runtime nor serving.
		"internal/agent":    {"internal/serving", "internal/onnx/ort", "internal/hub", "internal/store", "internal/registry", "internal/cli"},
		"internal/hub":      {"internal/agent", "internal/hubclient", "internal/serving", "internal/cli", "internal/compress"},
		"internal/store":    {"internal/hub", "internal/agent", "internal/registry", "internal/cli"},
		"internal/pipeline": {"internal/agent", "internal/hub", "internal/hubclient", "internal/serving", "internal/store", "internal/cli"},
	}
	for pkg, banned := range never {
		for _, d := range all[pkg] {
			for _, b := range banned {
				if d == b || strings.HasPrefix(d, b+"/") {
					t.Errorf("%s depends on %s", pkg, d)
				}
			}
		}
	}
	for pkg, ds := range all {
		if pkg != "cmd/outpost" && slices.Contains(ds, "internal/cli") {
			t.Errorf("%s depends on internal/cli, the top of the tree", pkg)
		}
	}
}
