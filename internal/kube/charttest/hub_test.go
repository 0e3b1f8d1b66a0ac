package charttest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"outpost.dev/outpost/internal/kube/kubetest"
	"outpost.dev/outpost/internal/testenv"
)

// freePort returns a TCP port no one listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The hub pod's commands, run with the real outpost binary on this machine
// (the volume and the Secret being directories here): the init container
// makes a data directory that serves the Secret's certificate, a restart's
// init container keeps it, and the controller's client configuration
// reaches the hub with the Secret's CA.
func TestHubPodCommands(t *testing.T) {
	helm := kubetest.Helm(t, "")
	port := freePort(t)
	objs := render(t, helm, fmt.Sprintf("hub.port=%d", port), fmt.Sprintf("hub.url=https://localhost:%d", port))
	sts := find(objs, "StatefulSet", "rel-outpost-hub")
	inits, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "initContainers")
	script, _, _ := unstructured.NestedStringSlice(inits[0].(map[string]any), "args")
	containers, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "containers")
	hubArgs, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	ctlArgs, _, _ := unstructured.NestedStringSlice(containers[1].(map[string]any), "args")

	dir := t.TempDir()
	vol, secretDir, bin := filepath.Join(dir, "volume"), filepath.Join(dir, "tls"), filepath.Join(dir, "bin")
	for _, d := range []string{vol, secretDir, bin} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	secret := find(objs, "Secret", "rel-outpost-hub-tls")
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		s, _, _ := unstructured.NestedString(secret.Object, "data", k)
		b, _ := base64.StdEncoding.DecodeString(s)
		if err := os.WriteFile(filepath.Join(secretDir, k), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "outpost"), "outpost.dev/outpost/cmd/outpost")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build outpost: %v\n%s", err, out)
	}
	// The pod's paths, here.
	local := func(s string) string {
		return strings.NewReplacer("/var/lib/outpost", vol, "/etc/outpost/tls", secretDir).Replace(s)
	}
	env := append(os.Environ(), "HOME="+vol, "XDG_CONFIG_HOME=", "OUTPOST_CONFIG=", "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), name, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	for range 2 { // a first start, and a restart
		run("/bin/sh", "-ec", local(script[0]))
	}

	ready := filepath.Join(dir, "ready")
	for i, a := range hubArgs {
		hubArgs[i] = local(a)
	}
	hub := exec.Command(filepath.Join(bin, "outpost"), append(hubArgs, "--ready-file", ready)...)
	hub.Env = env
	var logs testenv.Buffer
	hub.Stdout, hub.Stderr = &logs, &logs
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hub.Process.Kill()
		hub.Wait()
	})
	testenv.WaitFor(t, 30*time.Second, "the hub to serve", func() bool {
		_, err := os.Stat(ready)
		return err == nil
	})

	// It serves the Secret's certificate, for the Service's names.
	caPEM, _ := os.ReadFile(filepath.Join(secretDir, "ca.crt"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: roots, ServerName: "rel-outpost-hub.outpost.svc"})
	if err != nil {
		t.Fatalf("TLS to the hub: %v\n%s", err, logs.String())
	}
	conn.Close()

	// The controller's flags and the client configuration on the volume reach it.
	var flags []string
	for _, a := range ctlArgs {
		if strings.HasPrefix(a, "--ca-file") {
			flags = append(flags, local(a))
		}
	}
	if len(flags) != 1 {
		t.Fatalf("controller args %q: want one --ca-file", ctlArgs)
	}
	run(filepath.Join(bin, "outpost"), append([]string{"get", "clusters"}, flags...)...)
}
