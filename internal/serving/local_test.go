package serving

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/api/v1alpha1"
)

func TestLocalModel(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := write("tiny.onnx", "model")
	write("folder/onnx/model.onnx", "model")
	write("folder/config.json", "{}")
	write("two/a.onnx", "a")
	write("two/b.onnx", "b")
	write("weights/weights.bin", "w")
	tests := []struct {
		name, path string
		wantFiles  []string // the model's file paths
		wantErr    string
	}{
		{name: "file", path: file, wantFiles: []string{"tiny.onnx"}},
		{name: "folder", path: filepath.Join(dir, "folder"), wantFiles: []string{"config.json", "onnx/model.onnx"}},
		{name: "several models", path: filepath.Join(dir, "two"), wantErr: "several .onnx files (a.onnx, b.onnx) and none is model.onnx"},
		{name: "no model", path: filepath.Join(dir, "weights"), wantErr: "the model has no .onnx file"},
		{name: "missing", path: filepath.Join(dir, "nope"), wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := LocalModel("m", "1.0.0", tt.path, v1alpha1.Serving{Runtime: v1alpha1.RuntimeGo})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "model m: ") {
					t.Fatalf("LocalModel = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for p, local := range m.Files {
				got = append(got, p)
				if _, err := os.Stat(local); err != nil {
					t.Errorf("file %s: %v", p, err)
				}
			}
			if strings.Join(slices.Sorted(slices.Values(got)), ",") != strings.Join(tt.wantFiles, ",") {
				t.Errorf("files %v, want %v", got, tt.wantFiles)
			}
			if m.Deployment != "m" || m.Model != "m" || m.Version != "1.0.0" || !strings.HasPrefix(m.Digest, "sha256:") || m.Serving.Runtime != v1alpha1.RuntimeGo {
				t.Errorf("model %+v", m)
			}
		})
	}

	// Another content is another digest, so that a Sync loads it anew.
	a, err := LocalModel("m", "1", file, v1alpha1.Serving{})
	if err != nil {
		t.Fatal(err)
	}
	write("tiny.onnx", "model v2")
	b, err := LocalModel("m", "1", file, v1alpha1.Serving{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest == b.Digest {
		t.Errorf("changed file, same digest %s", a.Digest)
	}
}
