package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/hubclient"
)

// joinCluster joins cluster to the hub hubArgs point at and returns its credential.
func joinCluster(t *testing.T, hubArgs []string, cluster string) string {
	t.Helper()
	tok := strings.TrimSpace(mustCLI(t, append(hubArgs, "cluster", "token", "create")...))
	h, err := hubclient.New(hubArgs[1], hubclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	jr, err := h.Join(t.Context(), tok, cluster, map[string]string{"site": "ship"})
	if err != nil {
		t.Fatal(err)
	}
	return jr.Credential
}

// pushEdgeVersion pushes, as cluster's agent does with its credential, a version of
// edge/<cluster>/fmnist that pipeline run "run" of "retrain" produced from parent.
func pushEdgeVersion(t *testing.T, hubArgs []string, cluster, cred, version, parent, run, content string) string {
	t.Helper()
	host := strings.TrimPrefix(hubArgs[1], "http://")
	repo, err := remote.NewRepository(host + "/edge/" + cluster + "/fmnist")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	repo.Client = &orasauth.Client{Client: http.DefaultClient, Cache: orasauth.NewCache(),
		Credential: orasauth.StaticCredential(host, orasauth.Credential{Username: "agent", Password: cred})}
	dir := t.TempDir()
	writeModelFiles(t, dir, content)
	_, err = artifact.Push(t.Context(), repo, dir, artifact.PushOptions{
		Name: "fmnist", Version: version, Parent: parent, ProducedBy: artifact.ProducedByPipelineRun("retrain", run),
		Metrics: map[string]string{"accuracy": "0.91"},
		Annotations: map[string]string{artifact.AnnotationCluster: cluster, artifact.AnnotationPipeline: "retrain",
			artifact.AnnotationRun: run, artifact.AnnotationDataset: "sha256:" + strings.Repeat("d", 64)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeModelFiles(t *testing.T, dir, content string) {
	t.Helper()
	for name, b := range map[string]string{"model.onnx": strings.Repeat(content, 4096), "labels.json": `["a","b"]`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A version a pipeline produced on a cluster is shown, pulled, promoted to a fleet-wide
// version (signed, its files mounted) and traced back through its lineage.
func TestModelPromoteAndLineage(t *testing.T) {
	hub := registryHub(t)
	base := t.TempDir()
	writeModelFiles(t, base, "base weights ")
	mustCLI(t, append(hub, "model", "push", base, "--name", "fmnist", "--version", "1.0.0", "--metric", "accuracy=0.86")...)
	cred := joinCluster(t, hub, "ship-1")
	tuned := pushEdgeVersion(t, hub, "ship-1", cred, "1.3.0", "fmnist@1.0.0", "retrain-7", "tuned on ship-1 ")

	show := mustCLI(t, append(hub, "model", "show", "edge/ship-1/fmnist@1.3.0")...)
	for _, re := range []string{`Produced by:\s+pipeline/retrain/run/retrain-7\n`, `Cluster:\s+ship-1\n`, `Run:\s+retrain-7\n`, `Parent:\s+fmnist@1.0.0\n`} {
		if !regexp.MustCompile(re).MatchString(show) {
			t.Errorf("show lacks %s:\n%s", re, show)
		}
	}
	if list := mustCLI(t, append(hub, "model", "list")...); !regexp.MustCompile(`edge/ship-1/fmnist\s+1\s+1.3.0`).MatchString(list) {
		t.Errorf("list:\n%s", list)
	}
	pulled := t.TempDir()
	mustCLI(t, append(hub, "model", "pull", "edge/ship-1/fmnist@1.3.0", pulled)...)
	sameFiles(t, tuned, pulled)

	keyPrefix := filepath.Join(t.TempDir(), "release")
	mustCLI(t, "keygen", "--out", keyPrefix)
	out := mustCLI(t, append(hub, "model", "promote", "edge/ship-1/fmnist@1.3.0", "--to", "fmnist@2.0.0", "--sign", keyPrefix+".key")...)
	if !regexp.MustCompile(`promoted edge/ship-1/fmnist@1.3.0 to fmnist@2.0.0 sha256:[0-9a-f]{64} \(2 files mounted from edge/ship-1/fmnist\)\nsigned fmnist@2.0.0 with key`).MatchString(out) {
		t.Errorf("promote said %q", out)
	}
	mustCLI(t, append(hub, "model", "verify", "fmnist@2.0.0", "--key", keyPrefix+".pub")...)
	promoted := t.TempDir()
	mustCLI(t, append(hub, "model", "pull", "fmnist@2.0.0", promoted)...)
	sameFiles(t, tuned, promoted)
	if again := mustCLI(t, append(hub, "model", "promote", "edge/ship-1/fmnist@1.3.0", "--to", "fmnist@2.0.0")...); !strings.Contains(again, "fmnist@2.0.0 is edge/ship-1/fmnist@1.3.0 promoted already") {
		t.Errorf("promote again said %q", again)
	}
	// Without a version, --to keeps the edge version's.
	if out := mustCLI(t, append(hub, "model", "promote", "edge/ship-1/fmnist@1.3.0", "--to", "fmnist")...); !strings.Contains(out, "to fmnist@1.3.0") {
		t.Errorf("promote --to fmnist said %q", out)
	}

	pushEdgeVersion(t, hub, "ship-1", cred, "1.4.0", "fmnist@2.0.0", "retrain-8", "tuned again ")
	failCLI(t, "fmnist@2.0.0 exists with other content", append(hub, "model", "promote", "edge/ship-1/fmnist@1.4.0", "--to", "fmnist@2.0.0")...)
	failCLI(t, "promote takes a version produced at the edge", append(hub, "model", "promote", "fmnist@1.0.0", "--to", "fmnist@9.0.0")...)
	failCLI(t, "promote takes a version produced at the edge", append(hub, "model", "promote", "edge/ship-1/fmnist", "--to", "fmnist@9.0.0")...)
	failCLI(t, "promote to a fleet-wide model", append(hub, "model", "promote", "edge/ship-1/fmnist@1.4.0", "--to", "edge/ship-2/fmnist@1.0.0")...)
	failCLI(t, "--to NAME[@VERSION] is required", append(hub, "model", "promote", "edge/ship-1/fmnist@1.4.0")...)
	failCLI(t, "versions of edge/ship-1/fmnist: 1.3.0, 1.4.0", append(hub, "model", "promote", "edge/ship-1/fmnist@7.0.0", "--to", "fmnist@7.0.0")...)

	// The lineage of a version produced on the edge and promoted twice over.
	mustCLI(t, append(hub, "model", "promote", "edge/ship-1/fmnist@1.4.0", "--to", "fmnist@3.0.0")...)
	text := mustCLI(t, append(hub, "model", "lineage", "fmnist@3.0.0")...)
	for _, re := range []string{
		`(?s)^fmnist@3.0.0\s+sha256:\S+\n  produced by:\s+promote\n  cluster:\s+ship-1\n  pipeline:\s+retrain\n  run:\s+retrain-8\n  dataset:\s+sha256:d+\n  metrics:\s+accuracy=0.91\n  created:`,
		`(?s)↑ derived from\nedge/ship-1/fmnist@1.4.0\s+sha256:\S+\n  produced by:\s+pipeline/retrain/run/retrain-8\n`,
		`(?s)↑ derived from\nfmnist@2.0.0 .*↑ derived from\nedge/ship-1/fmnist@1.3.0 .*↑ derived from\nfmnist@1.0.0\s+sha256:\S+\n  produced by:\s+-\n  metrics:\s+accuracy=0.86\n`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("lineage lacks %s:\n%s", re, text)
		}
	}
	var l lineage
	if err := json.Unmarshal([]byte(mustCLI(t, append(hub, "model", "lineage", "edge/ship-1/fmnist@1.3.0", "-o", "json")...)), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Versions) != 2 || l.Versions[0].Ref != "edge/ship-1/fmnist@1.3.0" || l.Versions[0].Run != "retrain-7" ||
		l.Versions[0].Parent != "fmnist@1.0.0" || l.Versions[1].Ref != "fmnist@1.0.0" || l.Versions[1].Created == nil {
		t.Errorf("lineage %+v", l)
	}
	if err := yaml.Unmarshal([]byte(mustCLI(t, append(hub, "model", "lineage", "fmnist@2.0.0", "-o", "yaml")...)), &l); err != nil || len(l.Versions) != 3 {
		t.Errorf("yaml lineage %+v, %v", l, err)
	}
	failCLI(t, "want NAME@VERSION", append(hub, "model", "lineage", "fmnist")...)
	failCLI(t, "lineage of fmnist@9.9.9", append(hub, "model", "lineage", "fmnist@9.9.9")...)

	// A parent the registry does not hold ends the walk, saying why.
	pushEdgeVersion(t, hub, "ship-1", cred, "1.5.0", "gone@1.0.0", "retrain-9", "orphan ")
	if err := json.Unmarshal([]byte(mustCLI(t, append(hub, "model", "lineage", "edge/ship-1/fmnist@1.5.0", "-o", "json")...)), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Versions) != 1 || !strings.Contains(l.Versions[0].Error, "parent gone@1.0.0") {
		t.Errorf("orphan lineage %+v", l)
	}
}

func sameFiles(t *testing.T, a, b string) {
	t.Helper()
	for _, f := range []string{"model.onnx", "labels.json"} {
		x, err1 := os.ReadFile(filepath.Join(a, f))
		y, err2 := os.ReadFile(filepath.Join(b, f))
		if err1 != nil || err2 != nil || string(x) != string(y) {
			t.Errorf("%s differs (%v, %v)", f, err1, err2)
		}
	}
}

func TestParseParent(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	for _, tt := range []struct{ p, name, version, err string }{
		{p: "fmnist@1.0.0", name: "fmnist", version: "1.0.0"},
		{p: "edge/ship-1/fmnist@1.3.0", name: "edge/ship-1/fmnist", version: "1.3.0"},
		{p: "fmnist:1.0.0", name: "fmnist", version: "1.0.0"},
		{p: "org/fmnist:1.0.0", name: "org/fmnist", version: "1.0.0"},
		{p: d, name: "child", version: d},
		{p: "fmnist", err: "names no version"},
		{p: "fmnist@", err: "names no version"},
		{p: "@1.0.0", err: "names no version"},
		{p: "host:5000/fmnist", err: "names no version"},
	} {
		name, version, err := parseParent(tt.p, "child")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseParent(%q) = %q, %q, %v; want an error saying %q", tt.p, name, version, err, tt.err)
			}
			continue
		}
		if err != nil || name != tt.name || version != tt.version {
			t.Errorf("parseParent(%q) = %q, %q, %v; want %q, %q", tt.p, name, version, err, tt.name, tt.version)
		}
	}
}
