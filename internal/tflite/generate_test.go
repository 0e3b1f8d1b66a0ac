package tflite

import (
	"bytes"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/testenv"
)

// The committed Go code of the schema is what `make generate-tflite` makes
// of schema/tflite.fbs, and flatc's version is the runtime's in go.mod.
func TestGeneratedSchemaIsCurrent(t *testing.T) {
	flatc, err := exec.LookPath("flatc")
	if err != nil {
		testenv.MissingPeer(t, "flatc not found (Debian flatbuffers-compiler; scripts/debian-deps.sh installs it)")
	}
	v, err := exec.Command(flatc, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	ver := strings.TrimSpace(strings.TrimPrefix(string(v), "flatc version "))
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`github.com/google/flatbuffers v` + regexp.QuoteMeta(ver) + `\+incompatible`).Match(mod) {
		t.Errorf("flatc %s, but go.mod requires another github.com/google/flatbuffers", ver)
	}
	dir := t.TempDir()
	if out, err := exec.Command(flatc, "--go", "-o", dir, "schema/tflite.fbs").CombinedOutput(); err != nil {
		t.Fatalf("flatc: %v\n%s", err, out)
	}
	want, err := filepath.Glob(filepath.Join(dir, "tflite", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	have, err := filepath.Glob("schema/tflite/*.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != len(have) {
		t.Fatalf("flatc makes %d files, %d are committed: run make generate-tflite", len(want), len(have))
	}
	for _, p := range want {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		a, err := format.Source(raw) // make generate-tflite runs gofmt
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join("schema", "tflite", filepath.Base(p)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("schema/tflite/%s differs from what flatc makes of tflite.fbs: run make generate-tflite", filepath.Base(p))
		}
	}
}
